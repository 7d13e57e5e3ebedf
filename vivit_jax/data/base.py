"""The input-pipeline interface, and what a model's input means without any pipeline.

Every pipeline (`create_pipeline` in this package's `__init__`) offers the same interface, `Pipeline`:
`train_batches(start_step)` yields this process's rows of each global training batch from `start_step` on, so a
run resumes at the exact input position from the step alone; `eval_batches(split, views, batch_size)` yields padded
batches whose `batch_mask` marks the real examples and ends after a single pass, with one clip per video or the
multi-view test's `views` (temporal clips x spatial crops) per video.

Batches are dicts in Scenic's layout: 'inputs' [B, T, H, W, 3] (multi-view: [B, V, T, H, W, 3]) of
`data_dtype_str`, 'label' float32 one-hot [B, C], 'batch_mask' float32 [B].

`preprocessing_spec(config, label_names)` describes what the model expects (frames, stride, resize, crop, value
range, label names); it is saved with every checkpoint and read by serving code, which builds no pipeline.
"""

import collections
import dataclasses
import json
import queue
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vivit_jax import tasks

Batch = Dict[str, np.ndarray]
LABEL_MAP_FILE = 'label_map.json'  # Class names beside DMVR records, as prepare_data writes them.


class DataError(ValueError):
  """A dataset that cannot be used as configured."""


@dataclasses.dataclass(frozen=True)
class Views:
  """The views of each video in an evaluation pass: `clips` temporal clips x `crops` (1 or 3) spatial crops."""
  clips: int = 1
  crops: int = 1

  def __post_init__(self):
    if self.clips < 1 or self.crops not in (1, 3):
      raise ValueError(f'views must be CLIPSxCROPS with CLIPS >= 1 and CROPS 1 or 3, got {self.clips}x{self.crops}')

  @classmethod
  def test_views(cls, config: ml_collections.ConfigDict) -> 'Views':
    """The multi-view test's views: `num_test_clips` x (3 if `do_three_spatial_crops` else 1)."""
    d = config.dataset_configs
    return cls(d.num_test_clips, 3 if d.do_three_spatial_crops else 1)

  @property
  def count(self) -> int:
    return self.clips * self.crops

  @property
  def single(self) -> bool:
    return self.count == 1

  def __str__(self) -> str:
    return f'{self.clips}x{self.crops}'


SINGLE_VIEW = Views(1, 1)


@dataclasses.dataclass(frozen=True)
class SplitFacts:
  """What a pipeline knows of a split without decoding it, for `data.checks` to hold against the config."""
  source: str  # Where the split comes from, as messages name it (a table under base_dir, a TFDS split).
  records: int  # Videos in the split (all processes together).
  label_min: Optional[int] = None  # The smallest class index (after label_offset); None: not known.
  label_max: Tuple[int, ...] = ()  # The largest class index per stored label position (after label_offset).
  labels_per_video: Optional[Tuple[int, int]] = None  # (fewest, most) class indices of a labelled video.
  unlabeled: int = 0  # Videos without a label.
  classes: Optional[int] = None  # Classes the data itself declares (a TFDS ClassLabel), if it does.
  problems: Tuple[str, ...] = ()  # What makes the split unusable: unreadable shards, videos without frames.
  notes: Tuple[str, ...] = ()  # Worth a warning: empty shards.


def preprocessing_spec(config: ml_collections.ConfigDict,
                       label_names: Optional[List[str]] = None) -> Dict[str, Any]:
  """What the model expects of its input, as saved with every checkpoint (JSON)."""
  d = config.dataset_configs
  return {'dataset_name': config.dataset_name, 'num_frames': d.num_frames, 'stride': d.stride,
          'min_resize': d.min_resize, 'crop_size': d.crop_size,
          'value_range': [-1.0, 1.0] if d.zero_centering else [0.0, 1.0],
          'mean_rgb': list(d.mean_rgb) if d.mean_rgb else None, 'std_rgb': list(d.std_rgb) if d.std_rgb else None,
          'num_classes': d.num_classes, 'label_names': list(label_names) if label_names else None}


def read_label_map(path: str) -> List[str]:
  """Class names from a JSON file: `{'names': [...]}` (prepare_data's label_map.json) or a plain list."""
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise DataError(f'label map {path}: cannot read it as JSON: {e}') from e
  names = data.get('names') if isinstance(data, dict) else data
  if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
    raise DataError(f"label map {path}: expected {{'names': [str, ...]}} or a list of strings")
  counts = collections.Counter(names)
  repeated = [f'{name!r} ({counts[name]} times)' for name in counts if counts[name] > 1]
  if repeated:
    raise DataError(f"label map {path}: class names must be unique; repeated: {', '.join(repeated)}")
  return names


def local_rows(global_size: int, process_index: int, process_count: int) -> slice:
  """This process's rows of a global batch."""
  if global_size % process_count:
    raise DataError(f'batch size {global_size} is not divisible by the {process_count} processes')
  local = global_size // process_count
  return slice(process_index * local, (process_index + 1) * local)


class Pipeline:
  """What the trainer and the evaluators read: batch sizes, per-process rows, splits and their sizes."""

  def __init__(self, config: ml_collections.ConfigDict, process_index: Optional[int] = None,
               process_count: Optional[int] = None):
    self.config = config
    self.task = tasks.Task.from_config(config)
    self.num_classes = config.dataset_configs.num_classes
    self.batch_size = config.batch_size
    self.eval_batch_size = config.eval_batch_size or config.batch_size
    self.input_dtype = jnp.dtype(config.data_dtype_str)
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    self.seed = config.rng_seed

  def num_examples(self, split: str) -> int:
    """Videos in `split` (all processes together)."""
    raise NotImplementedError

  def has_split(self, split: str) -> bool:
    """Whether the config names data for `split` (a 'test' table, say)."""
    raise NotImplementedError

  def train_batches(self, start_step: int) -> Iterator[Batch]:
    """This process's rows of training batches `start_step`, `start_step + 1`, ... (forever)."""
    raise NotImplementedError

  def eval_batches(self, split: str, views: Views = SINGLE_VIEW,
                   batch_size: Optional[int] = None) -> Iterator[Batch]:
    """This process's rows of one exact pass over `split`, padded with `batch_mask` 0 rows; `batch_size` videos
    per global batch (default: `eval_batch_size`, else `batch_size`)."""
    raise NotImplementedError

  def split_facts(self, split: str) -> SplitFacts:
    """Counts, label range and readability of `split`, read before training (cached where reading is costly)."""
    raise NotImplementedError

  @property
  def label_names(self) -> Optional[List[str]]:
    """Class names when the data has them (TFDS features, a DMVR label_map.json), else None."""
    return None

  def local_rows(self, global_size: int) -> slice:
    return local_rows(global_size, self.process_index, self.process_count)


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
