"""dmvr_records: Scenic's shard naming, table resolution, and SequenceExamples with DMVR's keys."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from vivit_jax.data.ingest import dmvr_records


def test_shard_names():
  assert dmvr_records.shard_names('train', 4) == [f'train-0000{i}-of-00004' for i in range(4)]
  assert dmvr_records.shard_names('train.tfrecord', 1024)[1023] == 'train.tfrecord-01023-of-01024'
  assert dmvr_records.shard_names('t', 123456)[7] == 't-000007-of-123456'  # Width max(5, digits).
  with pytest.raises(ValueError, match='at least 1'):
    dmvr_records.shard_names('train', 0)


def _touch_all(base_dir, names):
  for name in names:
    with open(os.path.join(base_dir, name), 'wb'):
      pass


def test_resolve_table_sharded_spec(tmp_path):
  base = str(tmp_path)
  _touch_all(base, dmvr_records.shard_names('train.tfrecord', 3))
  assert dmvr_records.resolve_table(base, 'train.tfrecord@3') == [
      os.path.join(base, f'train.tfrecord-0000{i}-of-00003') for i in range(3)]
  _touch_all(base, ['val-00000-of-00002.tfrecord', 'val-00001-of-00002.tfrecord'])
  assert dmvr_records.resolve_table(base, 'val@2.tfrecord') == [  # Scenic's suffix form.
      os.path.join(base, 'val-00000-of-00002.tfrecord'), os.path.join(base, 'val-00001-of-00002.tfrecord')]
  os.remove(os.path.join(base, 'train.tfrecord-00001-of-00003'))
  with pytest.raises(FileNotFoundError) as info:
    dmvr_records.resolve_table(base, 'train.tfrecord@3')
  message = str(info.value)
  assert "'train.tfrecord@3'" in message and repr(base) in message
  assert os.path.join(base, 'train.tfrecord-00001-of-00003') in message


def test_resolve_table_of_zero_shards_says_so(tmp_path):
  for table in ('train@0', 'train@00.tfrecord'):
    with pytest.raises(ValueError, match=f"^table '{re.escape(table)}' names 0 shards; a sharded table is name@N "
                                         'with N >= 1$'):
      dmvr_records.resolve_table(str(tmp_path), table)
  _touch_all(str(tmp_path), ['odd@0'])  # A file of that very name is still a plain table.
  assert dmvr_records.resolve_table(str(tmp_path), 'odd@0') == [os.path.join(str(tmp_path), 'odd@0')]


def test_resolve_table_list_glob_and_plain_name(tmp_path):
  base = str(tmp_path)
  _touch_all(base, ['b.rec', 'a.rec', 'c.txt'])
  assert dmvr_records.resolve_table(base, ['b.rec', 'a.rec']) == [
      os.path.join(base, 'b.rec'), os.path.join(base, 'a.rec')]  # A list keeps its order.
  assert dmvr_records.resolve_table(base, ('a.rec',)) == [os.path.join(base, 'a.rec')]
  assert dmvr_records.resolve_table(base, '*.rec') == [os.path.join(base, 'a.rec'), os.path.join(base, 'b.rec')]
  assert dmvr_records.resolve_table(base, 'c.txt') == [os.path.join(base, 'c.txt')]
  with pytest.raises(FileNotFoundError, match=r"shard '.*z\.rec' does not exist"):
    dmvr_records.resolve_table(base, ['a.rec', 'z.rec'])
  with pytest.raises(FileNotFoundError, match='matches no file'):
    dmvr_records.resolve_table(base, '*.tfrecord')


def _jpegs(count):
  frames = np.arange(count * 8 * 8 * 3, dtype=np.uint32).reshape(count, 8, 8, 3) % 251
  return [tf.io.encode_jpeg(f.astype(np.uint8)).numpy() for f in frames]


def test_make_sequence_example_follows_dmvr(tmp_path):
  jpegs = _jpegs(3)
  serialized = dmvr_records.make_sequence_example(jpegs, [4, 7], ['dance', 'sing'], filename='a/b.mp4',
                                                   start=1.5, end=11.25)
  example = tf.train.SequenceExample.FromString(serialized)
  context = example.context.feature
  assert list(context['clip/label/index'].int64_list.value) == [4, 7]
  assert list(context['clip/label/text'].bytes_list.value) == [b'dance', b'sing']
  assert list(context['video/filename'].bytes_list.value) == [b'a/b.mp4']
  assert list(context['clip/start/timestamp'].int64_list.value) == [1_500_000]  # Microseconds, as DMVR.
  assert list(context['clip/end/timestamp'].int64_list.value) == [11_250_000]
  steps = example.feature_lists.feature_list['image/encoded'].feature
  assert [list(s.bytes_list.value) for s in steps] == [[j] for j in jpegs]
  unlabeled = tf.train.SequenceExample.FromString(dmvr_records.make_sequence_example(jpegs, []))
  assert set(unlabeled.context.feature) == set()


def test_parse_sequence_example_in_a_dataset_map(tmp_path):
  path = str(tmp_path / 'records')
  jpegs = _jpegs(4)
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(dmvr_records.make_sequence_example(jpegs, [2], ['run'], filename='x.mp4', start=0, end=1))
    writer.write(dmvr_records.make_sequence_example(jpegs[:2], []))
  dataset = tf.data.TFRecordDataset(path).map(dmvr_records.parse_sequence_example)
  first, second = list(dataset.as_numpy_iterator())
  assert list(first['frames']) == jpegs and first['frames'].dtype == object
  assert first['label_index'].tolist() == [2] and first['label_index'].dtype == np.int64
  assert first['label_text'].tolist() == [b'run'] and first['filename'] == b'x.mp4'
  assert list(second['frames']) == jpegs[:2]
  assert second['label_index'].shape == (0,) and second['label_text'].shape == (0,)
  assert second['filename'] == b''
  decoded = tf.io.decode_jpeg(first['frames'][1]).numpy()
  assert decoded.shape == (8, 8, 3)
