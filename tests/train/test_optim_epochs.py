"""Schedules in epochs in the trainer: resolved from the run's training videos and batch size, equal to the same
schedule in steps, and printed resolved by `--dry_run`."""

import numpy as np
import pytest

from tests.train.test_optim import lr_config, lrs
from tests.train_testing import train_config
from vivit_jax import train
from vivit_jax.train import dry_run
from vivit_jax.train.optim import create_learning_rate_schedule


def test_epochs_give_the_schedule_of_their_steps():
  in_epochs = create_learning_rate_schedule(
      lr_config(warmup_epochs=0.5, steps_per_cycle_epochs=6.0), total_steps=100, steps_per_epoch=8)
  in_steps = create_learning_rate_schedule(lr_config(warmup_steps=4.0, steps_per_cycle=48), total_steps=100)
  np.testing.assert_array_equal(lrs(in_epochs, range(100)), lrs(in_steps, range(100)))
  assert (in_epochs.warmup_steps, in_epochs.cycle_steps) == (4.0, 48.0)
  assert 'warmup 4 steps = 0.5 epochs of 8 steps' in in_epochs.describe()
  assert 'decay 44 steps (cycle 48 = 6 epochs of 8 steps)' in in_epochs.describe()


def test_piecewise_events_in_epochs():
  config = lr_config(factors='constant * piecewise_constant', base_learning_rate=1.0, decay_events_epochs=[1, 2],
                     decay_factors=[0.5, 0.25])
  s = create_learning_rate_schedule(config, total_steps=40, steps_per_epoch=10)
  np.testing.assert_allclose(lrs(s, [0, 9, 10, 19, 20, 39]), [1.0, 1.0, 0.5, 0.5, 0.25, 0.25])


def test_epochs_without_steps_per_epoch_are_an_error():
  with pytest.raises(ValueError, match=r"'lr_configs.warmup_epochs' is 2.5: a schedule in epochs needs the steps"):
    create_learning_rate_schedule(lr_config(warmup_epochs=2.5), total_steps=100)


def test_steps_without_epochs_need_no_steps_per_epoch():
  s = create_learning_rate_schedule(lr_config(warmup_steps=3.0), total_steps=10)
  assert s.in_epochs == {} and s.warmup_steps == 3.0 and s.cycle_steps == 10.0


def epochs_config(**overrides):
  """64 training clips: 4 steps per epoch at batch 16; 2 epochs, a warmup of half an epoch, cosine over the run."""
  settings = dict(num_training_steps=None, num_training_epochs=2.0, lr_configs__warmup_steps=None,
                  lr_configs__warmup_epochs=0.5)
  settings.update(overrides)
  return train_config('spacetime', **settings)


def test_the_trainer_resolves_epochs_from_the_run():
  run = train.setup(epochs_config())
  assert (run.num_steps, run.schedule.warmup_steps, run.schedule.cycle_steps) == (8, 2.0, 8.0)
  run = train.setup(epochs_config(batch_size=32))  # Twice the batch: half the steps, the same shape.
  assert (run.num_steps, run.schedule.warmup_steps, run.schedule.cycle_steps) == (4, 1.0, 4.0)
  run = train.setup(epochs_config(num_training_epochs=None, num_training_steps=20))  # The cosine follows the run.
  assert (run.num_steps, run.schedule.warmup_steps, run.schedule.cycle_steps) == (20, 2.0, 20.0)
  run = train.setup(epochs_config(dataset_configs__examples_per_subset__train=128))
  assert (run.num_steps, run.schedule.warmup_steps, run.schedule.cycle_steps) == (16, 4.0, 16.0)


def test_dry_run_prints_the_resolved_schedule():
  text = dry_run.describe(epochs_config(), compile_step=False)
  assert ('schedule         constant * cosine_decay * linear_warmup, base 0.01; warmup 2 steps = 0.5 epochs of 4 '
          'steps; decay 6 steps (cycle 8) of a 8-step run') in text
  text = dry_run.describe(train_config('spacetime'), compile_step=False)
  assert 'warmup 1 steps; decay 1 steps (cycle 2) of a 2-step run' in text
