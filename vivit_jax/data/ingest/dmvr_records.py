"""DMVR's TFRecord format, read and written by vivit_jax: one `tf.train.SequenceExample` per video.

Keys (those of DMVR's generator and Scenic's `video_tfrecord_dataset`):
- feature list 'image/encoded': one JPEG per frame (a bytes list of length 1 per step);
- context 'clip/label/index': int64 list (one or more classes; absent for unlabeled videos);
- context 'clip/label/text': bytes list (class names, optional);
- context 'video/filename': bytes;
- context 'clip/start/timestamp', 'clip/end/timestamp': int64 microseconds (DMVR writes int(1e6 * seconds)).

Tables follow Scenic's sharded-file convention: 'train@4' names 'train-00000-of-00004' ... 'train-00003-of-00004',
and 'train@4.tfrecord' names 'train-00000-of-00004.tfrecord'; index and count are zero-padded to
max(5, number of digits).
"""

import glob
import os
import re
from typing import Dict, List, Optional, Sequence, Union

import tensorflow as tf

FRAMES_KEY = 'image/encoded'
LABEL_INDEX_KEY = 'clip/label/index'
LABEL_TEXT_KEY = 'clip/label/text'
FILENAME_KEY = 'video/filename'
START_KEY = 'clip/start/timestamp'
END_KEY = 'clip/end/timestamp'

# 'base@N' or 'base@N.suffix' with N >= 1 (Scenic's file_utils pattern, matched in full).
_SHARD_SPEC = re.compile(r'(?P<base>.*)@(?P<count>\d*[1-9]\d*)(?:\.(?P<suffix>.+))?')
_ZERO_SHARDS = re.compile(r'.*@0+(?:\..+)?')  # 'base@0': refused unless a file has that very name.


def _shard_width(num_shards: int) -> int:
  return max(5, len(str(num_shards)))


def shard_names(name: str, num_shards: int, suffix: str = '') -> List[str]:
  """'train', 4 -> ['train-00000-of-00004', ..., 'train-00003-of-00004'] (suffix appended to each)."""
  if num_shards < 1:
    raise ValueError(f'{name}: the number of shards must be at least 1; got {num_shards}')
  width = _shard_width(num_shards)
  return [f'{name}-{i:0{width}d}-of-{num_shards:0{width}d}{suffix}' for i in range(num_shards)]


def resolve_table(base_dir: str, table: Union[str, Sequence[str]]) -> List[str]:
  """The shard files of one table of a Scenic `tables` config entry.

  Args:
    base_dir: the directory the table is relative to (Scenic's `base_dir`; an absolute table ignores it).
    table: 'name@N' (N shards in Scenic's naming), a list or tuple of shard files, or a file name or glob.

  Returns:
    Shard paths, in shard order (sorted for a glob).

  Raises:
    FileNotFoundError: a shard is missing (naming the table, base_dir and the first missing path), or a glob
      matches nothing.
    ValueError: 'name@0' (no file of that name): a sharded table of no shard.
  """
  if isinstance(table, (list, tuple)):
    paths = [os.path.join(base_dir, t) for t in table]
  else:
    spec = _SHARD_SPEC.fullmatch(table)
    if spec:
      suffix = f".{spec['suffix']}" if spec['suffix'] else ''
      paths = [os.path.join(base_dir, n) for n in shard_names(spec['base'], int(spec['count']), suffix)]
    elif glob.has_magic(table):
      paths = sorted(tf.io.gfile.glob(os.path.join(base_dir, table)))
      if not paths:
        raise FileNotFoundError(f'table {table!r} in base_dir {base_dir!r}: the pattern '
                                f'{os.path.join(base_dir, table)!r} matches no file')
    else:
      paths = [os.path.join(base_dir, table)]
      if _ZERO_SHARDS.fullmatch(table) and not tf.io.gfile.exists(paths[0]):
        raise ValueError(f'table {table!r} names 0 shards; a sharded table is name@N with N >= 1')
  if not paths:
    raise FileNotFoundError(f'table {table!r} in base_dir {base_dir!r}: an empty list of shards')
  for path in paths:
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f'table {table!r} in base_dir {base_dir!r}: shard {path!r} does not exist '
                              f'({len(paths)} shards expected)')
  return paths


def make_sequence_example(jpeg_frames: Sequence[bytes], label_indices: Sequence[int],
                          label_texts: Sequence[str] = (), filename: str = '', start: Optional[float] = None,
                          end: Optional[float] = None) -> bytes:
  """A serialized SequenceExample with DMVR's keys.

  Args:
    jpeg_frames: one encoded JPEG per frame.
    label_indices: class indices; empty for an unlabeled video (the key is then left out, as DMVR does).
    label_texts: class names (left out when empty).
    filename: stored as 'video/filename' when non-empty.
    start: clip start in seconds, stored as int64 microseconds; None leaves the key out.
    end: clip end in seconds, likewise.
  """
  example = tf.train.SequenceExample()
  context = example.context.feature
  if len(label_indices):
    context[LABEL_INDEX_KEY].int64_list.value[:] = [int(i) for i in label_indices]
  if len(label_texts):
    context[LABEL_TEXT_KEY].bytes_list.value[:] = [t.encode('utf-8') for t in label_texts]
  if filename:
    context[FILENAME_KEY].bytes_list.value[:] = [filename.encode('utf-8')]
  for key, seconds in ((START_KEY, start), (END_KEY, end)):
    if seconds is not None:
      context[key].int64_list.value[:] = [int(round(seconds * 1_000_000))]
  frames = example.feature_lists.feature_list[FRAMES_KEY]
  for jpeg in jpeg_frames:
    frames.feature.add().bytes_list.value[:] = [jpeg]
  return example.SerializeToString()


_CONTEXT_FEATURES = {
    LABEL_INDEX_KEY: tf.io.VarLenFeature(tf.int64),
    LABEL_TEXT_KEY: tf.io.VarLenFeature(tf.string),
    FILENAME_KEY: tf.io.FixedLenFeature([], tf.string, default_value=''),
}
_SEQUENCE_FEATURES = {FRAMES_KEY: tf.io.FixedLenSequenceFeature([], tf.string)}


def parse_sequence_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Parses one serialized SequenceExample; graph-mode, for `tf.data.Dataset.map`.

  Returns:
    {'frames': tf.string [T] JPEG bytes, 'label_index': int64 [L] (empty when unlabeled),
     'label_text': tf.string [L'] (may be empty), 'filename': tf.string scalar ('' when absent)}.
  """
  context, sequence = tf.io.parse_single_sequence_example(
      serialized, context_features=_CONTEXT_FEATURES, sequence_features=_SEQUENCE_FEATURES)
  return {
      'frames': sequence[FRAMES_KEY],
      'label_index': tf.sparse.to_dense(context[LABEL_INDEX_KEY]),
      'label_text': tf.sparse.to_dense(context[LABEL_TEXT_KEY], default_value=''),
      'filename': context[FILENAME_KEY],
  }
