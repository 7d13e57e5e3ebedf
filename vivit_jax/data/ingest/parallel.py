"""Decoding many videos in worker processes: results in input order, a crashing decoder contained, progress."""

import collections
import concurrent.futures
import itertools
import multiprocessing
import time
from typing import Any, Callable, Iterable, Iterator

Log = Callable[[str], None]


def ordered_map(fn: Callable[[Any], Any], tasks: Iterable[Any], workers: int) -> Iterator[Any]:
  """fn(task) for each task, in order; `workers` > 1 runs them in that many spawned processes.

  A task that kills its worker process (a decoder crash) is retried alone in a fresh process; if it kills that
  one too its result is {'reason': ...}, and the other tasks go on in a new pool.
  """
  if workers <= 1:
    yield from map(fn, tasks)
    return
  context = multiprocessing.get_context('spawn')  # Never fork a process that has TensorFlow's threads.
  new_pool = lambda n: concurrent.futures.ProcessPoolExecutor(n, mp_context=context)
  tasks, window, pool = iter(tasks), collections.deque(), new_pool(workers)
  try:
    while True:
      for task in itertools.islice(tasks, 4 * workers - len(window)):
        window.append((task, pool.submit(fn, task)))
      if not window:
        return
      task, future = window.popleft()
      try:
        result = future.result()
      except concurrent.futures.process.BrokenProcessPool:
        pool.shutdown(cancel_futures=True)
        with new_pool(1) as alone:
          try:
            result = alone.submit(fn, task).result()
          except concurrent.futures.process.BrokenProcessPool:
            result = {'reason': 'decoding crashed the worker process'}
        pool = new_pool(workers)
        window = collections.deque((t, pool.submit(fn, t)) for t, _ in window)
      yield result
  finally:
    pool.shutdown(cancel_futures=True)


class Progress:
  """Prints videos done, skipped, videos/s and the ETA at most every `interval` seconds."""

  def __init__(self, total: int, log: Log, interval: float = 5.0):
    self.total, self.log, self.interval = total, log, interval
    self.done = self.skipped = 0
    self.start = self.last = time.monotonic()

  def update(self, skipped: bool) -> None:
    self.done += 1
    self.skipped += int(skipped)
    now = time.monotonic()
    if now - self.last >= self.interval or self.done == self.total:
      self.last = now
      rate = self.done / max(now - self.start, 1e-9)
      eta = round((self.total - self.done) / rate) if rate else 0
      self.log(f'{self.done}/{self.total} videos ({self.skipped} skipped), {rate:.1f} videos/s, '
               f'ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}')
