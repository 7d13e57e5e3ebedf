"""Schedule lengths in epochs (`lr_configs.warmup_epochs`, `steps_per_cycle_epochs`, `decay_events_epochs`):
resolved from the run's batch size and training videos, exclusive with the steps forms, checked against the run."""

import warnings

import pytest

from tests import paths
from tests.config.config_testing import SCENIC_BASE_K400, SHIPPED_BASE_K400, error_of
from vivit_jax.config import ConfigError, check_schedule, load_config
from vivit_jax.config.numbers import lr_in_steps, schedule_steps_per_epoch

CONFIGS = paths.ROOT / 'configs'
SYNTHETIC = str(CONFIGS / 'synthetic.py')  # 1000 steps, 100 warmup steps, batch 64.
# Each shipped paper config and the old recipe's warmup, int(2.5 * (train // 64)) steps (Scenic's 2.5 epochs).
OLD_WARMUP_STEPS = {
    'kinetics400/vivit_base_k400.py': 8390,  # 2.5 * 3356
    'kinetics400/vivit_base_factorised_encoder.py': 8390,
    'kinetics400/vivit_base_factorised_self_attention.py': 8390,
    'kinetics400/vivit_base_factorised_dot_product.py': 8390,
    'kinetics400/vivit_base_spatial_only_baseline.py': 8390,
    'kinetics400/vivit_large_factorised_encoder.py': 8390,
    'kinetics600/vivit_large_factorised_encoder.py': 14187,  # 2.5 * 5675
    'something_something_v2/vivit_large_factorised_encoder.py': 6597,  # 2.5 * 2639
    'epic_kitchens/vivit_large_factorised_encoder.py': 2625,  # 2.5 * 1050
    'moments_in_time/vivit_large_factorised_encoder.py': 31337,  # 2.5 * 12535
}


def in_steps(config, train=None, batch=None):
  train = config.dataset_configs.examples_per_subset.train if train is None else train
  return lr_in_steps(config.lr_configs, schedule_steps_per_epoch(train, batch or config.batch_size))


def test_every_shipped_paper_config_is_listed():
  shipped = {str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob('*.py')
             if p.name not in ('synthetic.py', 'custom_folder.py') and 'ablations' not in p.parts}
  assert shipped == set(OLD_WARMUP_STEPS)


@pytest.mark.parametrize('rel', sorted(OLD_WARMUP_STEPS))
def test_shipped_warmup_in_epochs_gives_the_old_steps_at_the_default_batch(rel):
  config = load_config(str(CONFIGS / rel))
  assert config.lr_configs.warmup_epochs == 2.5 and config.lr_configs.warmup_steps is None
  steps = in_steps(config)
  assert steps['warmup_steps'] == OLD_WARMUP_STEPS[rel]
  assert steps['warmup_steps'] == int(2.5 * (config.dataset_configs.examples_per_subset.train // 64))
  assert steps['steps_per_cycle'] is None  # The cosine spans the whole run, however long it is.
  assert steps['warmup_epochs'] is None


def test_shipped_k400_warmup_equals_scenics_file():
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # The Scenic fixture's stray keys.
    scenic = load_config(SCENIC_BASE_K400)
  assert scenic.lr_configs.warmup_steps == 2.5 * (214834 // 64)  # Scenic files keep their steps form.
  assert in_steps(scenic, train=214834)['warmup_steps'] == scenic.lr_configs.warmup_steps
  assert in_steps(load_config(SHIPPED_BASE_K400))['warmup_steps'] == scenic.lr_configs.warmup_steps


def test_the_schedule_follows_batch_size_and_data_size():
  k400 = load_config(SHIPPED_BASE_K400, ['batch_size=32'])
  assert in_steps(k400)['warmup_steps'] == int(2.5 * (214834 // 32)) == 16782
  small = load_config(SHIPPED_BASE_K400, ['dataset_configs.examples_per_subset.train=2048'])
  assert in_steps(small)['warmup_steps'] == 80  # 2.5 epochs of 32 steps.
  tiny = load_config(SHIPPED_BASE_K400, ['dataset_configs.examples_per_subset.train=10'])
  assert in_steps(tiny)['warmup_steps'] == 2  # A split smaller than a batch: one step per epoch.


def test_cycle_and_events_in_epochs():
  config = load_config(SYNTHETIC, ['lr_configs.warmup_steps=None', 'lr_configs.warmup_epochs=0.5',
                                   'lr_configs.steps_per_cycle_epochs=3', 'lr_configs.decay_events_epochs=[1, 2.5]',
                                   'lr_configs.decay_factors=[0.1, 0.01]',
                                   'lr_configs.factors=constant * piecewise_constant * cosine_decay * linear_warmup'])
  steps = in_steps(config, train=640, batch=64)  # 10 steps per epoch.
  assert (steps['warmup_steps'], steps['steps_per_cycle'], steps['decay_events']) == (5, 30, [10, 25])
  assert 0.29 * 100 < 29 and lr_in_steps({'warmup_epochs': 0.29}, 100)['warmup_steps'] == 29  # Not 28.


@pytest.mark.parametrize('steps_key, epochs_key, steps_value, epochs_value', [
    ('warmup_steps', 'warmup_epochs', 100, 2.5),
    ('steps_per_cycle', 'steps_per_cycle_epochs', 900, 3),
    ('decay_events', 'decay_events_epochs', [500], [5]),
])
def test_both_forms_set_is_an_error_naming_both_keys(steps_key, epochs_key, steps_value, epochs_value):
  overrides = [f'lr_configs.{steps_key}={steps_value}', f'lr_configs.{epochs_key}={epochs_value}']
  message = error_of(SYNTHETIC, overrides=overrides)
  assert f"'lr_configs.{steps_key}'" in message and f"'lr_configs.{epochs_key}'" in message
  assert 'are both set; expected one of them (set the other to None)' in message
  with pytest.raises(ValueError, match=f"'lr_configs.{epochs_key}'"):
    lr_in_steps({**load_config(SYNTHETIC).lr_configs.to_dict(), steps_key: steps_value, epochs_key: epochs_value}, 10)


def test_overriding_the_shipped_warmup_in_steps_needs_the_epochs_unset():
  assert "'lr_configs.warmup_epochs' (2.5)" in error_of(SHIPPED_BASE_K400, overrides=['lr_configs.warmup_steps=0'])
  config = load_config(SHIPPED_BASE_K400, ['lr_configs.warmup_epochs=None', 'lr_configs.warmup_steps=500'])
  assert in_steps(config)['warmup_steps'] == 500


def test_a_short_run_with_the_paper_warmup_is_an_error():
  # The issue: a 60-step run from a Kinetics config kept an 8390-step warmup, silently.
  message = error_of(SHIPPED_BASE_K400, overrides=['num_training_epochs=None', 'num_training_steps=60'])
  assert ("'lr_configs.warmup_epochs' is 2.5 (8390 steps at 3356 steps per epoch: 214834 training videos // "
          "'batch_size' 64), but the run is 60 steps ('num_training_steps' 60); expected a warmup that ends before "
          'the run does') in message
  assert load_config(SHIPPED_BASE_K400, ['num_training_epochs=None', 'num_training_steps=60',
                                         'lr_configs.warmup_epochs=0.005']).num_training_steps == 60  # 16 steps.


def test_a_cycle_in_epochs_within_the_warmup_is_an_error():
  message = error_of(SHIPPED_BASE_K400, overrides=['lr_configs.steps_per_cycle_epochs=2'])
  assert ("'lr_configs.steps_per_cycle_epochs' is 2 (6712 steps at 3356 steps per epoch: 214834 training videos "
          "// 'batch_size' 64), not more than 'lr_configs.warmup_epochs' (2.5 (8390 steps") in message


def test_epochs_are_checked_once_the_training_videos_are_counted():
  config = load_config(SHIPPED_BASE_K400, ['dataset_configs.examples_per_subset.train=None',
                                           'num_training_epochs=None', 'num_training_steps=1000'])
  check_schedule(config, 1000, num_train_examples=10_000)  # 156 steps per epoch: warmup 390.
  with pytest.raises(ConfigError, match=r"'lr_configs.warmup_epochs' is 2.5 \(1000 steps at 400 steps per epoch: "
                     r"25600 training videos // 'batch_size' 64\), but the run is 1000 steps"):
    check_schedule(config, 1000, num_train_examples=25_600)


@pytest.mark.parametrize('key, value, expected', [
    ('lr_configs.warmup_epochs', -1.0, 'a number of epochs >= 0'),
    ('lr_configs.steps_per_cycle_epochs', 0.0, 'a positive number of epochs'),
])
def test_epochs_out_of_range(key, value, expected):
  message = error_of(SHIPPED_BASE_K400, overrides=[f'{key}={value}'])
  assert f"'{key}' is {value}; expected {expected}" in message


def test_events_in_epochs_must_increase():
  message = error_of(SYNTHETIC, overrides=['lr_configs.factors=constant * piecewise_constant',
                                           'lr_configs.decay_events_epochs=[5, 2]', 'lr_configs.decay_factors=[1, 2]'])
  assert "'lr_configs.decay_events_epochs' is [5, 2]; expected epochs >= 0 in increasing order" in message
