"""The tf.data pipeline over DMVR TFRecords: determinism, exact resume, disjoint processes, exact eval."""

import os
import threading

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from tests.tiny import tiny_config
from vivit_jax.data import integrity
from vivit_jax.data import Views, create_pipeline
from vivit_jax.data.ingest import dmvr_records
from vivit_jax.data.ingest.video_io import encode_jpeg

NUM_CLASSES = 5


def _video(index, frames=12, height=24, width=32):
  """Frames whose red channel is the video index and green channel the frame index (so both survive)."""
  video = np.zeros((frames, height, width, 3), np.uint8)
  video[..., 0] = 5 * index
  video[..., 1] = 20 * np.arange(frames)[:, None, None]
  return video


def write_split(base_dir, name, first, count, shards, frames=12):
  """`count` videos (indices first..) as DMVR shards `name-0000i-of-0000N`; labels index % 5."""
  paths = [os.path.join(base_dir, n) for n in dmvr_records.shard_names(name, shards)]
  writers = [tf.io.TFRecordWriter(p) for p in paths]
  for k, index in enumerate(range(first, first + count)):
    record = dmvr_records.make_sequence_example(
        encode_jpeg(_video(index, frames)), [index % NUM_CLASSES], filename=f'video_{index:03d}.mp4')
    writers[k % shards].write(record)
  for w in writers:
    w.close()


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  base = str(tmp_path_factory.mktemp('dmvr'))
  write_split(base, 'train', 0, 30, shards=3)
  write_split(base, 'validation', 30, 11, shards=2)
  write_split(base, 'single', 41, 7, shards=1, frames=3)  # Short videos, one file.
  return base


def dmvr_config(data_dir, **overrides):
  settings = dict(
      dataset_name='video_tfrecord_dataset', dataset_configs__base_dir=data_dir,
      dataset_configs__tables__train='train@3', dataset_configs__tables__validation='validation@2',
      dataset_configs__tables__test='single@1', dataset_configs__num_frames=4, dataset_configs__stride=2,
      dataset_configs__min_resize=20, dataset_configs__crop_size=16, dataset_configs__num_test_clips=2,
      dataset_configs__augmentation_params__do_jitter_scale=False, batch_size=8, eval_batch_size=4,
      model__patches__size=(4, 4, 2))
  settings.update(overrides)
  return tiny_config('spacetime', num_classes=NUM_CLASSES, **settings)


def _batches(iterator, n):
  return [next(iterator) for _ in range(n)]


def _video_ids(batch):
  """Video index of every row, read back from the red channel (zero-centred inputs)."""
  red = (batch['inputs'][..., 0] + 1.0) * 255.0 / 2.0
  return np.round(red.reshape(len(red), -1).mean(axis=1) / 5.0).astype(int)


def test_same_seed_same_batches_and_another_seed_others(data_dir):
  a = _batches(create_pipeline(dmvr_config(data_dir), 0, 1).train_batches(0), 3)
  b = _batches(create_pipeline(dmvr_config(data_dir), 0, 1).train_batches(0), 3)
  c = _batches(create_pipeline(dmvr_config(data_dir, rng_seed=1), 0, 1).train_batches(0), 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['inputs'], y['inputs'])
  assert any(not np.array_equal(x['inputs'], z['inputs']) for x, z in zip(a, c))


def test_resuming_at_a_step_gives_the_same_batches_across_epochs(data_dir):
  straight = _batches(create_pipeline(dmvr_config(data_dir), 0, 1).train_batches(0), 9)  # 72 > 2 epochs.
  for start in (1, 4, 7):
    resumed = _batches(create_pipeline(dmvr_config(data_dir), 0, 1).train_batches(start), 9 - start)
    for x, y in zip(straight[start:], resumed):
      np.testing.assert_array_equal(x['inputs'], y['inputs'])
      np.testing.assert_array_equal(x['label'], y['label'])


def test_each_epoch_sees_every_training_video_once(data_dir):
  batches = _batches(create_pipeline(dmvr_config(data_dir, batch_size=10), 0, 1).train_batches(0), 6)
  ids = np.concatenate([_video_ids(b) for b in batches])
  for epoch in range(2):
    assert sorted(ids[30 * epoch:30 * (epoch + 1)]) == list(range(30))
  assert list(ids[:30]) != list(ids[30:])  # Reshuffled.


def test_train_batch_contents(data_dir):
  batch = next(create_pipeline(dmvr_config(data_dir), 0, 1).train_batches(0))
  assert batch['inputs'].shape == (8, 4, 16, 16, 3) and batch['inputs'].dtype == np.float32
  assert batch['inputs'].min() >= -1.0 and batch['inputs'].max() <= 1.0
  np.testing.assert_array_equal(batch['label'].argmax(1), _video_ids(batch) % NUM_CLASSES)
  assert batch['batch_mask'].tolist() == [1.0] * 8
  green = (batch['inputs'][..., 1] + 1.0) * 255.0 / 2.0 / 20.0  # Frame index per frame.
  steps = np.diff(np.round(green.mean(axis=(2, 3))), axis=1)
  assert np.all((steps == 2) | (steps < 0))  # Stride 2 (wrapping around at the end).


@pytest.mark.parametrize('table,processes', [('validation@2', 2), ('single@1', 3), ('train@3', 2)])
def test_processes_read_disjoint_parts_and_evaluation_is_exact(data_dir, table, processes):
  config = dmvr_config(data_dir, dataset_configs__tables__validation=table, eval_batch_size=2 * processes)
  seen, lengths = [], []
  for p in range(processes):
    batches = list(create_pipeline(config, p, processes).eval_batches('validation'))
    lengths.append(len(batches))
    for b in batches:
      seen.extend(_video_ids(b)[b['batch_mask'] == 1])
      assert np.all(b['inputs'][b['batch_mask'] == 0] == 0)
  pipeline = create_pipeline(config, 0, 1)
  expected = sorted(_video_ids(b)[b['batch_mask'] == 1].tolist()
                    for b in pipeline.eval_batches('validation'))
  assert len(set(lengths)) == 1
  assert sorted(seen) == sorted(np.concatenate(expected).tolist())
  assert len(seen) == len(set(seen)) == pipeline.num_examples('validation')


def test_training_parts_of_two_processes_are_disjoint(data_dir):
  firsts = []
  for p in range(2):
    pipeline = create_pipeline(dmvr_config(data_dir, batch_size=4), p, 2)
    size = pipeline.part('train').size
    ids = np.concatenate([_video_ids(b) for b in _batches(pipeline.train_batches(0), size // 2)])
    firsts.append(set(ids.tolist()))
  assert not firsts[0] & firsts[1]


def test_multi_view_test_batches(data_dir):
  config = dmvr_config(data_dir, dataset_configs__do_three_spatial_crops=True)
  batches = list(create_pipeline(config, 0, 1).eval_batches('test', Views.test_views(config)))
  assert batches[0]['inputs'].shape == (4, 6, 4, 16, 16, 3)  # 2 temporal views x 3 crops.
  assert sum(b['batch_mask'].sum() for b in batches) == 7
  first = batches[0]['inputs'][0]
  assert not np.array_equal(first[0], first[3])  # The two temporal views differ even for 3-frame videos.


def test_label_offset_and_multi_label_records(tmp_path):
  path = os.path.join(tmp_path, 'multi-00000-of-00001')
  with tf.io.TFRecordWriter(path) as w:
    w.write(dmvr_records.make_sequence_example(encode_jpeg(_video(1)), [1, 3]))
  config = dmvr_config(str(tmp_path), dataset_configs__tables__validation='multi@1',
                       dataset_configs__label_offset=1, model_name='vivit_multilabel_classification')
  batch = next(create_pipeline(config, 0, 1).eval_batches('validation'))
  assert batch['label'][0].tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_shard_scans_are_cached(data_dir, tmp_path, monkeypatch):
  files = dmvr_records.resolve_table(data_dir, 'train@3')
  cache = str(tmp_path / 'scans.json')
  first = integrity.scan_shards(files, cache_path=cache)
  assert [s.records for s in first] == [10, 10, 10]
  assert os.path.exists(cache)
  monkeypatch.setattr(integrity, 'scan_shard', lambda path, kind: pytest.fail(f'{path} read again'))
  assert integrity.scan_shards(files, cache_path=cache) == first


def test_the_first_unscanned_shard_is_read_on_the_calling_thread_and_the_rest_in_parallel(data_dir, tmp_path,
                                                                                            monkeypatch):
  # TensorFlow imports parts of tf.data on first use; threads doing that at once crashed the process now and then.
  files = dmvr_records.resolve_table(data_dir, 'train@3')
  scan, threads = integrity.scan_shard, {}
  def recording(path, kind):
    threads[path] = threading.current_thread()
    return scan(path, kind)
  monkeypatch.setattr(integrity, 'scan_shard', recording)
  assert [s.records for s in integrity.scan_shards(files, cache_path=str(tmp_path / 'scans.json'))] == [10] * 3
  assert threads[files[0]] is threading.current_thread()
  assert all(threads[f] is not threading.current_thread() for f in files[1:])


def test_multi_head_records_store_one_index_per_head(tmp_path):
  path = os.path.join(tmp_path, 'epic-00000-of-00001')
  with tf.io.TFRecordWriter(path) as w:
    w.write(dmvr_records.make_sequence_example(encode_jpeg(_video(1)), [2, 1]))  # noun 2, verb 1.
  config = dmvr_config(str(tmp_path), dataset_configs__tables__validation='epic@1',
                       model_name='vivit_multihead_classification', dataset_configs__class_splits=(3, 2))
  batch = next(create_pipeline(config, 0, 1).eval_batches('validation'))
  assert batch['label'][0].tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]


def test_bfloat16_batches_padding_included(data_dir):
  pipeline = create_pipeline(dmvr_config(data_dir, data_dtype_str='bfloat16'), 0, 1)
  assert next(pipeline.train_batches(0))['inputs'].dtype == jnp.bfloat16
  for views in (Views(), Views(2, 3)):
    batches = list(pipeline.eval_batches('validation', views))  # 11 videos in batches of 4: padding rows.
    assert {b['inputs'].dtype for b in batches} == {jnp.dtype(jnp.bfloat16)}
