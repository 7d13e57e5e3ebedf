"""Which decoded frames a video's views need, holding only those while the frames stream past, and running the
views through the model in fixed-size batches as their clips complete (`ViewBatches`).

A clip group is the int frame indices [clips, T] of the clips that are predicted together: the multi-view test's
views (one group), or one window's clip (one group per window, `iter_windows`). `FramePlan` registers the groups
as the stream reaches their first frame, keeps the frames registered groups need, says when a group's last frame
has arrived, and drops each frame once no registered group needs it; so memory is bounded by the views, not by
the video's length.

  plan = FramePlan(lambda count: groups_of_a_video_of(count), count=None)
  for index, frame in video_io.stream_video(path, plan, fps=10):   # plan(declared) picks the count; `in` asks
    for number in plan.add(index, frame):                          # groups whose last frame this is
      run(plan.active[number], plan.frames)
      plan.release(number)
"""

import collections
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from vivit_jax.data.transforms import sampling

Group = Tuple[Any, np.ndarray]  # (a key, e.g. the window's (start_s, end_s), int frame indices [clips, T]).


def iter_windows(num_available: int, fps: float, window_s: float, num_frames: int, stride: int,
                 mode: str) -> Iterator[Tuple[float, float, np.ndarray]]:
  """(start_s, end_s, int32 [num_frames] frame indices) of each window of `window_s` seconds, its clip centred in
  it (shifted to stay inside the video). A clip's first frame is never before the previous window's."""
  if window_s <= 0:
    raise ValueError(f'window must be positive seconds, not {window_s}')
  length = max(1, int(round(window_s * fps)))
  span = (num_frames - 1) * stride + 1
  short = None
  for first in range(0, num_available, length):
    last = min(first + length, num_available)
    if num_available < span:  # Every clip covers the whole video: wrap or pad as the evaluation does.
      if short is None:
        short = np.asarray(sampling.center_indices(num_available, num_frames, stride, mode=mode), np.int32)
      indices = short
    else:
      start = min(max(first + (last - first - span) // 2, 0), num_available - span)
      indices = (start + stride * np.arange(num_frames)).astype(np.int32)
    yield first / fps, last / fps, indices


def window_indices(num_available: int, fps: float, window_s: float, num_frames: int, stride: int,
                   mode: str) -> List[Tuple[float, float, np.ndarray]]:
  """`iter_windows` as a list."""
  return list(iter_windows(num_available, fps, window_s, num_frames, stride, mode))


class FramePlan:
  """The clip groups of a video of `count` frames, and the frames kept for the groups not yet run.

  `groups_for(count)` yields the groups in an order whose first frames never decrease; they are registered as
  the stream reaches their first frame, so a long video's windows are never all listed at once. Called with the
  number of frames the container declares (as `video_io.stream_video`'s `select`), the plan takes that count
  when it was given none. `abandon` stops keeping anything, once the count proves wrong.
  """

  def __init__(self, groups_for: Callable[[int], Iterable[Group]], count: Optional[int]):
    self.groups_for, self.count, self.declared = groups_for, count, None
    self.frames: Dict[int, np.ndarray] = {}  # Kept frames by index.
    self.active: Dict[int, Group] = {}  # Registered groups not yet released, by registration number.
    self.peak = 0  # The most frames kept at once.
    self.registered = 0
    self._uses: collections.Counter = collections.Counter()  # Frame index -> active groups that need it.
    self._ready_at: Dict[int, List[int]] = collections.defaultdict(list)  # Last frame -> groups.
    self._pending: Iterator[Group] = iter(())
    self._next: Optional[Group] = None

  def __call__(self, declared: Optional[int]) -> 'FramePlan':
    self.declared = declared
    self.count = self.count or declared
    self._pending = iter(self.groups_for(self.count) if self.count else ())
    self._next = next(self._pending, None)
    return self

  def __contains__(self, index: int) -> bool:
    """Whether frame `index` is needed (asked once per frame, in order)."""
    self._register(index)
    return index in self._uses

  def _register(self, index: int) -> None:
    while self._next is not None and int(self._next[1].min()) <= index:
      indices = self._next[1]
      if int(indices.max()) < index:
        raise RuntimeError(f'clip group {indices.tolist()} registered after its last frame, at frame {index}')
      self.active[self.registered] = self._next
      self._uses.update(set(indices.ravel().tolist()))
      self._ready_at[int(indices.max())].append(self.registered)
      self.registered += 1
      self._next = next(self._pending, None)

  def add(self, index: int, frame: Optional[np.ndarray]) -> List[int]:
    """Keeps `frame` (None: not decoded) if a group needs it; returns the groups whose last frame it is."""
    self._register(index)
    if frame is not None and index in self._uses:
      self.frames[index] = frame
      self.peak = max(self.peak, len(self.frames))
    return self._ready_at.pop(index, [])

  def release(self, number: int) -> Group:
    """Forgets a group that has been run, and the frames no other group needs; returns the group."""
    group = self.active.pop(number)
    for index in set(group[1].ravel().tolist()):
      self._uses[index] -= 1
      if not self._uses[index]:
        del self._uses[index]
        self.frames.pop(index, None)
    return group

  def abandon(self) -> None:
    """Keeps nothing more: the count was wrong."""
    self.frames.clear()
    self.active.clear()
    self._uses.clear()
    self._ready_at.clear()
    self._next = None


class ViewBatches:
  """Views run through `logits_fn` (model inputs [B, ...] -> logits [B, C]) `batch_size` at a time as they
  accumulate; `done(number, logits [V, C])` is called once every view of group `number` has its logits."""

  def __init__(self, logits_fn: Callable[[np.ndarray], np.ndarray], batch_size: int,
               done: Callable[[int, np.ndarray], None]):
    self.logits_fn, self.batch_size, self.done = logits_fn, batch_size, done
    self._inputs: List[np.ndarray] = []
    self._owners: List[int] = []  # The group of each pending view.
    self._rows: Dict[int, List[np.ndarray]] = collections.defaultdict(list)
    self._expected: Dict[int, int] = {}

  def add(self, number: int, views: np.ndarray) -> None:
    """Queues group `number`'s views [V, ...]; runs every full batch."""
    self._inputs.append(views)
    self._owners.extend([number] * len(views))
    self._expected[number] = len(views)
    if len(self._owners) >= self.batch_size:
      self.run(full_batches_only=True)

  def run(self, full_batches_only: bool = False) -> None:
    """Runs the queued views (or only as many full batches as there are)."""
    if not self._owners:
      return
    inputs = np.concatenate(self._inputs)
    size = len(inputs) - len(inputs) % self.batch_size if full_batches_only else len(inputs)
    logits, owners = self.logits_fn(inputs[:size]), self._owners[:size]
    self._inputs, self._owners = [inputs[size:]], self._owners[size:]
    for number, row in zip(owners, logits):
      self._rows[number].append(row)
      if len(self._rows[number]) == self._expected[number]:
        del self._expected[number]
        self.done(number, np.stack(self._rows.pop(number)))
