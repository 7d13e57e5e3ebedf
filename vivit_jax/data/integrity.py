"""Where records break, found before training and named while reading.

One read of every DMVR shard before training gives its records, labels and frame counts, and where it breaks.
`scan_shards(files)` reads each TFRecord file once (parsing the labels and counting the frames, decoding no
JPEG) and caches the result by (path, size, mtime), so a rerun or another split reading the same files costs
nothing. The pipeline takes its record counts from here, and `data.checks` holds the results against the config
before the first step: a label outside `num_classes`, a truncated or CRC-corrupt shard (named, with the record
where it breaks), an empty shard or a record without frames.

While reading, every record carries its source ('path record i', or a TFDS id): `sourced_records`. A sampled
frame that is not a whole JPEG (`whole_jpegs`) or a label out of range stops the pipeline with that source, and
`reading` turns TensorFlow's error into a DataError naming the split.
"""

import dataclasses
import hashlib
import json
import os
import re
from typing import Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from vivit_jax.data.base import Batch, DataError
from vivit_jax.data.ingest import dmvr_records

SCAN_CACHE = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'),
                          'vivit_jax', 'shard_scans.json')
_VERSION = 1  # Bumped whenever ShardScan changes, so stale cache entries are re-read.
_BATCH = 256
_NO_LABEL = np.iinfo(np.int64).min
JPEG_TAIL = 64  # Bytes at the end of a JPEG frame searched for its EOI marker.


@dataclasses.dataclass
class ShardScan:
  """What one TFRecord shard holds. Labels are as stored (before `label_offset`)."""
  path: str
  records: int = 0  # Readable records (all of them unless `error`).
  unlabeled: int = 0  # Records without 'clip/label/index'.
  label_min: Optional[int] = None
  label_max: List[int] = dataclasses.field(default_factory=list)  # Per stored label position.
  no_frames: List[int] = dataclasses.field(default_factory=list)  # Indices of records with no frame (first 5).
  error: Optional[str] = None  # Why reading stopped at record `records`, when it did.


def tf_error_message(error: tf.errors.OpError) -> str:
  """TensorFlow's message without its function-node and op decorations (a failed check: just its message)."""
  message = re.sub(r'\{\{function_node [^}]*\}\}\s*', '', error.message)
  message = re.sub(r'\s*\[Op:\w+\](\s*name:\s*\S*)?', '', message).strip()
  check = re.search(r'assertion failed: \[(.*?)\]\s*$', message.splitlines()[0] if message else '')
  if check:
    return check.group(1)
  return message.splitlines()[0] if message else type(error).__name__


def _summarise(serialized: tf.Tensor):
  """(labels int64 [B, L] padded with _NO_LABEL, frames per record int64 [B]) of a batch of records."""
  context, _, lengths = tf.io.parse_sequence_example(
      serialized, context_features={dmvr_records.LABEL_INDEX_KEY: tf.io.VarLenFeature(tf.int64)},
      sequence_features={dmvr_records.FRAMES_KEY: tf.io.FixedLenSequenceFeature([], tf.string)})
  labels = tf.sparse.to_dense(context[dmvr_records.LABEL_INDEX_KEY], default_value=_NO_LABEL)
  return labels, lengths[dmvr_records.FRAMES_KEY]


def _count_readable(path: str) -> int:
  """Records readable one by one before the first error (the slow path, only for a broken shard)."""
  count = 0
  try:
    for _ in tf.data.TFRecordDataset(path):
      count += 1
  except tf.errors.OpError:
    pass
  return count


def scan_shard(path: str) -> ShardScan:
  """Reads one shard through (see the module docstring)."""
  scan = ShardScan(path)
  label_max = np.full([0], _NO_LABEL, np.int64)
  try:
    for labels, frames in tf.data.TFRecordDataset(path).batch(_BATCH).map(_summarise).as_numpy_iterator():
      start = scan.records
      scan.records += len(frames)
      scan.no_frames.extend((start + np.flatnonzero(frames == 0)).tolist())
      present = labels != _NO_LABEL
      scan.unlabeled += int(np.sum(~present.any(axis=1))) if labels.shape[1] else len(frames)
      if present.any():
        low = int(labels[present].min())
        scan.label_min = low if scan.label_min is None else min(scan.label_min, low)
        width = max(len(label_max), labels.shape[1])
        label_max = np.maximum(np.pad(label_max, (0, width - len(label_max)), constant_values=_NO_LABEL),
                               np.pad(labels.max(axis=0), (0, width - labels.shape[1]), constant_values=_NO_LABEL))
  except tf.errors.OpError as e:
    scan.records = _count_readable(path)
    scan.error = f'record {scan.records} is unreadable: {tf_error_message(e)}'
  scan.label_max = [int(v) for v in label_max if v != _NO_LABEL]
  scan.no_frames = scan.no_frames[:5]
  return scan


def _key(path: str) -> str:
  stat = os.stat(path)
  return hashlib.sha1(f'{_VERSION}|{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}'.encode()).hexdigest()


def scan_shards(files: Sequence[str], cache_path: Optional[str] = None) -> List[ShardScan]:
  """`scan_shard` of every file, each read once per (path, size, mtime) thanks to a JSON cache (default
  SCAN_CACHE; an unreadable cache, or a read-only home, only costs a rescan). Entries of files that no longer
  exist are dropped when the cache is written."""
  cache_path = cache_path or SCAN_CACHE
  try:
    with open(cache_path) as f:
      cache = json.load(f)
  except (OSError, ValueError):
    cache = {}
  scans, changed = [], False
  for path in files:
    key = _key(path)
    entry = cache.get(key)
    try:
      scan = dataclasses.replace(ShardScan(**entry), path=path) if isinstance(entry, dict) else None
    except TypeError:
      scan = None
    if scan is None:
      scan = scan_shard(path)
      cache[key], changed = dataclasses.asdict(scan), True
    scans.append(scan)
  if changed:
    cache = {k: v for k, v in cache.items() if isinstance(v, dict) and os.path.exists(str(v.get('path')))}
    try:
      os.makedirs(os.path.dirname(cache_path), exist_ok=True)
      tmp = f'{cache_path}.tmp-{os.getpid()}'
      with open(tmp, 'w') as f:
        json.dump(cache, f)
      os.replace(tmp, cache_path)
    except OSError:
      pass
  return scans


def whole_jpegs(jpegs: tf.Tensor) -> tf.Tensor:
  """Whether every JPEG of a [N] string tensor starts with its SOI marker and has its EOI marker among the last
  JPEG_TAIL bytes (a cheap test of truncation and of bytes that are no JPEG at all; decodes nothing)."""
  pad = tf.fill(tf.shape(jpegs), b'\0' * JPEG_TAIL)
  padded = tf.strings.join([pad, jpegs, pad])
  length = tf.strings.length(padded)
  head = tf.io.decode_raw(tf.strings.substr(padded, tf.fill(tf.shape(jpegs), JPEG_TAIL), 2 * tf.ones_like(length)),
                          tf.uint8)
  tail = tf.io.decode_raw(tf.strings.substr(padded, length - 2 * JPEG_TAIL, JPEG_TAIL * tf.ones_like(length)),
                          tf.uint8)
  starts = (head[:, 0] == 0xFF) & (head[:, 1] == 0xD8)
  ends = tf.reduce_any((tail[:, :-1] == 0xFF) & (tail[:, 1:] == 0xD9), axis=1)
  return tf.reduce_all(starts & ends)


def sourced_records(path: tf.Tensor) -> tf.data.Dataset:
  """The records of one TFRecord file, each with its source 'path record i' for messages."""
  return tf.data.TFRecordDataset(path).enumerate().map(
      lambda i, record: (record, tf.strings.join([path, ' record ', tf.strings.as_string(i)])))


def reading(batches: Iterator[Batch], what: str) -> Iterator[Batch]:
  """`batches`, with TensorFlow's errors (an unreadable record, a check of `_label` or `_frames`) raised as
  DataError naming `what` is being read."""
  try:
    yield from batches
  except tf.errors.OpError as e:
    raise DataError(f'{what}: {tf_error_message(e)}') from e
