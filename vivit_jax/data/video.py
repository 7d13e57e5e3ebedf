"""The tf.data pipeline over real videos: DMVR TFRecords (`video_tfrecord_dataset`) and the TFDS builders of
`vivit_jax/data/ingest/builders` (`tfds`).

Records hold JPEG frames; only the sampled frames are decoded. Everything random is a stateless function of
(seed, epoch, position in the epoch), so:

- the order is deterministic for a seed, and each process reads a disjoint part of every split (whole files when
  there are at least as many files as processes, else every P-th record; TFDS splits are cut evenly);
- training batch `s` of a process is example `s * local_batch` onwards of its endless stream of epochs, so a
  resumed run rebuilds the stream at that epoch and skips the records already used in it (reading, not
  decoding, them): the batches are exactly those an uninterrupted run sees, with no iterator state to save;
- evaluation is one pass over each process's part, padded with `batch_mask` 0 rows to the same number of
  batches on every process.

TensorFlow is kept off the accelerators.
"""

import dataclasses
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from vivit_jax.data.base import (LABEL_MAP_FILE, SINGLE_VIEW, Batch, DataError, Pipeline, SplitFacts, Views,
                                 read_label_map)
from vivit_jax.data.ingest import dmvr_records
from vivit_jax.data.integrity import (ShardScan, facts_of_scans, failing_source, reading, scan_shards,
                                      sourced_records, whole_images)
from vivit_jax.data.transforms import augment, sampling

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 1024  # Records (JPEG bytes, not decoded frames) held for shuffling.


def _hide_accelerators_from_tensorflow() -> None:
  try:
    tf.config.set_visible_devices([], 'GPU')
    tf.config.set_visible_devices([], 'TPU')
  except (RuntimeError, ValueError):  # Already initialised, or no such device type: nothing to hide.
    pass


class _Part:
  """One process's part of one split: a deterministic record stream and its length."""

  def __init__(self, make: Callable[[Optional[tf.Tensor]], tf.data.Dataset], size: int):
    self.make = make  # epoch seed (or None: file order as stored) -> dataset of (record, source) pairs
    self.size = size


class VideoPipeline(Pipeline):
  """Decoding, sampling, augmentation and batching shared by the record sources; subclasses give `_part`."""

  def __init__(self, config, process_index=None, process_count=None):
    super().__init__(config, process_index, process_count)
    _hide_accelerators_from_tensorflow()
    d = config.dataset_configs
    self.d = d
    self.aug = augment.augmentation_params(config)
    self._parts: Dict[str, _Part] = {}
    self._scans: Dict[str, List[ShardScan]] = {}

  # --- Sources -------------------------------------------------------------------------------------------
  def _part(self, split: str) -> _Part:
    raise NotImplementedError

  def _decode_record(self, record: Any) -> Tuple[tf.Tensor, tf.Tensor]:
    """(JPEG frames tf.string [T], label indices int64 [L]) of one record."""
    raise NotImplementedError

  def part(self, split: str) -> _Part:
    if split not in self._parts:
      self._parts[split] = self._part(split)
    return self._parts[split]

  def num_examples(self, split: str) -> int:
    """Training: `examples_per_subset.train` when set (epochs convert with it, as in Scenic); evaluation
    splits: the videos actually there, which the exact pass must see."""
    n = self.config.dataset_configs.examples_per_subset[split] if split == 'train' else None
    return n if n is not None else self._total_size(split)

  def _total_size(self, split: str) -> int:
    raise NotImplementedError

  # --- Per-example processing ----------------------------------------------------------------------------
  def _label(self, indices: tf.Tensor, source: tf.Tensor) -> tf.Tensor:
    """One-hot / multi-hot float32 [C] from stored indices (minus label_offset). Multi-head models store one
    index per head, each counted within its head. A label out of range, a video without one (multi-label videos
    may have none), or a multi-head video without one index per head stops the pipeline naming `source`
    (data.checks catches these before training where the data is scanned)."""
    indices = stored = tf.cast(indices, tf.int32) - self.d.label_offset
    if self.task.multi_head:
      heads = len(self.task.heads)
      sizes = tf.constant([h.num_classes for h in self.task.heads], tf.int32)
      present = tf.size(indices) == heads
      indices = tf.pad(indices, [[0, tf.maximum(heads - tf.size(indices), 0)]])[:heads]
      ok = present & tf.reduce_all(indices < sizes) & tf.reduce_all(indices >= 0)
      indices = indices + tf.constant(self.task.head_offsets, tf.int32)
      expected = f'one class index per head within class_splits {tuple(h.num_classes for h in self.task.heads)}'
    else:
      ok = tf.reduce_all(indices < self.num_classes) & tf.reduce_all(indices >= 0)
      if not self.task.multi_label:
        ok = ok & (tf.size(indices) > 0)
      expected = f'class indices within the {self.num_classes} classes of the config'
    # Assert formats its data only when it fails: nothing is spent on messages for good records.
    check = tf.debugging.Assert(ok, [source, ': class indices', stored, f'after label_offset '
                                     f'{self.d.label_offset}; expected {expected}'])
    with tf.control_dependencies([check]):
      hot = tf.one_hot(indices, self.num_classes, dtype=tf.float32)
    return tf.minimum(tf.reduce_sum(hot, axis=0), 1.0)

  def _frames(self, jpegs: tf.Tensor, indices: tf.Tensor, source: tf.Tensor) -> tf.Tensor:
    """The decoded frames at `indices`; a frame that is not a whole image stops the pipeline naming `source`."""
    picked = tf.gather(jpegs, indices)
    check = tf.debugging.Assert(whole_images(picked), [
        source, ': a frame of the sampled indices', indices, 'is not a whole JPEG (truncated or corrupt)'])
    with tf.control_dependencies([check]):
      picked = tf.identity(picked)
    return tf.map_fn(lambda j: tf.io.decode_jpeg(j, channels=3), picked,
                     fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8), parallel_iterations=16)

  def _normalise(self, frames: tf.Tensor) -> tf.Tensor:
    """Model input of `data_dtype_str` (computed in float32)."""
    x = augment.normalize(frames, zero_centering=self.d.zero_centering, mean_rgb=self.d.mean_rgb,
                          std_rgb=self.d.std_rgb)
    return tf.cast(x, self.input_dtype.name)

  def _train_example(self, sourced: Tuple[Any, tf.Tensor], seed: tf.Tensor) -> Dict[str, tf.Tensor]:
    record, source = sourced
    jpegs, label = self._decode_record(record)
    sample_seed, augment_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    indices = sampling.train_indices(tf.shape(jpegs)[0], self.d.num_frames, self.d.stride, sample_seed,
                                     mode=self.d.short_video_mode)
    frames = augment.train_augment(self._frames(jpegs, indices, source), augment_seed,
                                   min_resize=self.d.min_resize, crop_size=self.d.crop_size, aug=self.aug)
    return {'inputs': self._normalise(frames), 'label': self._label(label, source),
            'batch_mask': tf.constant(1.0, tf.float32)}

  def _eval_example(self, record: Any, source: tf.Tensor, views: Views) -> Dict[str, tf.Tensor]:
    jpegs, label = self._decode_record(record)
    n = tf.shape(jpegs)[0]
    if not views.single:
      starts = sampling.multi_view_indices(n, self.d.num_frames, self.d.stride, views.clips,
                                           mode=self.d.short_video_mode)
      clips = tf.map_fn(lambda idx: self._eval_view(jpegs, idx, views.crops, source), starts,
                        fn_output_signature=tf.TensorSpec([views.crops, None, None, None, 3],
                                                          self.input_dtype.name))
      inputs = tf.reshape(clips, [-1, self.d.num_frames, self.d.crop_size, self.d.crop_size, 3])
    else:
      indices = sampling.center_indices(n, self.d.num_frames, self.d.stride, mode=self.d.short_video_mode)
      inputs = self._eval_view(jpegs, indices, 1, source)[0]
    return {'inputs': inputs, 'label': self._label(label, source), 'batch_mask': tf.constant(1.0, tf.float32)}

  def _eval_view(self, jpegs: tf.Tensor, indices: tf.Tensor, crops: int, source: tf.Tensor) -> tf.Tensor:
    """[crops, T, crop, crop, 3] normalised views of the frames at `indices`."""
    frames = augment.eval_preprocess(self._frames(jpegs, indices, source), min_resize=self.d.min_resize,
                                     crop_size=self.d.crop_size, num_crops=crops)
    frames = frames if crops > 1 else frames[None]
    return self._normalise(tf.cast(frames, tf.float32))

  # --- Streams -------------------------------------------------------------------------------------------
  def _epoch(self, part: _Part, epoch: tf.Tensor) -> tf.data.Dataset:
    """Epoch `epoch` of this process's training stream: ((record, source), per-example seed)."""
    seed = tf.stack([tf.cast(self.seed, tf.int64), tf.cast(epoch, tf.int64)])
    records = part.make(seed).shuffle(SHUFFLE_BUFFER, seed=self.seed * 1_000_003 + epoch,
                                      reshuffle_each_iteration=False)
    positions = tf.data.Dataset.range(part.size)
    return tf.data.Dataset.zip((records, positions)).map(
        lambda record, i: (record, tf.stack([seed[0] * 7_919 + seed[1], i])))

  def _train_records(self, start_step: int) -> tf.data.Dataset:
    """This process's ((record, source), seed) stream from training batch `start_step` on."""
    part = self.part('train')
    if part.size == 0:
      raise DataError(f"process {self.process_index} has no training videos in split 'train'")
    epoch, position = divmod(start_step * self._local_size(self.batch_size), part.size)
    first = self._epoch(part, tf.constant(epoch, tf.int64)).skip(position)
    rest = tf.data.Dataset.range(epoch + 1, 2 ** 62).flat_map(lambda e: self._epoch(part, e))
    return first.concatenate(rest)

  def train_batches(self, start_step: int) -> Iterator[Batch]:
    local = self._local_size(self.batch_size)
    ds = self._train_records(start_step).map(self._train_example, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(local, drop_remainder=True).prefetch(AUTOTUNE)
    locate = lambda b: failing_source(self._train_records(start_step + b).take(local), self._train_example,
                                       lambda sourced, seed: sourced[1])
    return reading(ds.as_numpy_iterator(), f"reading split 'train' ({self.source('train')})", locate)

  def eval_batches(self, split: str, views: Views = SINGLE_VIEW,
                   batch_size: Optional[int] = None) -> Iterator[Batch]:
    """One exact pass over this process's part of `split`; with `views` other than 1x1, 'inputs' are
    [B, clips * crops, T, H, W, 3] (temporal views major, spatial crops minor) instead of one centred clip."""
    part = self.part(split)
    size = batch_size or self.eval_batch_size
    local = self._local_size(size)
    example = lambda r, source: self._eval_example(r, source, views)
    ds = part.make(None).map(example, num_parallel_calls=AUTOTUNE, deterministic=True)
    padding = self.num_local_eval_batches(split, size) * local - part.size
    if padding:
      ds = ds.concatenate(tf.data.Dataset.from_tensors(self._blank(views)).repeat(padding))
    locate = lambda b: failing_source(part.make(None).skip(b * local).take(local), example,
                                       lambda record, source: source)
    return reading(ds.batch(local).prefetch(AUTOTUNE).as_numpy_iterator(),
                   f"reading split '{split}' ({self.source(split)})", locate)

  def _blank(self, views: Views) -> Dict[str, tf.Tensor]:
    """A padding example (batch_mask 0)."""
    shape = ([] if views.single else [views.count]) + [self.d.num_frames, self.d.crop_size, self.d.crop_size, 3]
    return {'inputs': tf.zeros(shape, self.input_dtype.name), 'label': tf.zeros([self.num_classes], tf.float32),
            'batch_mask': tf.constant(0.0, tf.float32)}

  def _local_size(self, global_size: int) -> int:
    rows = self.local_rows(global_size)
    return rows.stop - rows.start

  def num_local_eval_batches(self, split: str, batch_size: Optional[int] = None) -> int:
    """The same on every process: enough batches for the largest part."""
    local = self._local_size(batch_size or self.eval_batch_size)
    return max(-(-size // local) for size in self.part_sizes(split))

  def num_eval_batches(self, split: str, batch_size: Optional[int] = None) -> int:
    return self.num_local_eval_batches(split, batch_size)

  def part_sizes(self, split: str) -> List[int]:
    """Videos in every process's part of `split` (this process's is `part(split).size`)."""
    raise NotImplementedError

  def source(self, split: str) -> str:
    """Where `split` is read from, as messages name it."""
    raise NotImplementedError


class DMVRPipeline(VideoPipeline):
  """`dataset_name='video_tfrecord_dataset'`: Scenic's DMVR TFRecords (base_dir, tables, label_offset)."""

  def files(self, split: str) -> List[str]:
    table = self.d.tables[split]
    if not table:
      raise DataError(f"'dataset_configs.tables.{split}' is empty: name the {split} TFRecords "
                      "('name@N' shards or a list of files under base_dir)")
    try:
      return dmvr_records.resolve_table(self.d.base_dir, table)
    except (FileNotFoundError, ValueError) as e:
      raise DataError(f"'dataset_configs.tables.{split}': {e}") from e

  def has_split(self, split: str) -> bool:
    """Whether `tables.{split}` is set; its shards must then exist (checked here, before any training)."""
    if not self.d.tables.get(split):
      return False
    self.files(split)
    return True

  @property
  def label_names(self) -> Optional[List[str]]:
    """The names in `base_dir/label_map.json` (what prepare_data writes beside the records), if it is there."""
    path = os.path.join(self.d.base_dir, LABEL_MAP_FILE)
    if not self.d.base_dir or not os.path.isfile(path):
      return None
    names = read_label_map(path)
    if len(names) != self.num_classes:
      raise DataError(f"{path} names {len(names)} classes, but 'dataset_configs.num_classes' is "
                      f'{self.num_classes}')
    return names

  def _assignment(self, split: str) -> Tuple[List[str], Optional[Tuple[int, int]]]:
    """(files this process reads, record-level (count, index) sharding or None for whole files)."""
    files = self.files(split)
    if len(files) >= self.process_count:
      return files[self.process_index::self.process_count], None
    return files, (self.process_count, self.process_index)

  def source(self, split: str) -> str:
    return f'table {self.d.tables[split]!r} under base_dir {self.d.base_dir!r}'

  def scans(self, split: str) -> List[ShardScan]:
    """One cached read of every shard of `split` (`integrity.scan_shards`), made once per pipeline."""
    if split not in self._scans:
      self._scans[split] = scan_shards(self.files(split))
    return self._scans[split]

  def split_facts(self, split: str) -> SplitFacts:
    return facts_of_scans(self.source(split), self.scans(split), self.d.label_offset)

  def part_sizes(self, split: str) -> List[int]:
    files = self.files(split)
    counts = [s.records for s in self.scans(split)]
    if len(files) >= self.process_count:
      return [sum(counts[p::self.process_count]) for p in range(self.process_count)]
    total = sum(counts)
    return [len(range(p, total, self.process_count)) for p in range(self.process_count)]

  def _total_size(self, split: str) -> int:
    return sum(s.records for s in self.scans(split))

  def _part(self, split: str) -> _Part:
    files, record_shard = self._assignment(split)
    if record_shard:
      size = self.part_sizes(split)[self.process_index]
    else:
      size = sum(s.records for s in self.scans(split)[self.process_index::self.process_count])

    def make(seed: Optional[tf.Tensor]) -> tf.data.Dataset:
      names = tf.constant(files)
      if seed is not None and not record_shard:
        names = tf.random.experimental.stateless_shuffle(names, seed)
      if record_shard:
        return tf.data.Dataset.from_tensor_slices(names).flat_map(sourced_records).shard(*record_shard)
      return tf.data.Dataset.from_tensor_slices(names).interleave(
          sourced_records, cycle_length=1 if seed is None else min(8, len(files)), block_length=1,
          num_parallel_calls=AUTOTUNE, deterministic=True)
    return _Part(make, size)

  def _decode_record(self, record):
    parsed = dmvr_records.parse_sequence_example(record)
    return parsed['frames'], parsed['label_index']


def _prepared_builder(tfds_name: str, data_dir: str):
  """The prepared dataset `name[/config]` under `data_dir` (config default: fps10_short256); a config made
  with other --fps/--short_side values is read back from its directory."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from vivit_jax.data.ingest import builders  # pylint: disable=g-import-not-at-top
  name, _, config = tfds_name.partition('/')
  cls = builders.builder_class(name, key='dataset_configs.tfds_name')
  if not config or config in cls.builder_configs:
    builder = cls(data_dir=data_dir, config=config or None)
  else:
    root = os.path.join(data_dir, cls.name, config)
    versions = sorted(os.listdir(root)) if os.path.isdir(root) else []
    if not versions:
      raise DataError(f"no prepared dataset '{tfds_name}' in {root}; run scripts/prepare_data.py --format=tfds")
    builder = tfds.builder_from_directory(os.path.join(root, versions[-1]))
  if not builder.is_prepared():
    raise DataError(f"dataset '{tfds_name}' is not prepared under {data_dir}; run scripts/prepare_data.py "
                    '--format=tfds --output=' + data_dir)
  return builder


class TFDSPipeline(VideoPipeline):
  """`dataset_name='tfds'`: a builder of vivit_jax/data/ingest/builders (`tfds_name`) prepared under base_dir."""

  def __init__(self, config, process_index=None, process_count=None):
    super().__init__(config, process_index, process_count)
    if not self.d.tfds_name:
      raise DataError("dataset_name 'tfds' needs 'dataset_configs.tfds_name' (e.g. 'kinetics400') and "
                      "'dataset_configs.base_dir' (the data_dir given to scripts/prepare_data.py)")
    self.builder = _prepared_builder(self.d.tfds_name, self.d.base_dir)

  def has_split(self, split: str) -> bool:
    return split in self.builder.info.splits

  def _subsplits(self, split: str) -> List[str]:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    return tfds.even_splits(split, n=self.process_count)

  def part_sizes(self, split: str) -> List[int]:
    return [self.builder.info.splits[s].num_examples for s in self._subsplits(split)]

  def _total_size(self, split: str) -> int:
    return self.builder.info.splits[split].num_examples

  def _part(self, split: str) -> _Part:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    subsplit = self._subsplits(split)[self.process_index]

    def make(seed: Optional[tf.Tensor]) -> tf.data.Dataset:
      del seed  # TFDS shuffles examples when preparing; epochs differ by the shuffle buffer's seed.
      records = self.builder.as_dataset(split=subsplit, shuffle_files=False,
                                        decoders={'video': tfds.decode.SkipDecoding()},
                                        read_config=tfds.ReadConfig(interleave_cycle_length=1, add_tfds_id=True))
      return records.map(lambda record: (record, record['tfds_id']))
    return _Part(make, self.part_sizes(split)[self.process_index])

  def source(self, split: str) -> str:
    return f"TFDS '{self.d.tfds_name}' split '{split}' under {self.d.base_dir!r}"

  def split_facts(self, split: str) -> SplitFacts:
    """From one cached read of the split's shards (labels, frames, readability) and its ClassLabel's size."""
    if split not in self.builder.info.splits:
      raise DataError(f"{self.source(split)}: the prepared dataset has no such split; it has "
                      f'{sorted(self.builder.info.splits)}')
    if split not in self._scans:
      files = [os.fspath(f) for f in self.builder.info.splits[split].filepaths]
      self._scans[split] = scan_shards(files, kind='tfds')
    facts = facts_of_scans(self.source(split), self._scans[split], 0)
    return dataclasses.replace(facts, classes=self.builder.info.features['label'].num_classes)

  def _decode_record(self, record):
    return record['video'], tf.reshape(record['label'], [-1])

  @property
  def label_names(self) -> List[str]:
    return list(self.builder.info.features['label'].names)
