"""Training checkpoints: save, resume and keep the newest N (stopping on preemption: preemption.py).

A checkpoint step holds two Orbax items side by side in `{workdir}/checkpoints/{step}/`:

  state/     the train state (any pytree of possibly sharded `jax.Array`s), in Orbax's array storage
             (OCDBT/zarr via TensorStore); every process writes its own shards.
  metadata/  a JSON document (config, preprocessing spec, data-iterator position, ...).

Nothing in a checkpoint is pickled, so loading one never executes code. Orbax writes each step into a
temporary directory and renames it on commit, so an interrupted save leaves no step behind (its temporary
directory is ignored and removed when the next manager is created).

Resuming is `restore(abstract_state)`: the newest readable step comes back already sharded as
`abstract_state` asks. A step that cannot be read (truncated or missing files) is skipped with a warning; a
step that is readable but does not fit the model raises `CheckpointError` naming every mismatching path.
"""

import contextlib
import json
import logging
import os
import warnings
from typing import Any, Callable, Iterator, Self, TypeVar

import jax
import orbax.checkpoint as ocp

from vivit_jax.checkpoints.settled_reads import settled_reads

_log = logging.getLogger(__name__)

_STATE = 'state'
_METADATA = 'metadata'

PyTree = Any


_T = TypeVar('_T')
# How a full disk reads in the errors of TensorStore (Orbax's array storage) and of the filesystem.
_DISK_FULL = ('RESOURCE_EXHAUSTED', 'No space left', 'ENOSPC')


class CheckpointError(ValueError):
  """A checkpoint that cannot be read, or that does not fit the model it is restored into."""


def keypath_str(path: tuple[Any, ...]) -> str:
  """'params/Dense_0/kernel' for a jax key path (dict keys, attribute names and indices joined by '/')."""
  return jax.tree_util.keystr(path, simple=True, separator='/')


def leaf_shapes(tree: PyTree) -> dict[str, tuple[int, ...]]:
  """Maps each leaf's path to its shape; None and empty containers have no leaves."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {keypath_str(path): tuple(getattr(leaf, 'shape', ())) for path, leaf in leaves}


def describe_mismatch(saved: dict[str, tuple[int, ...]], model: dict[str, tuple[int, ...]]) -> list[str]:
  """One line per path whose shape differs, that only the model has, or that only the checkpoint has."""
  lines = []
  for path in sorted(saved.keys() & model.keys()):
    if saved[path] != model[path]:
      lines.append(f'  shape mismatch: {path}: checkpoint {saved[path]}, model {model[path]}')
  for path in sorted(model.keys() - saved.keys()):
    lines.append(f'  missing from the checkpoint (model only): {path} {model[path]}')
  for path in sorted(saved.keys() - model.keys()):
    lines.append(f'  unexpected in the checkpoint (not in the model): {path} {saved[path]}')
  return lines


def _check_has_shardings(abstract_state: PyTree) -> None:
  """Every leaf must say where it goes, so that no unsharded copy of the state is ever made."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(abstract_state)
  unsharded = [keypath_str(path) for path, leaf in leaves if getattr(leaf, 'sharding', None) is None]
  if unsharded:
    raise ValueError('restore() needs jax.ShapeDtypeStruct leaves with a .sharding (e.g. jax.eval_shape '
                     f'followed by the sharding rules); these have none: {", ".join(unsharded)}')


def _check_json(metadata: dict[str, Any]) -> None:
  """Fails before the (asynchronous) save starts, with the offending value in the message."""
  try:
    json.dumps(metadata)
  except (TypeError, ValueError) as e:
    raise TypeError(f'Checkpoint metadata must be JSON-serialisable (plain dicts, lists, str, int, float, '
                    f'bool, None): {e}') from e


def short_error(error: BaseException, limit: int = 600) -> str:
  """The error's type and message, cut at `limit` characters (TensorStore errors embed long JSON specs)."""
  text = f'{type(error).__name__}: {error}'
  return text if len(text) <= limit else text[:limit] + ' ...'


def warn_unreadable(path: str, error: Exception, stacklevel: int = 2) -> str:
  """Warns that checkpoint `path` cannot be read and the next older step is tried (the one warning every
  fallback past an unreadable step gives: the trainer's resume, evaluation and prediction); returns the line
  for the error raised when no step is readable. `stacklevel` counts from the caller of this function."""
  text = short_error(error)
  warnings.warn(f'Cannot read checkpoint {path} ({text}); trying the next older one.', RuntimeWarning,
                stacklevel=stacklevel + 1)
  return f'  {path}: {text}'


def newest_readable(step_dirs: dict[int, str], read: Callable[[int], _T], where: str,
                    stacklevel: int = 2) -> tuple[int, _T, set[int]]:
  """(step, `read(step)`, the newer steps skipped) for the newest step of `step_dirs` that `read` can read: the
  one fallback of the trainer's resume, evaluation and prediction. A CheckpointError (a readable step whose
  content is wrong) is raised; any other error makes a step unreadable, skipped with `warn_unreadable`."""
  failures, skipped = [], set()
  for step in sorted(step_dirs, reverse=True):
    try:
      with settled_reads():  # A failed read leaves no TensorStore callback to print tracebacks later.
        return step, read(step), skipped
    except CheckpointError:
      raise
    except Exception as e:  # noqa: BLE001
      failures.append(warn_unreadable(step_dirs[step], e, stacklevel=stacklevel + 1))
      skipped.add(step)
  raise CheckpointError('No checkpoint in {} can be read:\n{}'.format(where, '\n'.join(failures)))


def _handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
  """Names the two items up front, so a fresh manager can read metadata of steps it did not write."""
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  for args in (ocp.args.StandardSave, ocp.args.StandardRestore):
    registry.add(_STATE, args)
  for args in (ocp.args.JsonSave, ocp.args.JsonRestore):
    registry.add(_METADATA, args)
  return registry


class CheckpointManager:
  """Saves and restores (train state, JSON metadata) pairs under `{workdir}/checkpoints`.

  Call every method from every process (Orbax coordinates the processes). Usage::

    ckpt = CheckpointManager(workdir, max_to_keep=3, save_interval_steps=1000)
    resumed = ckpt.restore(abstract_state)  # None when the run starts fresh
    ...
    ckpt.save(step, state, {'config': config.to_dict(), 'data': iterator_state})
    ckpt.close()
  """

  def __init__(self, workdir: str, *, max_to_keep: int | None = 3, save_interval_steps: int = 1000,
               async_save: bool = True):
    """Opens (creating if needed) `{workdir}/checkpoints`.

    Args:
      workdir: the run's working directory.
      max_to_keep: how many of the newest steps to keep; None keeps all.
      save_interval_steps: `should_save(step)` is true when `step % save_interval_steps == 0` (and when JAX's
        preemption service says all processes reached the preemption sync point).
      async_save: return from `save` once the arrays are copied off the devices, writing in the background.
    """
    self._directory = os.path.join(os.path.abspath(os.fspath(workdir)), 'checkpoints')  # Orbax: absolute.
    save_policy = ocp.checkpoint_managers.AnySavePolicy([
        ocp.checkpoint_managers.FixedIntervalPolicy(save_interval_steps),
        ocp.checkpoint_managers.PreemptionCheckpointingPolicy(),
    ])
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=save_policy,
        preservation_policy=ocp.checkpoint_managers.LatestN(max_to_keep),
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True,
        create=True,
    )
    self._manager = ocp.CheckpointManager(self._directory, options=options,
                                          handler_registry=_handler_registry())
    self._unreadable: set[int] = set()  # Steps skipped by the last fallback in `restore`.
    self._saving: int | None = None  # The step of the last save started, until it is known to be committed.
    self._save_failed = False
    # From a save's start until it is known committed, the loops of Orbax's background threads settle before they
    # close, so that a failed write (a full disk) leaves no TensorStore callback printing tracebacks behind it.
    self._settling, self._settling_now = contextlib.ExitStack(), False

  @property
  def directory(self) -> str:
    """`{workdir}/checkpoints`."""
    return self._directory

  def step_directory(self, step: int) -> str:
    """Where `step` lives (or would live)."""
    return os.path.join(self._directory, str(step))

  def latest_step(self) -> int | None:
    """The newest committed step, or None when there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Committed steps, oldest first (temporary directories of interrupted saves are not steps)."""
    return sorted(self._manager.all_steps())

  def should_save(self, step: int) -> bool:
    """True at multiples of `save_interval_steps` newer than the latest step, or at a preemption sync point.

    Like `save`, first deletes the steps that `restore` skipped as unreadable (see `save`).
    """
    self._drop_unreadable()
    return self._manager.should_save(step)

  def save(self, step: int, state: PyTree, metadata: dict[str, Any], force: bool = False) -> bool:
    """Saves `state` and `metadata` as checkpoint `step` when `should_save(step)` or `force`.

    A step that already exists (e.g. the step a run resumed from) is left untouched. Steps that `restore`
    found unreadable and skipped are deleted first: they are newer than the state the run resumed from, and
    would otherwise block saves up to their step (and be skipped again at every restart). Only a trainer
    calls `save`/`should_save`, so a reader (an evaluator) never deletes anything.

    Args:
      step: the training step.
      state: a pytree of jax.Arrays (a TrainState dataclass, optax states, a uint32 PRNG key array, ...).
      metadata: a JSON-serialisable dict stored beside the state in the same step.
      force: save even when `should_save(step)` is false.

    Returns:
      Whether a save was started.
    """
    _check_json(metadata)
    self._drop_unreadable()
    if step in self._manager.all_steps():
      _log.info('Checkpoint %s already exists; not saving it again.', self.step_directory(step))
      return False
    args = ocp.args.Composite(**{_STATE: ocp.args.StandardSave(state),
                                 _METADATA: ocp.args.JsonSave(metadata)})
    with self._save_errors():  # A failed earlier save raises here, before a new one starts.
      if not self._settling_now:
        self._settling.enter_context(settled_reads())
        self._settling_now = True
      started = self._manager.save(step, args=args, force=force)
    if started:
      self._saving = step
    return started

  @contextlib.contextmanager
  def _save_errors(self) -> Iterator[None]:
    """Turns the error of a failed (background) save into one CheckpointError line naming the step, the cause
    (a full disk is called so) and the newest committed step, which the failure leaves intact."""
    try:
      yield
    except CheckpointError:
      raise
    except Exception as e:  # noqa: BLE001  # Orbax re-raises TensorStore's and the filesystem's errors as they are.
      self._save_failed = True
      step, text = self._saving, short_error(e, limit=300)
      full = ' because the disk is full' if any(t in str(e) for t in _DISK_FULL) else ''
      kept = [s for s in self._manager.all_steps() if s != step]
      previous = (f'the previous checkpoint {self.step_directory(max(kept))} is intact' if kept
                  else 'no earlier checkpoint exists')
      where = self.step_directory(step) if step is not None else f'a checkpoint in {self._directory}'
      raise CheckpointError(f'Saving {where} failed{full}: {text}; {previous}') from e

  def _drop_unreadable(self) -> None:
    """Deletes the steps that the last fallback in `restore` skipped."""
    for step in sorted(self._unreadable & set(self._manager.all_steps())):
      _log.warning('Deleting unreadable checkpoint %s before saving over its history.',
                   self.step_directory(step))
      self._manager.delete(step)
    self._unreadable.clear()

  def restore(self, abstract_state: PyTree,
              step: int | None = None) -> tuple[int, PyTree, dict[str, Any]] | None:
    """Restores a step into the structure, shapes, dtypes and shardings of `abstract_state`.

    Shapes and tree paths must match the checkpoint's stored tree exactly; dtypes are cast to the model's.

    Args:
      abstract_state: pytree of jax.ShapeDtypeStruct with `.sharding` (or of jax.Arrays).
      step: the step to restore; None restores the newest step that can be read, warning about each newer
        one that cannot.

    Returns:
      (step, state, metadata), or None when there is no checkpoint at all.

    Raises:
      CheckpointError: a checkpoint does not fit `abstract_state` (no fallback: the model or the config
        changed), the requested step is missing or unreadable, or no step can be read.
    """
    _check_has_shardings(abstract_state)
    self._manager.wait_until_finished()
    self._manager.reload()
    steps = self.all_steps()
    if step is not None:
      if step not in steps:
        raise CheckpointError(f'No checkpoint {self.step_directory(step)}; available steps: {steps}')
      try:
        with settled_reads():
          return self._restore_step(step, abstract_state)
      except CheckpointError:
        raise
      except Exception as e:
        raise CheckpointError(f'Cannot read checkpoint {self.step_directory(step)}: {short_error(e)}') from e
    if not steps:
      return None
    return self._restore_newest_readable(steps, abstract_state)

  def _restore_newest_readable(self, steps: list[int],
                               abstract_state: PyTree) -> tuple[int, PyTree, dict[str, Any]]:
    """Tries `steps` newest first (`newest_readable`); anything but a model mismatch counts as unreadable."""
    _, restored, self._unreadable = newest_readable({s: self.step_directory(s) for s in steps},
                                                    lambda s: self._restore_step(s, abstract_state),
                                                    self._directory, stacklevel=3)
    return restored

  def _restore_step(self, step: int, abstract_state: PyTree) -> tuple[int, PyTree, dict[str, Any]]:
    """Compares the stored tree with the model's, then restores the state and metadata of `step`."""
    item_metadata = self._manager.metadata(step).item_metadata
    stored = item_metadata[_STATE] if item_metadata is not None else None
    if stored is None:
      raise FileNotFoundError(f'no readable "{_STATE}" item in {self.step_directory(step)}')
    mismatch = describe_mismatch(leaf_shapes(stored.tree), leaf_shapes(abstract_state))
    if mismatch:
      raise CheckpointError('Checkpoint {} does not fit the model:\n{}'.format(
          self.step_directory(step), '\n'.join(mismatch)))
    args = ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract_state),
                                 _METADATA: ocp.args.JsonRestore()})
    restored = self._manager.restore(step, args=args)
    return step, restored[_STATE], dict(restored[_METADATA])

  def metadata(self, step: int | None = None) -> dict[str, Any]:
    """The JSON metadata of `step` (default: the newest step) without touching the arrays."""
    self._manager.wait_until_finished()
    step = self.latest_step() if step is None else step
    if step is None or step not in self._manager.all_steps():
      raise CheckpointError(f'No checkpoint step {step} in {self._directory}; steps: {self.all_steps()}')
    try:
      with settled_reads():
        restored = self._manager.restore(step, args=ocp.args.Composite(**{_METADATA: ocp.args.JsonRestore()}))
    except Exception as e:
      raise CheckpointError(f'Cannot read the metadata of {self.step_directory(step)}: {short_error(e)}') from e
    return dict(restored[_METADATA])

  def wait_until_finished(self) -> None:
    """Blocks until background saves are committed; raises a failed one's error as a CheckpointError."""
    try:
      with self._save_errors():
        self._manager.wait_until_finished()
    finally:
      self._settled()
    self._saving = None

  def _settled(self) -> None:
    """Ends the settling that `save` started (no background save is running any more)."""
    if self._settling_now:
      self._settling.close()
      self._settling_now = False

  def check_for_errors(self) -> None:
    """Raises, without waiting, the error of a background save that has already failed (a CheckpointError)."""
    with self._save_errors():
      self._manager.check_for_errors()

  def close(self) -> None:
    """Finishes background work (saves, deletions of old steps) and releases resources. A save that failed
    raises here unless its error was raised already (by `save`, `wait_until_finished` or `check_for_errors`)."""
    try:
      if self._save_failed:
        try:
          self._manager.close()
        except Exception as e:  # noqa: BLE001  # The same failure, already reported.
          _log.debug('Closing after a failed save: %s', short_error(e))
        return
      with self._save_errors():
        self._manager.close()
    finally:
      self._settled()

  def __enter__(self) -> Self:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
