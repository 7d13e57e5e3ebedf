"""Numbers that cannot work are rejected when the config is loaded (so `--dry_run` catches them), each error naming
the key, the value found and what is expected; "unset" values (None, the mesh's -1) keep working."""

import pytest

from tests import paths
from tests.config.config_testing import SHIPPED_BASE_K400, error_of
from vivit_jax.config import ConfigError, check_schedule, load_config

SYNTHETIC = str(paths.ROOT / 'configs' / 'synthetic.py')  # 1000 steps, 100 warmup steps, batch 64.


@pytest.mark.parametrize('key, value, expected', [
    ('batch_size', 0, 'a positive number of clips'),
    ('batch_size', -8, 'a positive number of clips'),
    ('eval_batch_size', 0, 'a positive number of clips'),
    ('num_training_steps', 0, 'a positive number of steps'),
    ('num_training_steps', -10, 'a positive number of steps'),
    ('checkpoint_steps', 0, 'a positive number of steps between checkpoints'),
    ('log_summary_steps', 0, 'a positive number of steps between training summaries'),
    ('log_eval_steps', 0, 'a positive number of steps between validation passes, or None'),
    ('log_eval_steps', -5, 'a positive number of steps between validation passes'),
    ('dataset_configs.stride', 0, 'a positive number of frames'),
    ('dataset_configs.stride', -2, 'a positive number of frames'),
    ('dataset_configs.num_frames', 0, 'a positive number of frames per clip'),
    ('dataset_configs.crop_size', 0, 'a positive number of pixels'),
    ('dataset_configs.crop_size', -32, 'a positive number of pixels'),
    ('dataset_configs.min_resize', 0, 'a positive number of pixels'),
    ('dataset_configs.num_test_clips', 0, 'a positive number of temporal views'),
    ('dataset_configs.test_batch_size', 0, 'a positive number of videos'),
    ('dataset_configs.log_test_epochs', 0, 'a positive number of epochs'),
    ('dataset_configs.examples_per_subset.train', 0, 'a positive number of videos'),
    ('dataset_configs.num_classes', 0, 'a positive integer'),
    ('model.hidden_size', 0, 'a positive number of channels'),
    ('model.representation_size', 0, 'a positive number of channels, or None'),
    ('model.spatial_transformer.num_heads', 0, 'a positive integer'),
    ('model.temporal_transformer.num_layers', -1, 'a positive integer'),
    ('lr_configs.base_learning_rate', -0.1, 'a learning rate >= 0'),
    ('lr_configs.end_learning_rate', -1e-5, 'a learning rate >= 0'),
    ('lr_configs.warmup_steps', -1.0, 'a number of steps >= 0'),
    ('lr_configs.steps_per_cycle', 0, 'a positive number of steps, or None'),
    ('lr_configs.timescale', 0, 'a positive number of steps'),
    ('max_grad_norm', 0.0, 'a positive norm, or None'),
    ('label_smoothing', 1.0, 'a smoothing in [0, 1)'),
    ('l2_decay_factor', -1e-4, 'a factor >= 0'),
    ('rng_seed', -1, 'an integer in [0, 2**31)'),
    ('optimizer_configs.momentum', 1.0, 'a coefficient in [0, 1)'),
    ('optimizer_configs.beta2', 1.5, 'a coefficient in [0, 1)'),
    ('optimizer_configs.weight_decay', -0.1, 'a number >= 0'),
    ('dataset_configs.augmentation_params.prob_color_drop', 1.5, 'a probability in [0, 1]'),
    ('dataset_configs.augmentation_params.rand_augment_magnitude', -1, 'a magnitude in [0, 30]'),
    ('dataset_configs.synthetic_speed', 0.0, 'a positive number of pixels per frame'),
])
def test_a_number_that_cannot_work_names_key_value_and_expectation(key, value, expected):
  message = error_of(SYNTHETIC, overrides=[f'{key}={value}'])
  assert message.startswith(SYNTHETIC)
  assert f"'{key}' is {value}" in message
  assert expected in message


def test_epochs_must_be_positive():
  message = error_of(SHIPPED_BASE_K400, overrides=['num_training_epochs=0'])
  assert "'num_training_epochs' is 0.0; expected a positive number of epochs" in message


@pytest.mark.parametrize('value', ['1e999', '-1e999'])
def test_a_learning_rate_that_is_not_finite(value):
  message = error_of(SYNTHETIC, overrides=[f'lr_configs.base_learning_rate={value}'])
  assert "'lr_configs.base_learning_rate' is" in message and 'expected a finite number' in message


def test_every_problem_is_reported_at_once():
  message = error_of(SYNTHETIC, overrides=['batch_size=0', 'dataset_configs.stride=0',
                                           'lr_configs.base_learning_rate=-1.0', 'log_summary_steps=0'])
  assert '4 problems' in message
  for key in ('batch_size', 'dataset_configs.stride', 'lr_configs.base_learning_rate', 'log_summary_steps'):
    assert f"'{key}' is" in message


# The schedule: the warmup ends before the run (and the decay cycle) does.


@pytest.mark.parametrize('warmup', [1000, 1500])
def test_a_warmup_as_long_as_the_run_in_steps(warmup):
  steps = f'num_training_steps={1000}'
  message = error_of(SYNTHETIC, overrides=[steps, f'lr_configs.warmup_steps={warmup}'])
  assert f"'lr_configs.warmup_steps' is {warmup}, but the run is 1000 steps ('num_training_steps' 1000)" in message
  assert 'expected a warmup that ends before the run does' in message
  assert load_config(SYNTHETIC, [steps, f'lr_configs.warmup_steps={999.5}']).lr_configs.warmup_steps == 999.5


def test_a_warmup_as_long_as_the_run_in_epochs():
  # The recipe's warmup is 2.5 epochs of 214834 // 64 = 3356 steps (8390); 2 epochs are ceil(2 * 214834 / 64).
  message = error_of(SHIPPED_BASE_K400, overrides=['num_training_epochs=2'])
  assert ("'lr_configs.warmup_epochs' is 2.5 (8390 steps at 3356 steps per epoch: 214834 training videos // "
          "'batch_size' 64), but the run is 6714 steps") in message
  assert "2 'num_training_epochs' of 214834 training videos in batches of 64" in message


def test_the_trainer_checks_the_warmup_against_a_counted_run():
  # Epochs without examples_per_subset.train: the length is known once the data is counted.
  config = load_config(SHIPPED_BASE_K400, ['dataset_configs.examples_per_subset.train=None'])
  check_schedule(config, 8391, num_train_examples=214834)
  with pytest.raises(ConfigError, match=r"'lr_configs.warmup_epochs' is 2.5 \(8390 steps at 3356 steps per epoch: "
                     r"214834 training videos // 'batch_size' 64\), but the run is 8390 steps \(30.0 "
                     "'num_training_epochs' of the training videos counted"):
    check_schedule(config, 8390, source=SHIPPED_BASE_K400, num_train_examples=214834)


def test_a_cycle_that_ends_within_the_warmup():
  message = error_of(SYNTHETIC, overrides=['lr_configs.steps_per_cycle=100'])
  assert "'lr_configs.steps_per_cycle' is 100, not more than 'lr_configs.warmup_steps' (100)" in message


def test_an_unread_warmup_is_not_an_error():
  config = load_config(SYNTHETIC, ['lr_configs.factors=constant', 'lr_configs.warmup_steps=5000'])
  assert config.lr_configs.warmup_steps == 5000


def test_piecewise_constant_needs_events_and_factors_that_can_work():
  factors = 'lr_configs.factors=constant * piecewise_constant'
  assert "needs 'lr_configs.decay_events' and 'lr_configs.decay_factors'" in error_of(SYNTHETIC, overrides=[factors])
  message = error_of(SYNTHETIC, overrides=[factors, 'lr_configs.decay_events=[500, 100]',
                                           'lr_configs.decay_factors=[0.1, -1]'])
  assert "'lr_configs.decay_events' is [500, 100]; expected steps >= 0 in increasing order" in message
  assert "'lr_configs.decay_factors' is [0.1, -1]; expected factors >= 0" in message


# Sizes that must agree, and lists of numbers.


def test_a_crop_larger_than_the_resized_frame():
  message = error_of(SHIPPED_BASE_K400, overrides=['dataset_configs.min_resize=128'])
  assert "'dataset_configs.crop_size' 224 is larger than 'dataset_configs.min_resize' 128" in message


def test_synthetic_squares_must_fit_the_frame():
  message = error_of(SYNTHETIC, overrides=['dataset_configs.synthetic_object_size=32'])
  assert "'dataset_configs.synthetic_object_size' is 32; expected a square side from 1 to" in message


def test_normalisation_lists():
  message = error_of(SYNTHETIC, overrides=['dataset_configs.mean_rgb=[120.0, 115.0, 100.0]'])
  assert "'dataset_configs.mean_rgb' and 'dataset_configs.std_rgb' must be set together" in message
  message = error_of(SYNTHETIC, overrides=['dataset_configs.mean_rgb=[120.0, 115.0, 100.0]',
                                           'dataset_configs.std_rgb=[1, 0, 1]'])
  assert "'dataset_configs.std_rgb' is [1, 0, 1]; expected 3 positive numbers" in message


def test_class_splits_that_are_not_numbers_are_an_error_not_a_crash():
  overrides = ['model_name=vivit_multihead_classification', 'dataset_configs.num_classes=None',
               "dataset_configs.class_splits=[4, 'four']"]
  message = error_of(SYNTHETIC, overrides=overrides)
  assert "'dataset_configs.class_splits' is [4, 'four']; expected positive numbers of classes" in message


# Unset values keep working.


def test_unset_values_and_sentinels_load():
  config = load_config(SYNTHETIC, ['eval_batch_size=None', 'log_eval_steps=None', 'lr_configs.steps_per_cycle=None',
                                   'lr_configs.warmup_steps=0', 'mesh.data=-1', 'dataset_configs.prefetch_to_device=0',
                                   'model.representation_size=None', 'max_grad_norm=None', 'label_smoothing=None',
                                   'dataset_configs.augmentation_params.rand_augment_num_layers=0'])
  assert config.mesh.data == -1 and config.eval_batch_size is None and config.log_eval_steps is None
  epochs = load_config(SYNTHETIC, ['num_training_steps=None', 'num_training_epochs=1.5'])
  assert epochs.num_training_steps is None and epochs.num_training_epochs == 1.5
