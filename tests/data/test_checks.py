"""The data is checked against the config before the first step, and a broken record names itself."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.data.test_video import NUM_CLASSES, _video, dmvr_config, write_split
from vivit_jax import train
from vivit_jax.data import DataError, check_data, create_pipeline, integrity
from vivit_jax.data.ingest import dmvr_records
from vivit_jax.data.ingest.video_io import encode_jpeg


@pytest.fixture(autouse=True)
def private_scan_cache(tmp_path, monkeypatch):
  """Each test scans afresh, into its own cache."""
  monkeypatch.setattr(integrity, 'SCAN_CACHE', str(tmp_path / 'scans.json'))


def _write(path, records):
  with tf.io.TFRecordWriter(path) as w:
    for r in records:
      w.write(r)


def _record(labels, frames=None, index=1):
  frames = encode_jpeg(_video(index)) if frames is None else frames
  return dmvr_records.make_sequence_example(frames, labels)


@pytest.fixture
def base(tmp_path):
  """Good train (10 videos, 2 shards) and validation (4 videos) splits; tests add broken tables beside them."""
  root = tmp_path / 'data'
  root.mkdir()
  write_split(str(root), 'train', 0, 10, shards=2)
  write_split(str(root), 'validation', 10, 4, shards=1)
  return str(root)


def _config(base, **overrides):
  settings = dict(dataset_configs__tables__train='train@2', dataset_configs__tables__validation='validation@1',
                  dataset_configs__tables__test='', dataset_configs__do_multicrop_test=False)
  settings.update(overrides)
  return dmvr_config(base, **settings)


def _problems(config, splits=('train', 'validation')):
  with pytest.raises(DataError) as raised:
    check_data(create_pipeline(config, 0, 1), splits)
  message = str(raised.value)
  assert '\n' not in message  # One line, whatever the number of problems.
  return message


def test_good_data_passes_and_reports_its_facts(base):
  facts = dict(check_data(create_pipeline(_config(base), 0, 1), ['train', 'validation']))
  assert facts['train'].records == 10 and facts['validation'].records == 4
  assert facts['train'].label_min == 0 and facts['train'].label_max == (NUM_CLASSES - 1,)


def test_labels_beyond_num_classes_stop_the_run_before_training(base):
  # num_classes=1 on two-label data once trained to loss 0 and accuracy 1.0.
  config = _config(base, eval_batch_size=8)
  config.dataset_configs.num_classes = 1
  config.model.classifier = 'token'
  with pytest.raises(DataError, match=r"split 'train' .*class index 4 is out of range for "
                                      r'dataset_configs.num_classes = 1'):
    train.setup(config)


def test_label_offset_that_makes_labels_negative(base):
  message = _problems(_config(base, dataset_configs__label_offset=1))
  assert 'class index -1 after label_offset 1 is negative' in message


def test_multi_head_labels_are_checked_per_head(base, tmp_path):
  _write(os.path.join(base, 'epic-00000-of-00001'), [_record([2, 1]), _record([1, 2])])  # Verb 2 of 2 verbs.
  config = _config(base, dataset_configs__tables__validation='epic@1', model_name='vivit_multihead_classification',
                   dataset_configs__class_splits=(3, 2), dataset_configs__split_names=('noun', 'verb'))
  config.dataset_configs.tables.train = 'epic@1'
  message = _problems(config, ['validation'])
  assert "class index 2 is out of range for head 'verb' = 2" in message and "'noun'" not in message


def test_unlabeled_videos_are_refused(base):
  _write(os.path.join(base, 'unlabeled-00000-of-00001'), [_record([]), _record([1])])
  message = _problems(_config(base, dataset_configs__tables__validation='unlabeled@1'), ['validation'])
  assert '1 of 2 videos have no label' in message


def test_counts_must_match_examples_per_subset_naming_both(base):
  message = _problems(_config(base, dataset_configs__examples_per_subset__train=12))
  assert "'dataset_configs.examples_per_subset.train' is 12" in message and 'holds 10 videos' in message


def test_an_evaluation_only_warns_of_a_different_count(base, caplog):
  config = _config(base, dataset_configs__examples_per_subset__validation=5)
  with caplog.at_level(logging.WARNING):
    check_data(create_pipeline(config, 0, 1), ['validation'], counts_must_match=False)
  assert 'holds 4 videos' in caplog.text


@pytest.mark.parametrize('damage', ['truncated', 'crc'])
def test_a_truncated_or_corrupt_shard_is_named_with_its_record(base, damage):
  path = os.path.join(base, 'train-00001-of-00002')
  data = bytearray(open(path, 'rb').read())
  if damage == 'truncated':
    data = data[:len(data) * 2 // 3]
  else:
    data[len(data) // 2] ^= 0xFF
  open(path, 'wb').write(bytes(data))
  message = _problems(_config(base))
  assert path in message and 'is unreadable' in message
  record = int(message.split(' is unreadable')[0].rsplit('record ', 1)[1])
  assert 0 < record < 5  # Readable records before the break are counted; the one where it breaks is named.
  if damage == 'truncated':
    assert 'is unreadable: the file ends inside it (truncated at byte ' in message and 'failed with' not in message


def test_empty_shards_are_named_and_an_empty_split_refused(base, caplog):
  _write(os.path.join(base, 'holes-00000-of-00002'), [_record([1]), _record([2])])
  _write(os.path.join(base, 'holes-00001-of-00002'), [])
  _write(os.path.join(base, 'none-00000-of-00001'), [])
  config = _config(base, dataset_configs__tables__validation='holes@2')
  with caplog.at_level(logging.WARNING):
    check_data(create_pipeline(config, 0, 1), ['validation'])
  assert 'holes-00001-of-00002 holds no records' in caplog.text
  config.dataset_configs.tables.validation = 'none@1'
  assert "split 'validation' (table 'none@1'" in _problems(config, ['validation'])
  assert 'holds no videos' in _problems(config, ['validation'])


def test_records_without_frames_are_named(base):
  _write(os.path.join(base, 'blank-00000-of-00001'), [_record([1]), _record([1], frames=[])])
  message = _problems(_config(base, dataset_configs__tables__validation='blank@1'), ['validation'])
  assert 'blank-00000-of-00001: record(s) [1] hold no frames' in message


def test_a_missing_split_file_is_named(base):
  message = _problems(_config(base, dataset_configs__tables__validation='absent@2'), ['validation'])
  assert 'absent-00000-of-00002' in message


def _with_a_broken_jpeg(base, name, broken_index, damage='cut'):
  """A one-shard table whose record `broken_index` has its JPEG frames cut in half ('cut'), or zeroed inside
  with both markers intact ('inside')."""
  records = []
  for i in range(4):
    frames = encode_jpeg(_video(i))
    if i == broken_index:
      frames = [f[:len(f) // 2] if damage == 'cut' else f[:2] + bytes(200) + f[202:] for f in frames]
    records.append(_record([i % NUM_CLASSES], frames))
  path = os.path.join(base, f'{name}-00000-of-00001')
  _write(path, records)
  return path


@pytest.mark.parametrize('split', ['train', 'validation'])
def test_a_frame_that_is_not_a_whole_jpeg_stops_reading_naming_shard_and_record(base, split):
  path = _with_a_broken_jpeg(base, 'broken', 2)
  config = _config(base, batch_size=4, eval_batch_size=4)
  config.dataset_configs.tables[split] = 'broken@1'
  pipeline = create_pipeline(config, 0, 1)
  batches = pipeline.train_batches(0) if split == 'train' else pipeline.eval_batches(split)
  with pytest.raises(DataError) as raised:
    for _ in range(3):
      next(batches)
  message = str(raised.value)
  assert f"reading split '{split}'" in message and f'{path} record 2' in message
  assert 'not a whole JPEG' in message and 'Traceback' not in message


@pytest.mark.parametrize('split', ['train', 'validation'])
def test_a_frame_damaged_inside_is_pinned_on_its_record(base, split):
  # Both JPEG markers are intact, so only decoding fails; the batch's records are then decoded one by one.
  path = _with_a_broken_jpeg(base, 'inside', 1, damage='inside')
  config = _config(base, batch_size=2, eval_batch_size=2)
  config.dataset_configs.tables[split] = 'inside@1'
  pipeline = create_pipeline(config, 0, 1)
  batches = pipeline.train_batches(0) if split == 'train' else pipeline.eval_batches(split)
  with pytest.raises(DataError, match=f"reading split '{split}' .*{path} record 1: "):
    for _ in range(3):
      next(batches)


def test_multi_head_videos_need_one_index_per_head(base):
  _write(os.path.join(base, 'short-00000-of-00001'), [_record([2, 1]), _record([1])])
  config = _config(base, dataset_configs__tables__validation='short@1', model_name='vivit_multihead_classification',
                   dataset_configs__class_splits=(3, 2), dataset_configs__split_names=('noun', 'verb'))
  assert 'videos store 1 to 2 class indices, but class_splits defines 2 heads' in _problems(config, ['validation'])
  with pytest.raises(DataError, match=r'short-00000-of-00001 record 1: class indices \[1\] .*one class index per '
                                      r'head'):
    list(create_pipeline(config, 0, 1).eval_batches('validation'))


def test_a_multi_label_video_may_have_no_label(base):
  _write(os.path.join(base, 'ml-00000-of-00001'), [_record([]), _record([1, 3])])
  config = _config(base, dataset_configs__tables__validation='ml@1', model_name='vivit_multilabel_classification')
  check_data(create_pipeline(config, 0, 1), ['validation'])
  labels = np.concatenate([b['label'] for b in create_pipeline(config, 0, 1).eval_batches('validation')])
  assert labels[:2].tolist() == [[0, 0, 0, 0, 0], [0, 1, 0, 1, 0]]


def test_tfds_shards_are_scanned_for_unlabeled_and_out_of_range_labels(tmp_path):
  path = str(tmp_path / 'ds-train.tfrecord-00000-of-00001')
  with tf.io.TFRecordWriter(path) as w:
    for label in (0, 3, -1):  # -1: TFDS's "no label".
      features = {'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                  'video': tf.train.Feature(bytes_list=tf.train.BytesList(value=encode_jpeg(_video(1, frames=2))))}
      w.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
  [scan] = integrity.scan_shards([path], kind='tfds')
  assert (scan.records, scan.unlabeled, scan.label_min, scan.label_max, scan.no_frames) == (3, 1, 0, [3], [])
  facts = integrity.facts_of_scans('TFDS ds', [scan], 0)
  assert facts.unlabeled == 1 and facts.label_max == (3,)


def test_a_label_out_of_range_is_caught_while_reading_too(base):
  # What the scan cannot see (a TFDS split is not scanned) is caught as the record is read, naming it.
  _write(os.path.join(base, 'wide-00000-of-00001'), [_record([1]), _record([7])])
  config = _config(base, dataset_configs__tables__validation='wide@1')
  with pytest.raises(DataError, match=r'wide-00000-of-00001 record 1: class indices \[7\] after label_offset 0'):
    next(create_pipeline(config, 0, 1).eval_batches('validation'))


def test_whole_images_accepts_jpeg_and_png_frames_and_refuses_cut_or_foreign_bytes():
  good = encode_jpeg(np.zeros((2, 8, 8, 3), np.uint8))
  png = tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy()
  assert bool(integrity.whole_images(tf.constant(good + [png])))
  for bad in ([good[0][:-10]], [b''], [b'\xff'], [b'\x89PNG\r\n' + good[0][6:]], [good[0], b'not a jpeg'],
              [png[:-12]]):
    assert not bool(integrity.whole_images(tf.constant(bad)))


def test_a_label_map_beside_the_records_must_name_num_classes(base):
  path = os.path.join(base, 'label_map.json')
  with open(path, 'w') as f:
    json.dump({'names': ['a', 'b', 'c']}, f)
  with pytest.raises(DataError, match=f"{path} names 3 classes, but 'dataset_configs.num_classes' is 5"):
    train.setup(_config(base, num_training_steps=2, eval_batch_size=8))


def test_a_label_map_that_repeats_a_class_name_is_refused(base):
  path = os.path.join(base, 'label_map.json')
  with open(path, 'w') as f:
    json.dump({'names': ['a', 'b', 'a', 'c', 'c']}, f)  # Five names, as num_classes says, but only three classes.
  with pytest.raises(DataError, match=f"{path}: class names must be unique; repeated: 'a' \\(2 times\\), "
                                      "'c' \\(2 times\\)"):
    _ = create_pipeline(_config(base), 0, 1).label_names


def test_a_sharded_table_of_zero_shards_says_so(base):
  with pytest.raises(DataError, match=r"^'dataset_configs.tables.train': table 'train@0' names 0 shards; a sharded "
                                      r'table is name@N with N >= 1$'):
    create_pipeline(_config(base, dataset_configs__tables__train='train@0'), 0, 1).files('train')


def _unparseable(kind):
  """A record TensorFlow cannot parse as a DMVR SequenceExample, and what the scan must say of it."""
  frames = encode_jpeg(_video(9, frames=3))
  if kind == 'float_label':
    example = tf.train.SequenceExample()
    example.context.feature[dmvr_records.LABEL_INDEX_KEY].float_list.value.append(2.0)
    for frame in frames:
      example.feature_lists.feature_list[dmvr_records.FRAMES_KEY].feature.add().bytes_list.value.append(frame)
    return example.SerializeToString(), ("context feature clip/label/index: data types don't match, expected "
                                         'int64 (stored as a float_list)')
  if kind == 'not_a_proto':
    return b'\x07garbage' * 20, 'invalid protocol message input (not a serialized tf.train.SequenceExample)'
  example = tf.train.Example()  # Frames as a context feature: a tf.train.Example, not a SequenceExample.
  example.features.feature[dmvr_records.FRAMES_KEY].bytes_list.value.extend(frames)
  example.features.feature[dmvr_records.LABEL_INDEX_KEY].int64_list.value.append(1)
  return example.SerializeToString(), ("feature list 'image/encoded' is required but missing (its 'image/encoded' "
                                       'is a context feature: a tf.train.Example, not a SequenceExample?)')


@pytest.mark.parametrize('kind', ['float_label', 'not_a_proto', 'example_not_sequence'])
def test_an_unparseable_record_is_named_by_its_index_without_tensorflow_noise(base, kind):
  record, why = _unparseable(kind)
  path = os.path.join(base, 'bad-00000-of-00001')
  _write(path, [_record([i]) for i in range(4)] + [record])  # Records 0-3 parse; record 4 does not.
  message = _problems(_config(base, dataset_configs__tables__validation='bad@1'), ['validation'])
  assert f'{path}: record 4 is unreadable: {why}' in message
  for noise in ('user-defined function', 'Iterator::', '<unknown>', 'Did you mean'):
    assert noise not in message
