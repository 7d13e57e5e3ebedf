"""A run that fails keeps what it did: the step's checkpoint is saved before its evaluation, a broken batch saves
the last completed step, a failed final save leaves the previous checkpoint, and results.json says why."""

import os

import pytest

from tests.data.test_checks import _config as dmvr_config
from tests.data.test_checks import _with_a_broken_jpeg, private_scan_cache  # noqa: F401  (fixture)
from tests.data.test_video import write_split
from tests.train_testing import read_json, train_config
from vivit_jax.checkpoints import CheckpointManager
from vivit_jax.data import DataError
from vivit_jax.data.synthetic import SyntheticPipeline
from vivit_jax.eval.evaluators import TrainingEvaluators
from vivit_jax.paths import PathError
from vivit_jax.train import loop as train


def test_a_failing_evaluation_saves_its_step_first(tmp_path, monkeypatch):
  def broken(self, params, ema_params, step, last):
    if step == 2:  # The trainer asks at every step; evaluations are due every log_eval_steps.
      raise RuntimeError(f'evaluation broke at step {step}')
    return {}
  monkeypatch.setattr(TrainingEvaluators, '__call__', broken)
  config = train_config('spacetime', num_training_steps=6, checkpoint_steps=4, log_eval_steps=2)
  with pytest.raises(RuntimeError, match='evaluation broke at step 2'):
    train.train(config, str(tmp_path))
  assert CheckpointManager(str(tmp_path)).all_steps() == [2]
  assert read_json(str(tmp_path), 'results.json')['status'] == 'failed: RuntimeError: evaluation broke at step 2'


def test_an_unreadable_batch_saves_the_last_completed_step(tmp_path, monkeypatch):
  real = SyntheticPipeline.train_batches

  def breaks_at_step_3(self, start_step):
    batches = real(self, start_step)
    for step in range(start_step, 2):
      yield next(batches)
    raise DataError('train-00001-of-00004 record 17: a frame is not a whole JPEG')
  monkeypatch.setattr(SyntheticPipeline, 'train_batches', breaks_at_step_3)
  with pytest.raises(DataError, match='record 17'):
    train.train(train_config('spacetime', num_training_steps=4), str(tmp_path))
  assert CheckpointManager(str(tmp_path)).all_steps() == [2]
  results = read_json(str(tmp_path), 'results.json')
  assert results['status'].startswith('failed: DataError: train-00001-of-00004 record 17') and results['step'] == 2


def test_a_failed_final_save_keeps_the_previous_checkpoint_and_says_why(tmp_path, monkeypatch):
  real = CheckpointManager.save

  def disk_full_at_the_end(self, step, state, metadata, force=False):
    if step == 4:
      raise OSError(28, 'No space left on device')
    return real(self, step, state, metadata, force)
  monkeypatch.setattr(CheckpointManager, 'save', disk_full_at_the_end)
  with pytest.raises(OSError, match='No space left'):
    train.train(train_config('spacetime', num_training_steps=4, checkpoint_steps=2), str(tmp_path))
  manager = CheckpointManager(str(tmp_path))
  assert manager.all_steps() == [2]
  assert manager.metadata(2)['data']['next_step'] == 2
  status = read_json(str(tmp_path), 'results.json')['status']
  assert status == 'failed: OSError: [Errno 28] No space left on device'


def test_a_workdir_that_cannot_be_written_stops_before_training(tmp_path):
  (tmp_path / 'file').write_text('not a directory')
  with pytest.raises(PathError, match='is a file'):
    train.train(train_config('spacetime'), str(tmp_path / 'file'))
  assert os.path.isfile(tmp_path / 'file')


def test_a_workdir_whose_checkpoints_is_a_file_stops_before_training(tmp_path):
  (tmp_path / 'checkpoints').write_text('not a directory')
  with pytest.raises(PathError, match=f'checkpoint directory {tmp_path}/checkpoints is a file; expected a directory'):
    train.train(train_config('spacetime'), str(tmp_path))
  assert not os.path.exists(tmp_path / 'results.json')


@pytest.mark.parametrize('split,broken,saved', [('train', 1, []), ('validation', 2, [2])])
def test_a_broken_record_in_real_data_names_itself(tmp_path, split, broken, saved):
  """Training data breaks inside a step (nothing saved yet); validation data breaks in the evaluation at step 2,
  after that step is saved."""
  base = tmp_path / 'data'
  base.mkdir()
  write_split(str(base), 'validation' if split == 'train' else 'train', 10, 4, shards=1)
  path = _with_a_broken_jpeg(str(base), split, broken)
  config = dmvr_config(str(base), batch_size=8, eval_batch_size=8, num_training_steps=3,
                       log_eval_steps=2 if split == 'validation' else 1000, checkpoint_steps=1000,
                       dataset_configs__tables__train='train@1', dataset_configs__tables__validation='validation@1',
                       dataset_configs__examples_per_subset__train=4,
                       dataset_configs__examples_per_subset__validation=4)
  workdir = str(tmp_path / 'run')
  with pytest.raises(DataError, match=f"reading split '{split}' .*{path} record {broken}: a frame of the sampled"):
    train.train(config, workdir)
  assert CheckpointManager(workdir).all_steps() == saved
  assert f'{path} record {broken}' in read_json(workdir, 'results.json')['status']
