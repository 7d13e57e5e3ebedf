"""Input pipelines: reproducible training order, exact evaluation passes, per-process rows and prefetching."""

import jax.numpy as jnp
import numpy as np
import pytest

from tests.tiny import tiny_config
from vivit_jax.config import ConfigError
from vivit_jax.data import DataError, Views, create_pipeline, prefetch, preprocessing_spec
from vivit_jax.data.synthetic import SyntheticMotion, SyntheticPipeline

NUM_TRAIN, NUM_VALIDATION, NUM_CLASSES = 40, 20, 5
BATCH, EVAL_BATCH = 12, 8  # 12 does not divide 40; 8 does not divide 20.


def synthetic_config(**overrides):
  settings = dict(dataset_name='synthetic', batch_size=BATCH, eval_batch_size=EVAL_BATCH,
                  dataset_configs__examples_per_subset__train=NUM_TRAIN,
                  dataset_configs__examples_per_subset__validation=NUM_VALIDATION)
  settings.update(overrides)
  return tiny_config(num_classes=NUM_CLASSES, **settings)


def pipeline(process_index=0, process_count=1, **overrides):
  return create_pipeline(synthetic_config(**overrides), process_index, process_count)


def source():
  return SyntheticMotion(num_classes=NUM_CLASSES, num_frames=8, height=16, width=16)


# Training order.


def test_train_indices_are_deterministic_and_depend_on_the_seed():
  a, b, other = pipeline(), pipeline(), pipeline(rng_seed=1)
  for step in (0, 3, 7):
    np.testing.assert_array_equal(a.train_indices(step), b.train_indices(step))
  assert not np.array_equal(a.train_indices(0), other.train_indices(0))


def test_each_epoch_is_a_fresh_permutation_of_the_training_set():
  p = pipeline()
  steps = -(-3 * NUM_TRAIN // BATCH)  # Past the end of the third epoch.
  order = np.concatenate([p.train_indices(s) for s in range(steps)])
  assert all(len(p.train_indices(s)) == BATCH for s in range(steps))
  epochs = [order[e * NUM_TRAIN:(e + 1) * NUM_TRAIN] for e in range(3)]
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(NUM_TRAIN))
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[0], np.arange(NUM_TRAIN))  # Shuffled.


def test_a_batch_larger_than_the_dataset_spans_several_epochs():
  p = pipeline(batch_size=96)
  order = np.concatenate([p.train_indices(0), p.train_indices(1)])  # 192 positions: 4.8 epochs.
  for e in range(4):
    np.testing.assert_array_equal(np.sort(order[e * NUM_TRAIN:(e + 1) * NUM_TRAIN]), np.arange(NUM_TRAIN))


def test_train_batches_resume_at_the_start_step():
  p = pipeline()
  resumed = next(p.train_batches(start_step=5))
  expected = p.train_batch(5)
  for key in ('inputs', 'label', 'batch_mask'):
    np.testing.assert_array_equal(resumed[key], expected[key])


# Batch contents.


def test_train_batch_shapes_dtypes_and_values():
  p = pipeline()
  batch = p.train_batch(2)
  assert batch['inputs'].shape == (BATCH, 8, 16, 16, 3) and batch['inputs'].dtype == np.float32
  assert batch['label'].shape == (BATCH, NUM_CLASSES) and batch['label'].dtype == np.float32
  np.testing.assert_array_equal(batch['label'].sum(axis=1), np.ones(BATCH))
  np.testing.assert_array_equal(batch['batch_mask'], np.ones(BATCH, np.float32))
  assert batch['batch_mask'].dtype == np.float32
  # The rows are the examples train_indices names.
  raw = source().batch('train', p.train_indices(2))
  np.testing.assert_array_equal(batch['label'].argmax(axis=1), raw['label'])
  np.testing.assert_allclose(batch['inputs'], raw['video'] * (2.0 / 255.0) - 1.0, rtol=0, atol=1e-6)


def test_the_synthetic_keys_shape_the_videos():
  p = pipeline(dataset_configs__synthetic_speed=0.5, dataset_configs__synthetic_objects=1,
               dataset_configs__synthetic_object_size=6, dataset_configs__synthetic_background='plain',
               dataset_configs__synthetic_wrap=False)
  assert p.source == SyntheticMotion(num_classes=NUM_CLASSES, num_frames=8, height=16, width=16, speed=0.5,
                                     num_objects=1, object_size=6, background='plain', wrap=False)
  raw = p.source.batch('validation', [3])
  np.testing.assert_allclose(next(p.eval_batches('validation'))['inputs'][3], raw['video'][0] * (2.0 / 255.0) - 1.0,
                             atol=1e-6)


def test_synthetic_videos_that_cannot_be_made_name_the_keys():
  with pytest.raises(ConfigError, match="'dataset_configs.synthetic_background' is 'noise'"):
    pipeline(dataset_configs__synthetic_background='noise')  # Refused by validation, before any pipeline.
  with pytest.raises(DataError, match='synthetic_.*lower the speed'):
    pipeline(dataset_configs__synthetic_wrap=False, dataset_configs__synthetic_speed=3.0)


def test_zero_centering_chooses_the_value_range():
  centred = pipeline().train_batch(0)['inputs']
  plain = pipeline(dataset_configs__zero_centering=False).train_batch(0)['inputs']
  assert -1.0 <= centred.min() and centred.max() <= 1.0 and centred.min() < 0.0
  assert 0.0 <= plain.min() and plain.max() <= 1.0
  np.testing.assert_allclose(centred, 2.0 * plain - 1.0, rtol=0, atol=1e-6)


# Per-process rows.


def test_process_rows_concatenate_to_the_global_train_batch():
  whole = pipeline().train_batch(3)
  parts = [pipeline(process_index=i, process_count=2).train_batch(3) for i in range(2)]
  assert len(parts[0]['label']) == BATCH // 2
  for key in ('inputs', 'label', 'batch_mask'):
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_process_rows_concatenate_to_the_global_eval_batches():
  whole = list(pipeline().eval_batches('validation'))
  parts = [list(pipeline(process_index=i, process_count=2).eval_batches('validation')) for i in range(2)]
  assert len(parts[0]) == len(parts[1]) == len(whole)
  for b, batch in enumerate(whole):
    for key in ('inputs', 'label', 'batch_mask'):
      np.testing.assert_array_equal(np.concatenate([parts[0][b][key], parts[1][b][key]]), batch[key])


def test_batch_sizes_not_divisible_by_the_processes_are_rejected():
  p = pipeline(process_index=0, process_count=5)  # 12 and 8 rows over 5 processes.
  with pytest.raises(DataError, match='not divisible by the 5 processes'):
    p.train_batch(0)
  with pytest.raises(DataError, match='not divisible by the 5 processes'):
    next(p.eval_batches('validation'))


# Evaluation.


def test_eval_batches_are_one_exact_pass():
  p = pipeline()
  batches = list(p.eval_batches('validation'))
  assert len(batches) == p.num_eval_batches('validation') == 3
  for batch in batches:
    assert batch['inputs'].shape == (EVAL_BATCH, 8, 16, 16, 3)
    assert batch['label'].shape == (EVAL_BATCH, NUM_CLASSES)
    assert batch['batch_mask'].shape == (EVAL_BATCH,) and batch['batch_mask'].dtype == np.float32
  mask = np.concatenate([b['batch_mask'] for b in batches])
  assert mask.sum() == NUM_VALIDATION
  np.testing.assert_array_equal(mask, [1.0] * NUM_VALIDATION + [0.0] * 4)  # Padding only at the end.
  # The real rows are validation examples 0..19, each once and in order.
  inputs = np.concatenate([b['inputs'] for b in batches])[mask == 1]
  labels = np.concatenate([b['label'] for b in batches])[mask == 1]
  raw = source().batch('validation', range(NUM_VALIDATION))
  np.testing.assert_array_equal(labels.argmax(axis=1), raw['label'])
  np.testing.assert_allclose(inputs, raw['video'] * (2.0 / 255.0) - 1.0, rtol=0, atol=1e-6)
  np.testing.assert_array_equal(inputs, p.examples('validation', np.arange(NUM_VALIDATION))['inputs'])


def test_eval_batch_size_defaults_to_batch_size():
  p = pipeline(eval_batch_size=None)
  assert p.eval_batch_size == BATCH
  batches = list(p.eval_batches('validation'))
  assert len(batches) == 2 and sum(b['batch_mask'].sum() for b in batches) == NUM_VALIDATION


# Construction errors.


def test_tfrecords_without_tables_name_the_key():
  config = tiny_config(dataset_name='video_tfrecord_dataset')
  with pytest.raises(DataError, match=r"'dataset_configs.tables.train' is empty"):
    create_pipeline(config, 0, 1).part('train')


def test_tfds_without_a_builder_name_names_the_key():
  with pytest.raises(DataError, match='tfds_name'):
    create_pipeline(tiny_config(dataset_name='tfds'), 0, 1)


def test_missing_examples_per_subset_is_named():
  config = tiny_config(dataset_name='synthetic', dataset_configs__examples_per_subset__train=40)
  with pytest.raises(DataError, match=r"examples_per_subset.*'validation'"):
    create_pipeline(config, 0, 1)
  # The test split is optional until it is used.
  with pytest.raises(DataError, match=r'examples_per_subset\.test'):
    pipeline().num_examples('test')


# Preprocessing metadata.


def test_preprocessing_describes_the_inputs():
  p = pipeline()
  assert isinstance(p, SyntheticPipeline)
  pre = preprocessing_spec(p.config, p.label_names)
  assert pre['dataset_name'] == 'synthetic'
  assert pre['num_frames'] == 8 and pre['crop_size'] == 16 and pre['num_classes'] == NUM_CLASSES
  assert pre['value_range'] == [-1.0, 1.0]
  assert len(pre['label_names']) == len(set(pre['label_names'])) == NUM_CLASSES
  assert preprocessing_spec(pipeline(dataset_configs__zero_centering=False).config)['value_range'] == [0.0, 1.0]


# Prefetch.


@pytest.mark.parametrize('size', [0, 1, 3])
def test_prefetch_yields_the_same_items_in_order(size):
  items = [{'step': i} for i in range(10)]
  assert list(prefetch(iter(items), size)) == items


@pytest.mark.parametrize('size', [0, 2])
def test_prefetch_reraises_producer_errors_in_the_consumer(size):
  def failing():
    yield 1
    yield 2
    raise RuntimeError('broken shard')

  received = []
  with pytest.raises(RuntimeError, match='broken shard'):
    for item in prefetch(failing(), size):
      received.append(item)
  assert received == [1, 2]


def test_prefetch_of_real_batches():
  p = pipeline()
  fetched = list(zip(range(3), prefetch(p.train_batches(1), 2)))
  for step, batch in fetched:
    np.testing.assert_array_equal(batch['inputs'], p.train_batch(step + 1)['inputs'])


def test_inputs_come_in_the_configured_dtype():
  p = pipeline(data_dtype_str='bfloat16')
  batch = p.train_batch(0)
  assert batch['inputs'].dtype == jnp.bfloat16 and batch['label'].dtype == np.float32
  assert next(p.eval_batches('validation', Views(2, 3)))['inputs'].dtype == jnp.bfloat16
  np.testing.assert_allclose(batch['inputs'].astype(np.float32), pipeline().train_batch(0)['inputs'], atol=1e-2)
