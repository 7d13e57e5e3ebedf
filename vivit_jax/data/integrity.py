"""Where records break, found before training and named while reading.

One read of every shard before training (DMVR SequenceExamples, or the tf.train.Examples of a TFDS split) gives
its records, labels and frame counts, and where it breaks. `scan_shards(files, kind)` reads each TFRecord file
once, several in parallel (parsing the labels and counting the frames, decoding no JPEG), and caches the result
by (path, size, mtime), so a rerun or another split reading the same files costs nothing. The pipeline takes its record counts from here, and `data.checks` holds the results against the config
before the first step: a label outside `num_classes`, a truncated or CRC-corrupt shard (named, with the record
where it breaks), an empty shard or a record without frames.

While reading, every record carries its source ('path record i', or a TFDS id): `sourced_records`. A sampled
frame that is not a whole JPEG or PNG (`whole_images`) or a label out of range stops the pipeline with that
source, and `reading` turns TensorFlow's error into a DataError naming the split and, for an error that names no
record (a frame whose bytes are damaged inside), the record found by decoding that batch's records one by one.
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from google.protobuf import message as protobuf_message
import numpy as np
import tensorflow as tf

from vivit_jax.data.base import Batch, DataError, SplitFacts
from vivit_jax.paths import is_remote
from vivit_jax.data.ingest import dmvr_records

SCAN_CACHE = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'),
                          'vivit_jax', 'shard_scans.json')
_VERSION = 3  # Bumped whenever ShardScan (or what it records) changes, so stale cache entries are re-read.
_BATCH = 16  # Records parsed at once (their frames are held while parsing).
_PARALLEL_FILES = 8
_NO_LABEL = np.iinfo(np.int64).min
TFDS_UNLABELED = -1  # The label TFDS (and vivit_jax's builders) store for a video without one.
IMAGE_TAIL = 64  # Bytes at the end of a frame searched for its end marker (JPEG EOI, PNG IEND).


@dataclasses.dataclass
class ShardScan:
  """What one TFRecord shard holds. Labels are as stored (before `label_offset`)."""
  path: str
  records: int = 0  # Readable records (all of them unless `error`).
  unlabeled: int = 0  # Records without 'clip/label/index'.
  label_min: Optional[int] = None
  label_max: List[int] = dataclasses.field(default_factory=list)  # Per stored label position.
  labels_per_record: List[int] = dataclasses.field(default_factory=list)  # [fewest, most] of labelled records.
  no_frames: List[int] = dataclasses.field(default_factory=list)  # Indices of records with no frame (first 5).
  error: Optional[str] = None  # Why reading stopped at record `records`, when it did.


# TensorFlow's wrappers around a parse error, and its advice to the caller of the op (not to our user).
_TF_NOISE = (r'Error in user-defined function passed to \S+ transformation with iterator: (Iterator::\S+: )?',
             r'Name: <unknown>,\s*', r',\s*example id: <unknown>',
             r'\s*Did you mean to include it in \S+ or \S+\?')
_TF_REWORDS = (  # TensorFlow's parse errors, reworded 'what: why'.
    (r"(Context feature|Feature list|Feature): (\S+?)\.\s+Data types don't match\. Expected type: (\w+)",
     lambda m: f"{m[1].lower()} {m[2]}: data types don't match, expected {m[3]}"),
    (r"(Feature list|Feature) ('[^']*') is required but could not be found\.?",
     lambda m: f'{m[1].lower()} {m[2]} is required but missing'),
    (r'Invalid protocol message input', lambda m: 'invalid protocol message input'),
    (r"truncated record at (\d+)' failed with Read less bytes than requested",
     lambda m: f'the file ends inside it (truncated at byte {m[1]})'),
)


def tf_error_message(error: tf.errors.OpError) -> str:
  """TensorFlow's message without its function-node, op and dataset decorations (a failed check: just its
  message; a parse error: 'what: why')."""
  message = re.sub(r'\{\{function_node [^}]*\}\}\s*', '', error.message)
  message = re.sub(r'\s*\[Op:\w+\](\s*name:\s*\S*)?', '', message).strip()
  for noise in _TF_NOISE:
    message = re.sub(noise, '', message)
  for pattern, reword in _TF_REWORDS:
    message = re.sub(pattern, reword, message)
  first = message.splitlines()[0] if message else type(error).__name__
  check = first.find('assertion failed: ')
  if check < 0:
    return first
  # A failed tf.debugging.Assert of ours: [source] [text] [numbers] [text] -> 'source: text [numbers] text'.
  parts = re.findall(r'\[([^\[\]]*)\]', first[check:])
  parts = [f'[{p}]' if re.fullmatch(r'-?\d+( -?\d+)*', p) else p for p in parts]
  return f"{parts[0]}{' '.join(parts[1:])}" if parts else first[check:]


def _summarise_dmvr(serialized: tf.Tensor):
  """(labels int64 [B, L] padded with _NO_LABEL, frames per record int64 [B]) of a batch of DMVR records."""
  context, _, lengths = tf.io.parse_sequence_example(
      serialized, context_features={dmvr_records.LABEL_INDEX_KEY: tf.io.VarLenFeature(tf.int64)},
      sequence_features={dmvr_records.FRAMES_KEY: tf.io.FixedLenSequenceFeature([], tf.string)})
  labels = tf.sparse.to_dense(context[dmvr_records.LABEL_INDEX_KEY], default_value=_NO_LABEL)
  return labels, lengths[dmvr_records.FRAMES_KEY]


def _summarise_tfds(serialized: tf.Tensor):
  """The same of a batch of the tf.train.Examples vivit_jax's TFDS builders write ('label', 'video')."""
  parsed = tf.io.parse_example(serialized, {'label': tf.io.VarLenFeature(tf.int64),
                                            'video': tf.io.VarLenFeature(tf.string)})
  labels = tf.sparse.to_dense(parsed['label'], default_value=_NO_LABEL)
  labels = tf.where(labels == TFDS_UNLABELED, tf.constant(_NO_LABEL, tf.int64), labels)
  frames = tf.math.bincount(tf.cast(parsed['video'].indices[:, 0], tf.int32),
                            minlength=tf.shape(serialized)[0], dtype=tf.int64)
  return labels, frames


_SUMMARIES = {'dmvr': _summarise_dmvr, 'tfds': _summarise_tfds}


def _dmvr_hint(record: bytes) -> str:
  """What a DMVR record TensorFlow cannot parse holds instead, when that is plain ('' otherwise)."""
  example = tf.train.SequenceExample()
  try:
    example.ParseFromString(record)
  except protobuf_message.DecodeError:
    return 'not a serialized tf.train.SequenceExample'
  context = example.context.feature
  if dmvr_records.FRAMES_KEY in context and dmvr_records.FRAMES_KEY not in example.feature_lists.feature_list:
    return f"its '{dmvr_records.FRAMES_KEY}' is a context feature: a tf.train.Example, not a SequenceExample?"
  label = context.get(dmvr_records.LABEL_INDEX_KEY)
  stored = label.WhichOneof('kind') if label is not None else None
  return f'stored as a {stored}' if stored not in (None, 'int64_list') else ''


def _first_unreadable(path: str, kind: str) -> Tuple[int, Optional[str]]:
  """(index, why) of the first record of `path` that cannot be read or parsed on its own, or (records, None)
  when each can (the slow path, only for a shard whose batched read failed)."""
  index = 0
  records = iter(tf.data.TFRecordDataset(path))
  while True:
    try:
      record = next(records)
    except StopIteration:
      return index, None
    except tf.errors.OpError as e:  # Framing: truncated, CRC-corrupt, not a file.
      return index, tf_error_message(e)
    try:
      _SUMMARIES[kind](record[None])
    except tf.errors.OpError as e:  # Parsing: not the proto, or a feature of another type.
      hint = _dmvr_hint(record.numpy()) if kind == 'dmvr' else ''
      return index, tf_error_message(e) + (f' ({hint})' if hint else '')
    index += 1


def scan_shard(path: str, kind: str = 'dmvr') -> ShardScan:
  """Reads one shard of `kind` ('dmvr' or 'tfds') through (see the module docstring)."""
  scan = ShardScan(path)
  label_max = np.full([0], _NO_LABEL, np.int64)
  counts = []
  try:
    for labels, frames in tf.data.TFRecordDataset(path).batch(_BATCH).map(_SUMMARIES[kind]).as_numpy_iterator():
      start = scan.records
      scan.records += len(frames)
      scan.no_frames.extend((start + np.flatnonzero(frames == 0)).tolist())
      present = labels != _NO_LABEL
      per_record = present.sum(axis=1) if labels.shape[1] else np.zeros(len(frames), np.int64)
      scan.unlabeled += int(np.sum(per_record == 0))
      counts.extend(per_record[per_record > 0].tolist())
      if present.any():
        low = int(labels[present].min())
        scan.label_min = low if scan.label_min is None else min(scan.label_min, low)
        width = max(len(label_max), labels.shape[1])
        label_max = np.maximum(np.pad(label_max, (0, width - len(label_max)), constant_values=_NO_LABEL),
                               np.pad(labels.max(axis=0), (0, width - labels.shape[1]), constant_values=_NO_LABEL))
  except tf.errors.OpError as e:
    scan.records, why = _first_unreadable(path, kind)
    scan.error = f'record {scan.records} is unreadable: {why or tf_error_message(e)}'
  scan.label_max = [int(v) for v in label_max if v != _NO_LABEL]
  scan.labels_per_record = [int(min(counts)), int(max(counts))] if counts else []
  scan.no_frames = scan.no_frames[:5]
  return scan


def _key(path: str, kind: str) -> str:
  stat = tf.io.gfile.stat(path)  # gfile: local paths and gs:// alike.
  where = path if is_remote(path) else os.path.abspath(path)
  return hashlib.sha1(f'{_VERSION}|{kind}|{where}|{stat.length}|{stat.mtime_nsec}'.encode()).hexdigest()


def _cached(entry) -> Optional[ShardScan]:
  try:
    return ShardScan(**entry) if isinstance(entry, dict) else None
  except TypeError:
    return None


def scan_shards(files: Sequence[str], kind: str = 'dmvr', cache_path: Optional[str] = None) -> List[ShardScan]:
  """`scan_shard` of every file, each read once per (path, size, mtime) thanks to a JSON cache (default
  SCAN_CACHE; an unreadable cache, or a read-only home, only costs a rescan); files not in the cache are read
  in parallel. Entries of files that no longer exist are dropped when the cache is written."""
  cache_path = cache_path or SCAN_CACHE
  try:
    with open(cache_path) as f:
      cache = json.load(f)
  except (OSError, ValueError):
    cache = {}
  keys = [_key(path, kind) for path in files]
  scans = [_cached(cache.get(key)) for key in keys]
  missing = [i for i, scan in enumerate(scans) if scan is None]
  if missing:
    # The first in this thread: TensorFlow imports parts of tf.data on first use (TFRecordDataset's reader), and
    # several threads doing that at once crashed the process (a segmentation fault) now and then.
    scans[missing[0]] = scan_shard(files[missing[0]], kind)
    with concurrent.futures.ThreadPoolExecutor(max(1, min(_PARALLEL_FILES, len(missing) - 1))) as pool:
      scans_rest = pool.map(lambda i: scan_shard(files[i], kind), missing[1:])
      for i, scan in zip(missing[1:], scans_rest):
        scans[i] = scan
    for i in missing:
      cache[keys[i]] = dataclasses.asdict(scans[i])
    cache = {k: v for k, v in cache.items() if isinstance(v, dict) and tf.io.gfile.exists(str(v.get('path')))}
    try:
      os.makedirs(os.path.dirname(cache_path), exist_ok=True)
      tmp = f'{cache_path}.tmp-{os.getpid()}'
      with open(tmp, 'w') as f:
        json.dump(cache, f)
      os.replace(tmp, cache_path)
    except OSError:
      pass
  return [dataclasses.replace(scan, path=path) for scan, path in zip(scans, files)]


def facts_of_scans(source: str, scans: Sequence[ShardScan], label_offset: int) -> SplitFacts:
  """A split's facts (`data.checks`) from the scans of its shards; labels shifted by `label_offset`."""
  widths = max([len(s.label_max) for s in scans] + [0])
  label_max = tuple(max(s.label_max[k] for s in scans if len(s.label_max) > k) - label_offset
                    for k in range(widths))
  lows = [s.label_min for s in scans if s.label_min is not None]
  counts = [c for s in scans for c in s.labels_per_record]
  problems = tuple(f'{s.path}: {s.error}' for s in scans if s.error)
  problems += tuple(f'{s.path}: record(s) {s.no_frames} hold no frames' for s in scans if s.no_frames)
  return SplitFacts(source=source, records=sum(s.records for s in scans),
                    label_min=min(lows) - label_offset if lows else None, label_max=label_max,
                    labels_per_video=(min(counts), max(counts)) if counts else None,
                    unlabeled=sum(s.unlabeled for s in scans), problems=problems,
                    notes=tuple(f'{s.path} holds no records' for s in scans if not s.records and not s.error))


def whole_images(frames: tf.Tensor) -> tf.Tensor:
  """Whether every frame of a [N] string tensor is a whole JPEG (SOI marker first, EOI marker among the last
  IMAGE_TAIL bytes) or a whole PNG (signature first, IEND chunk at the end): a cheap test of truncation and of
  bytes that are no image at all; decodes nothing, copies a few bytes per frame."""
  length = tf.strings.length(frames)
  head = tf.io.decode_raw(tf.strings.substr(frames, tf.zeros_like(length), tf.fill(tf.shape(length), 8)),
                          tf.uint8, fixed_length=8)
  tail = tf.io.decode_raw(tf.strings.substr(frames, tf.maximum(length - IMAGE_TAIL, 0),
                                            tf.fill(tf.shape(length), IMAGE_TAIL)), tf.uint8, fixed_length=IMAGE_TAIL)
  jpeg = ((head[:, 0] == 0xFF) & (head[:, 1] == 0xD8)
          & tf.reduce_any((tail[:, :-1] == 0xFF) & (tail[:, 1:] == 0xD9), axis=1))
  png_signature = tf.constant([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], tf.uint8)
  iend = tf.constant([0x49, 0x45, 0x4E, 0x44], tf.uint8)  # 'IEND', then its 4-byte CRC: the last 8 bytes.
  png = tf.reduce_all(head == png_signature, axis=1) & tf.reduce_all(tail[:, -8:-4] == iend, axis=1)
  return tf.reduce_all(jpeg | png)


def sourced_records(path: tf.Tensor) -> tf.data.Dataset:
  """The records of one TFRecord file, each with its source 'path record i' for messages."""
  return tf.data.TFRecordDataset(path).enumerate().map(
      lambda i, record: (record, tf.strings.join([path, ' record ', tf.strings.as_string(i)])))


def failing_source(records: tf.data.Dataset, example: Callable[..., object],
                    source_of: Callable[..., tf.Tensor]) -> Optional[str]:
  """The source of the first of `records` that `example` cannot process alone (after a batch of them failed)."""
  for element in records:
    try:
      for _ in tf.data.Dataset.from_tensors(element).map(example):
        pass
    except tf.errors.OpError:
      return source_of(*element).numpy().decode('utf-8', 'replace')
  return None


def reading(batches: Iterator[Batch], what: str,
            locate: Optional[Callable[[int], Optional[str]]] = None) -> Iterator[Batch]:
  """`batches`, with TensorFlow's errors (an unreadable record, a check of `_label` or `_frames`) raised as
  DataError naming `what` is being read. An error that names no record (a failed check names its own) is
  pinned on one by `locate(batch)`: the source of the record of that batch that fails alone, or None."""
  done = 0
  try:
    for batch in batches:
      yield batch
      done += 1
  except tf.errors.OpError as e:
    message = tf_error_message(e)
    culprit = None if 'assertion failed' in e.message or locate is None else locate(done)
    raise DataError(f'{what}: {culprit + ": " if culprit else ""}{message}') from e
