"""Synthetic videos whose class is defined by motion (`SyntheticMotion`), and the pipeline that serves them for
`dataset_name='synthetic'` (`SyntheticPipeline`), at any config's clip size, generated on the fly.

Each video shows a few coloured squares moving over a static textured background, wrapping around the frame
edges. The class is the squares' velocity: one of `num_directions` directions times a speed (1, 2, ... pixels
per frame). Start positions, colours and the background are random per video, so no single frame tells the
class: a model has to compare frames. Example `i` of a split depends only on (seed, split, i), so every
process and every rerun sees the same videos, and any subset can be generated in any order.
"""

import dataclasses
import functools
import math
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from vivit_jax.data.base import SINGLE_VIEW, Batch, DataError, Pipeline, SplitFacts, Views

SPLITS = {'train': 0, 'validation': 1, 'test': 2}


@dataclasses.dataclass(frozen=True)
class SyntheticMotion:
  """`num_classes` motion classes of `num_frames x height x width x 3` uint8 clips."""
  num_classes: int
  num_frames: int
  height: int
  width: int
  num_directions: int = 8  # Directions evenly spaced on the circle; classes cycle through them first.
  num_objects: int = 3  # Squares per video, all moving with the class velocity.
  object_size: int = 4  # Side of each square in pixels.
  speed: float = 1.0  # Pixels per frame of the slowest classes; class c moves speed * (1 + c // directions).
  background: str = 'texture'  # 'texture': coarse noise in muted colours; 'plain': one dark colour, bright squares.
  wrap: bool = True  # Squares wrap around the edges; False: each whole trajectory stays inside the frame.
  seed: int = 0

  def __post_init__(self):
    if self.num_classes < 1 or self.num_frames < 2 or min(self.height, self.width) <= self.object_size:
      raise ValueError(f'SyntheticMotion needs num_classes >= 1, num_frames >= 2 and frames larger than '
                       f'object_size {self.object_size}; got {self.num_classes} classes, {self.num_frames} '
                       f'frames of {self.height}x{self.width}')
    if not self.wrap:  # A class whose path is longer than the frame leaves for a square has no start inside.
      short = np.flatnonzero(np.any(self._per_class.start_range < 0, axis=1))
      if short.size:
        label = int(short[0])
        travel = np.abs(self._per_class.velocity[label]) * (self.num_frames - 1)
        raise ValueError(f'SyntheticMotion(wrap=False): class {label} travels {travel.max():.1f} pixels in '
                         f'{self.num_frames} frames, more than a {self.height}x{self.width} frame leaves for a '
                         f'{self.object_size}-pixel square; lower the speed or the frame count')
    if self.background not in ('texture', 'plain'):
      raise ValueError(f"SyntheticMotion background must be 'texture' or 'plain'; got {self.background!r}")

  def velocity(self, label: int) -> Tuple[float, float]:
    """(dy, dx) in pixels per frame for a class."""
    directions = min(self.num_directions, self.num_classes)
    angle = 2.0 * math.pi * (label % directions) / directions
    speed = self.speed * (1.0 + label // directions)
    return speed * math.sin(angle), speed * math.cos(angle)

  def label(self, index):
    """Classes are balanced: example i has class i mod num_classes (an int, or an array of them for an array of
    indices)."""
    return index % self.num_classes

  def example(self, split: str, index: int) -> Dict[str, np.ndarray]:
    """{'video': uint8 [T, H, W, 3], 'label': int, 'positions': float [T, objects, 2] top-left corners}."""
    one = self.batch(split, [index], with_positions=True)
    return {'video': one['video'][0], 'label': int(one['label'][0]), 'positions': one['positions'][0]}

  def batch(self, split: str, indices, with_positions: bool = False) -> Dict[str, np.ndarray]:
    """Stacked examples: {'video': uint8 [B, T, H, W, 3], 'label': int32 [B]}, and 'positions' float
    [B, T, objects, 2] if asked for.

    Each example draws from its own generator (seeded by (seed, split, index)); the frames of the whole batch
    are then painted at once, which is what makes generation cheap next to a CPU training step.
    """
    if split not in SPLITS:
      raise ValueError(f'unknown split {split!r}; expected one of {list(SPLITS)}')
    indices = [int(i) for i in indices]
    if not indices:  # The shapes and dtypes of a batch, with no rows.
      return {k: v[:0] for k, v in self.batch(split, [0], with_positions).items()}
    labels = self.label(np.asarray(indices, np.int64))
    velocity = self._per_class.velocity[labels]  # [B, 2]
    coarse, start, colours = zip(*(self._draw(split, i, c) for i, c in zip(indices, labels.tolist())))
    labels = labels.astype(np.int32)
    cell = self._cell()
    backgrounds = np.repeat(np.repeat(np.stack(coarse), cell, axis=1), cell, axis=2)[:, :self.height, :self.width]
    video = np.repeat(backgrounds[:, None], self.num_frames, axis=1)  # [B, T, H, W, 3]
    steps = np.arange(self.num_frames, dtype=np.float64)[:, None, None]
    positions = np.stack(start)[:, None] + steps * velocity[:, None, None]  # [B, T, objects, 2]
    corners = np.round(positions).astype(np.int64) % (self.height, self.width)
    offsets = np.arange(self.object_size)
    ys = (corners[..., 0, None] + offsets) % self.height  # [B, T, objects, size]: the rows each square covers.
    xs = (corners[..., 1, None] + offsets) % self.width
    b, t = np.arange(len(labels))[:, None, None, None], np.arange(self.num_frames)[None, :, None, None]
    colours = np.stack(colours)  # [B, objects, 3]
    for k in range(self.num_objects):  # Later squares cover earlier ones.
      video[b, t, ys[:, :, k, :, None], xs[:, :, k, None, :]] = colours[:, None, None, None, k]
    out = {'video': video, 'label': labels}
    if with_positions:
      out['positions'] = positions
    return out

  def _cell(self) -> int:
    """Side of the background's texture cells (the whole frame for a plain background)."""
    return 4 if self.background == 'texture' else max(self.height, self.width)

  @functools.cached_property
  def _per_class(self) -> '_ClassTables':
    """What `_draw` needs of each class, worked out once: an example's own draws are then all it computes."""
    velocity = np.asarray([self.velocity(c) for c in range(self.num_classes)])  # [C, 2]
    size = np.array([self.height, self.width], np.float64)
    if self.wrap:
      low, high = np.zeros_like(velocity), np.broadcast_to(size, velocity.shape)
    else:  # Every start whose trajectory stays inside: the reversed class covers the same sets of positions.
      travel = velocity * (self.num_frames - 1)
      low = np.maximum(0.0, -travel)
      high = size - self.object_size - np.maximum(0.0, travel)
    cell = self._cell()
    return _ClassTables(velocity=velocity, start_low=low, start_range=high - low,
                        coarse_shape=(-(-self.height // cell), -(-self.width // cell), 3),
                        coarse_bounds=(40, 120) if self.background == 'texture' else (0, 64),
                        colour_low=0 if self.background == 'texture' else 160)

  def _draw(self, split: str, index: int, label: int):
    """Example `index`'s random draws, in a fixed order: the coarse background, the squares' start corners (uniform
    over the class's allowed range: the doubles `Generator.uniform(low, high)` would draw, scaled the same way,
    low + (high - low) * u) and their colours."""
    tables = self._per_class
    rng = np.random.default_rng([self.seed, SPLITS[split], index])
    coarse = rng.integers(*tables.coarse_bounds, size=tables.coarse_shape, dtype=np.uint8)
    start = tables.start_low[label] + tables.start_range[label] * rng.random((self.num_objects, 2))
    colours = rng.integers(tables.colour_low, 256, size=(self.num_objects, 3), dtype=np.uint8)
    return coarse, start, colours


@dataclasses.dataclass(frozen=True)
class _ClassTables:
  """`SyntheticMotion._per_class`: per class, the velocity and the range of start corners ([C, 2] each); the
  background's and the squares' draw ranges."""
  velocity: np.ndarray
  start_low: np.ndarray
  start_range: np.ndarray
  coarse_shape: Tuple[int, int, int]
  coarse_bounds: Tuple[int, int]
  colour_low: int


class RandomAccessPipeline(Pipeline):
  """A pipeline over a source that can produce any example by index (`examples(split, indices)`): batch
  `s` is a pure function of (seed, s), so resuming needs nothing but the step."""

  _order_cache: Optional[Tuple[int, np.ndarray]] = None  # (epoch, its shuffle): see _train_order.

  def examples(self, split: str, indices: np.ndarray) -> Batch:
    """{'inputs': [n, T, H, W, 3], 'label': one-hot [n, C]} for example `indices` of `split`."""
    raise NotImplementedError

  def _train_order(self, epoch: int) -> np.ndarray:
    """Epoch `epoch`'s shuffle of the training examples; the last one drawn is kept (every batch of an epoch
    indexes it, and drawing it again costs more than the rest of a small batch)."""
    cached = self._order_cache
    if cached is None or cached[0] != epoch:
      cached = self._order_cache = (epoch, np.random.default_rng([self.seed, epoch]).permutation(
          self.num_examples('train')))
    return cached[1]

  def train_indices(self, step: int) -> np.ndarray:
    """Global example indices of training batch `step`: consecutive epochs, each freshly shuffled."""
    n = self.num_examples('train')
    positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
    epochs = positions // n
    out = np.empty_like(positions)
    for epoch in np.unique(epochs):
      where = epochs == epoch
      out[where] = self._train_order(int(epoch))[positions[where] % n]
    return out

  def train_batch(self, step: int) -> Batch:
    batch = self.examples('train', self.train_indices(step)[self.local_rows(self.batch_size)])
    batch['batch_mask'] = np.ones(len(batch['label']), np.float32)
    return batch

  def train_batches(self, start_step: int) -> Iterator[Batch]:
    step = start_step
    while True:
      yield self.train_batch(step)
      step += 1

  def num_eval_batches(self, split: str, batch_size: Optional[int] = None) -> int:
    return -(-self.num_examples(split) // (batch_size or self.eval_batch_size))

  def eval_batches(self, split: str, views: Views = SINGLE_VIEW,
                   batch_size: Optional[int] = None) -> Iterator[Batch]:
    """One exact pass: the last batch is padded with masked copies of the first example."""
    n = self.num_examples(split)
    size = batch_size or self.eval_batch_size
    rows = self.local_rows(size)
    for b in range(self.num_eval_batches(split, size)):
      indices = np.arange(b * size, (b + 1) * size)[rows]
      mask = (indices < n).astype(np.float32)
      batch = self.examples(split, np.where(indices < n, indices, 0))
      if not views.single:
        batch['inputs'] = self.views(batch['inputs'], views)
      batch['batch_mask'] = mask
      yield batch

  def views(self, clips: np.ndarray, views: Views) -> np.ndarray:
    """[B, T, H, W, 3] -> [B, V, T, H, W, 3], temporal views major and crops minor."""
    raise NotImplementedError


class SyntheticPipeline(RandomAccessPipeline):
  """`dataset_name='synthetic'`: motion classes (`SyntheticMotion`) at the config's clip size."""

  def __init__(self, config, process_index=None, process_count=None):
    super().__init__(config, process_index, process_count)
    d = config.dataset_configs
    missing = [s for s in ('train', 'validation') if d.examples_per_subset[s] is None]
    if missing:
      raise DataError("dataset_name 'synthetic' generates as many videos as "
                      f"'dataset_configs.examples_per_subset' says; set {missing} (e.g. train=2048)")
    try:
      self.source = SyntheticMotion(num_classes=self.num_classes, num_frames=d.num_frames,
                                    height=d.crop_size, width=d.crop_size, speed=d.synthetic_speed,
                                    num_objects=d.synthetic_objects, object_size=d.synthetic_object_size,
                                    background=d.synthetic_background, wrap=d.synthetic_wrap)
    except ValueError as e:
      raise DataError(f"dataset_name 'synthetic' cannot make these videos (dataset_configs.num_frames, "
                      f"crop_size and synthetic_*): {e}") from e
    scale, offset = (2.0 / 255.0, -1.0) if d.zero_centering else (1.0 / 255.0, 0.0)
    # Each uint8 pixel's input value, looked up: one pass over a batch instead of a cast, a scale and a shift.
    self.pixel_values = (np.arange(256, dtype=np.uint8).astype(np.float32) * scale + offset).astype(self.input_dtype)

  def has_split(self, split: str) -> bool:
    return self.config.dataset_configs.examples_per_subset.get(split) is not None

  def num_examples(self, split: str) -> int:
    n = self.config.dataset_configs.examples_per_subset[split]
    if n is None:
      raise DataError(f"'dataset_configs.examples_per_subset.{split}' is not set for dataset 'synthetic'")
    return n

  def split_facts(self, split: str) -> SplitFacts:
    """As generated: `examples_per_subset` videos whose class is their index modulo num_classes."""
    n = self.num_examples(split)
    if self.task.multi_head or not n:  # One-hot over all heads' classes: nothing stored per head to check.
      return SplitFacts(source='synthetic motion videos', records=n)
    return SplitFacts(source='synthetic motion videos', records=n, label_min=0,
                      label_max=(self.source.label(min(n, self.num_classes) - 1),))

  def examples(self, split: str, indices: np.ndarray) -> Batch:
    raw = self.source.batch(split, indices)
    label = np.eye(self.num_classes, dtype=np.float32)[raw['label']]
    return {'inputs': np.take(self.pixel_values, raw['video']), 'label': label}

  def views(self, clips: np.ndarray, views: Views) -> np.ndarray:
    """[B, T, H, W, 3] -> [B, V, T, H, W, 3], temporal views major and crops minor (as the video pipeline).

    Synthetic videos are no longer than a clip, so this only exercises the multi-view machinery: temporal
    view i is the clip rolled over T by the i-th of `views.clips` evenly spaced offsets, and the three
    "crops" are copies rolled over W by -W/8, 0 and +W/8 (the synthetic motion wraps around the frame, so
    shifted clips stay valid videos of their class). View 0 with one crop (or the centre crop) is the clip.
    """
    frames, width = clips.shape[1], clips.shape[3]
    offsets = np.linspace(0, frames, views.clips, endpoint=False).astype(int)
    shifts = (-(width // 8), 0, width // 8) if views.crops == 3 else (0,)
    rolled = [np.roll(np.roll(clips, -int(t), axis=1), s, axis=3) for t in offsets for s in shifts]
    return np.stack(rolled, axis=1)

  @property
  def label_names(self) -> List[str]:
    return [f'direction_{self.source.velocity(c)[0]:+.2f}_{self.source.velocity(c)[1]:+.2f}'
            for c in range(self.num_classes)]
