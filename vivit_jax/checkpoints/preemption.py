"""Stopping a training run cleanly on preemption: SIGTERM becomes a flag the loop polls (`PreemptionWatcher`), so
the loop can checkpoint and exit; in multi-process runs JAX's preemption sync point makes every process stop at the
same step."""

import logging
import signal
import types
from typing import Self

import jax

_log = logging.getLogger(__name__)


def _jax_preemption_service_active() -> bool:
  """Whether jax.distributed runs its preemption sync manager (which owns SIGTERM natively)."""
  try:
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    state = distributed.global_state
    return state.client is not None and state.preemption_sync_manager is not None
  except Exception:  # noqa: BLE001
    return False


class PreemptionWatcher:
  """Turns SIGTERM into a flag that the training loop polls, so it can checkpoint and exit cleanly.

  Usage::

    with PreemptionWatcher() as preemption:
      for step in ...:
        ...
        if preemption.should_stop(step):
          ckpt.save(step, state, metadata, force=True)
          break

  The handler only sets a flag (nothing unsafe runs inside a signal handler); the previous handler comes
  back on exit. In multi-process runs `should_stop` also asks JAX's preemption service whether all
  processes reached the same sync step (call it at every step from every process). When that service is
  running it owns SIGTERM through a native handler, so the watcher leaves SIGTERM alone rather than
  replacing it; without the service each process only sees its own signal.
  """

  def __init__(self, sig: int = signal.SIGTERM):
    self._signal = sig
    self._requested = False
    self._previous = None
    self._installed = False

  @property
  def requested(self) -> bool:
    """Whether the signal arrived (or the preemption sync point was reached)."""
    return self._requested

  def _handle(self, signum: int, frame: types.FrameType | None) -> None:
    del signum, frame
    self._requested = True

  def __enter__(self) -> Self:
    if jax.process_count() > 1 and _jax_preemption_service_active():
      _log.info('PreemptionWatcher: relying on the JAX preemption service for signal %d.', self._signal)
      return self
    try:
      self._previous = signal.signal(self._signal, self._handle)
      self._installed = True
    except ValueError as e:  # Not the main thread of the main interpreter.
      _log.warning('PreemptionWatcher: cannot install a handler for signal %d: %s', self._signal, e)
    return self

  def __exit__(self, *exc_info) -> None:
    if self._installed:
      signal.signal(self._signal, self._previous if self._previous is not None else signal.SIG_DFL)
      self._installed = False

  def should_stop(self, step: int) -> bool:
    """True once the signal arrived, or once all processes reached the preemption sync point at `step`."""
    if self._requested:
      return True
    if jax.process_count() > 1:
      try:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
        if multihost_utils.reached_preemption_sync_point(step):
          self._requested = True
      except Exception as e:  # noqa: BLE001  # No distributed/preemption service.
        _log.debug('reached_preemption_sync_point(%d) unavailable: %s', step, e)
    return self._requested
