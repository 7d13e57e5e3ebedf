"""Orbax reads that leave no TensorStore operation running behind them when they fail.

Orbax runs a read on a fresh asyncio loop (`asyncio_utils.run_sync`: `new_event_loop`, `run_until_complete`,
`close`) and, when `asyncio.gather` raises the first error (a missing or truncated file of a damaged step),
closes that loop at once. The other TensorStore reads of the batch are still in flight; each one that finishes
afterwards calls `loop.call_soon_threadsafe` on the closed loop from a TensorStore thread, and every call prints
"RuntimeError: Event loop is closed" with a traceback on stderr, after (or in the middle of) the one clear error.

`settled_reads()` makes the loops created meanwhile wait, when closed, until their pending tasks are done
(bounded by `SETTLE_TIMEOUT_S`, then cancelled), so a failed read returns with nothing left in flight. Only the
creation of loops changes: the current loop of every thread stays with the policy that was installed before.
"""

import asyncio
import contextlib
import threading
from typing import Iterator

SETTLE_TIMEOUT_S = 60.0


class _SettlingLoop(asyncio.SelectorEventLoop):
  """An event loop whose `close` first lets its pending tasks finish; the errors of all its tasks, those that
  failed before the close too, count as retrieved (else asyncio logs "Task exception was never retrieved" with a
  traceback when a task is collected)."""

  def __init__(self):
    super().__init__()
    self._tasks = []
    self.set_task_factory(self._task)

  def _task(self, loop, coro, **kwargs):
    task = asyncio.Task(coro, loop=loop, **kwargs)
    self._tasks.append(task)
    return task

  def close(self) -> None:
    if not self.is_running() and not self.is_closed():
      pending = asyncio.all_tasks(self)
      if pending:
        self.run_until_complete(asyncio.wait(pending, timeout=SETTLE_TIMEOUT_S))
        late = [task for task in pending if not task.done()]
        for task in late:
          task.cancel()
        if late:
          self.run_until_complete(asyncio.wait(late, timeout=SETTLE_TIMEOUT_S))
    for task in self._tasks:
      if task.done() and not task.cancelled():
        task.exception()  # Read, so asyncio does not log "Task exception was never retrieved".
    self._tasks.clear()
    super().close()


class _SettlingPolicy(asyncio.AbstractEventLoopPolicy):
  """`inner` for everything but `new_event_loop`, which makes a `_SettlingLoop`."""

  def __init__(self, inner: asyncio.AbstractEventLoopPolicy):
    self.inner = inner

  def get_event_loop(self) -> asyncio.AbstractEventLoop:
    return self.inner.get_event_loop()

  def set_event_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
    self.inner.set_event_loop(loop)

  def new_event_loop(self) -> asyncio.AbstractEventLoop:
    return _SettlingLoop()

  def get_child_watcher(self):  # Python < 3.14 policies have child watchers.
    return self.inner.get_child_watcher()

  def set_child_watcher(self, watcher) -> None:
    self.inner.set_child_watcher(watcher)


_lock = threading.Lock()
_depth = 0
_saved: asyncio.AbstractEventLoopPolicy | None = None


@contextlib.contextmanager
def settled_reads() -> Iterator[None]:
  """Within it (any thread, nested or not), the asyncio loops that Orbax creates settle before they close."""
  global _depth, _saved
  with _lock:
    if _depth == 0:
      _saved = asyncio.get_event_loop_policy()
      asyncio.set_event_loop_policy(_SettlingPolicy(_saved))
    _depth += 1
  try:
    yield
  finally:
    with _lock:
      _depth -= 1
      if _depth == 0:
        asyncio.set_event_loop_policy(_saved)
        _saved = None
