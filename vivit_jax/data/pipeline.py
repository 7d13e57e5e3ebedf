"""Input pipelines: per-process batches whose content depends only on (seed, step), so a run resumes at the
exact input position after any interruption, and evaluation passes that see every example exactly once.

Every pipeline offers the same interface (`Pipeline`): `train_batches(start_step)` yields this process's rows
of each global training batch from `start_step` on; `eval_batches(split)` yields padded batches whose
`batch_mask` marks the real examples, ending after a single pass; `preprocessing` describes what the model
expects (saved with every checkpoint).

Batches are dicts in Scenic's layout: 'inputs' float [B, T, H, W, 3], 'label' float one-hot [B, C],
'batch_mask' float [B].
"""

import queue
import threading
from typing import Any, Dict, Iterator, Optional

import jax
import ml_collections
import numpy as np

from vivit_jax.data.sources.synthetic import SyntheticMotion

Batch = Dict[str, np.ndarray]


class DataError(ValueError):
  """A dataset that cannot be used as configured."""


def _local_rows(global_size: int, process_index: int, process_count: int) -> slice:
  if global_size % process_count:
    raise DataError(f'batch size {global_size} is not divisible by the {process_count} processes')
  local = global_size // process_count
  return slice(process_index * local, (process_index + 1) * local)


class Pipeline:
  """What the trainer and the evaluators read: batch sizes, per-process rows, splits and their sizes."""

  def __init__(self, config: ml_collections.ConfigDict, process_index: Optional[int] = None,
               process_count: Optional[int] = None):
    self.config = config
    self.num_classes = config.dataset_configs.num_classes
    self.batch_size = config.batch_size
    self.eval_batch_size = config.eval_batch_size or config.batch_size
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    self.seed = config.rng_seed

  def num_examples(self, split: str) -> int:
    """Videos in `split` (all processes together)."""
    raise NotImplementedError

  def train_batches(self, start_step: int) -> Iterator[Batch]:
    """This process's rows of training batches `start_step`, `start_step + 1`, ... (forever)."""
    raise NotImplementedError

  def eval_batches(self, split: str) -> Iterator[Batch]:
    """This process's rows of one exact pass over `split`, padded with `batch_mask` 0 rows."""
    raise NotImplementedError

  @property
  def preprocessing(self) -> Dict[str, Any]:
    d = self.config.dataset_configs
    return {'dataset_name': self.config.dataset_name, 'num_frames': d.num_frames, 'stride': d.stride,
            'min_resize': d.min_resize, 'crop_size': d.crop_size,
            'value_range': [-1.0, 1.0] if d.zero_centering else [0.0, 1.0],
            'mean_rgb': list(d.mean_rgb) if d.mean_rgb else None, 'std_rgb': list(d.std_rgb) if d.std_rgb else None,
            'num_classes': self.num_classes, 'label_names': self.label_names}

  @property
  def label_names(self):
    return None

  def local_rows(self, global_size: int) -> slice:
    return _local_rows(global_size, self.process_index, self.process_count)


class RandomAccessPipeline(Pipeline):
  """A pipeline over a source that can produce any example by index (`examples(split, indices)`): batch
  `s` is a pure function of (seed, s), so resuming needs nothing but the step."""

  def examples(self, split: str, indices: np.ndarray) -> Batch:
    """{'inputs': float32 [n, T, H, W, 3], 'label': one-hot [n, C]} for example `indices` of `split`."""
    raise NotImplementedError

  def _train_order(self, epoch: int) -> np.ndarray:
    n = self.num_examples('train')
    return np.random.default_rng([self.seed, epoch]).permutation(n)

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

  def num_eval_batches(self, split: str) -> int:
    return -(-self.num_examples(split) // self.eval_batch_size)

  def eval_batches(self, split: str) -> Iterator[Batch]:
    """One exact pass: the last batch is padded with masked copies of the first example."""
    n = self.num_examples(split)
    rows = self.local_rows(self.eval_batch_size)
    for b in range(self.num_eval_batches(split)):
      indices = np.arange(b * self.eval_batch_size, (b + 1) * self.eval_batch_size)[rows]
      mask = (indices < n).astype(np.float32)
      batch = self.examples(split, np.where(indices < n, indices, 0))
      batch['batch_mask'] = mask
      yield batch


class SyntheticPipeline(RandomAccessPipeline):
  """`dataset_name='synthetic'`: motion classes (data/sources/synthetic.py) at the config's clip size."""

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
    self.scale, self.offset = (2.0 / 255.0, -1.0) if d.zero_centering else (1.0 / 255.0, 0.0)

  def num_examples(self, split: str) -> int:
    n = self.config.dataset_configs.examples_per_subset[split]
    if n is None:
      raise DataError(f"'dataset_configs.examples_per_subset.{split}' is not set for dataset 'synthetic'")
    return n

  def examples(self, split: str, indices: np.ndarray) -> Batch:
    raw = self.source.batch(split, indices)
    inputs = raw['video'].astype(np.float32) * self.scale + self.offset
    label = np.eye(self.num_classes, dtype=np.float32)[raw['label']]
    return {'inputs': inputs, 'label': label}

  def eval_batches(self, split: str, multi_view: bool = False) -> Iterator[Batch]:
    """One exact pass (see `RandomAccessPipeline.eval_batches`); `multi_view` gives 'inputs'
    [B, V, T, H, W, 3] with V = num_test_clips x (3 if do_three_spatial_crops else 1) from `views`."""
    for batch in super().eval_batches(split):
      if multi_view:
        batch['inputs'] = self.views(batch['inputs'])
      yield batch

  def views(self, clips: np.ndarray) -> np.ndarray:
    """[B, T, H, W, 3] -> [B, V, T, H, W, 3], temporal views major and crops minor (as the video pipeline).

    Synthetic videos are no longer than a clip, so this only exercises the multi-view machinery: temporal
    view i is the clip rolled over T by the i-th of `num_test_clips` evenly spaced offsets, and the three
    "crops" are copies rolled over W by -W/8, 0 and +W/8 (the synthetic motion wraps around the frame, so
    shifted clips stay valid videos of their class). View 0 with one crop (or the centre crop) is the clip.
    """
    d = self.config.dataset_configs
    frames, width = clips.shape[1], clips.shape[3]
    offsets = np.linspace(0, frames, d.num_test_clips, endpoint=False).astype(int)
    shifts = (-(width // 8), 0, width // 8) if d.do_three_spatial_crops else (0,)
    views = [np.roll(np.roll(clips, -int(t), axis=1), s, axis=3) for t in offsets for s in shifts]
    return np.stack(views, axis=1)

  @property
  def label_names(self):
    return [f'direction_{self.source.velocity(c)[0]:+.2f}_{self.source.velocity(c)[1]:+.2f}'
            for c in range(self.num_classes)]


def create_pipeline(config: ml_collections.ConfigDict, process_index: Optional[int] = None,
                    process_count: Optional[int] = None) -> Pipeline:
  """The pipeline for `config.dataset_name`: 'synthetic', 'video_tfrecord_dataset' (DMVR) or 'tfds'."""
  from vivit_jax.data import video_pipeline  # pylint: disable=g-import-not-at-top
  pipelines = {'synthetic': SyntheticPipeline, 'video_tfrecord_dataset': video_pipeline.DMVRPipeline,
               'tfds': video_pipeline.TFDSPipeline}
  if config.dataset_name not in pipelines:
    raise DataError(f"dataset_name '{config.dataset_name}'; expected one of {sorted(pipelines)}")
  return pipelines[config.dataset_name](config, process_index, process_count)


def prefetch(iterator: Iterator[Any], size: int) -> Iterator[Any]:
  """Runs `iterator` in a background thread, `size` items ahead (exceptions re-raised in the consumer)."""
  if size <= 0:
    yield from iterator
    return
  items: 'queue.Queue[Any]' = queue.Queue(maxsize=size)
  done = object()

  def produce():
    try:
      for item in iterator:
        items.put(item)
    except BaseException as e:  # pylint: disable=broad-except
      items.put(e)
    items.put(done)

  threading.Thread(target=produce, daemon=True).start()
  while True:
    item = items.get()
    if item is done:
      return
    if isinstance(item, BaseException):
      raise item
    yield item
