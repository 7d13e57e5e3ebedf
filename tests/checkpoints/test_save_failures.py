"""A save that fails in the background (a full disk, say) is one CheckpointError naming the step, the cause and the
previous checkpoint, which stays intact; the trainer's command prints it as one line and results.json says why."""

import json
import logging
import sys

import pytest

from tests.checkpoints.test_manager import mesh, sharded_state  # noqa: F401  (fixture)
from tests.train_testing import train_config
from vivit_jax.checkpoints import CheckpointError, CheckpointManager
from vivit_jax.cli import common, quiet
from vivit_jax.train import loop as train

# What TensorStore raised when Orbax wrote to a full tmpfs (the hostile battery's 700 KiB workdir).
_FULL = ('RESOURCE_EXHAUSTED: Error writing local file "{d}/4.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/'
         '_sharding": Failed writing: No space left on device [source locations=\'tensorstore/.../file_util.cc\']')


def _fail_background_saves(manager: CheckpointManager, monkeypatch) -> None:
  """Makes the underlying Orbax manager report a failed background save, as it does when the disk fills up."""
  def failed(*args, **kwargs):
    raise ValueError(_FULL.format(d=manager.directory))
  monkeypatch.setattr(manager._manager, 'wait_until_finished', failed)  # pylint: disable=protected-access
  monkeypatch.setattr(manager._manager, 'check_for_errors', failed)  # pylint: disable=protected-access


def test_a_failed_background_save_is_one_error_naming_the_step_and_the_intact_previous_one(tmp_path, mesh,
                                                                                            monkeypatch):
  manager = CheckpointManager(str(tmp_path), save_interval_steps=1)
  assert manager.save(2, sharded_state(mesh, seed=2), {'step': 2})
  manager.wait_until_finished()
  assert manager.save(4, sharded_state(mesh, seed=4), {'step': 4})
  manager._manager.wait_until_finished()  # pylint: disable=protected-access  # Step 4 really is on disk.
  _fail_background_saves(manager, monkeypatch)
  with pytest.raises(CheckpointError) as raised:
    manager.wait_until_finished()
  message = str(raised.value)
  assert message.startswith(f'Saving {manager.step_directory(4)} failed because the disk is full: ValueError: ')
  assert message.endswith(f'the previous checkpoint {manager.step_directory(2)} is intact')
  assert '\n' not in message and len(message) < 700
  with pytest.raises(CheckpointError, match='disk is full'):
    manager.check_for_errors()
  manager.close()  # The failure was reported once: closing does not raise it again.


def test_without_an_earlier_step_the_error_says_so(tmp_path, mesh, monkeypatch):
  manager = CheckpointManager(str(tmp_path), save_interval_steps=1)
  assert manager.save(3, sharded_state(mesh, seed=3), {'step': 3})
  _fail_background_saves(manager, monkeypatch)
  with pytest.raises(CheckpointError, match=r'checkpoints/3 failed because .*; no earlier checkpoint exists$'):
    manager.wait_until_finished()
  manager.close()


def test_the_trainer_stops_with_one_error_line_and_results_json_says_why(tmp_path, monkeypatch, capsys):
  real_wait = CheckpointManager.wait_until_finished

  def full_at_the_final_wait(self):
    if self._saving == 4:  # pylint: disable=protected-access  # The final save, started in the background.
      _fail_background_saves(self, monkeypatch)
    real_wait(self)
  monkeypatch.setattr(CheckpointManager, 'wait_until_finished', full_at_the_final_wait)
  workdir = tmp_path / 'run'
  with pytest.raises(common.EXPECTED_ERRORS) as raised:  # What every command prints as one `error:` line.
    train.train(train_config('spacetime', num_training_steps=4, checkpoint_steps=2), str(workdir))
  assert common.fail(raised.value) == 2
  errors = capsys.readouterr().err.splitlines()
  assert len(errors) == 1 and errors[0].startswith('error: Saving ') and 'disk is full' in errors[0], errors
  assert errors[0].endswith(f"the previous checkpoint {workdir / 'checkpoints' / '2'} is intact")
  results = json.loads((workdir / 'results.json').read_text())
  assert results['status'].startswith('failed: CheckpointError: Saving') and 'disk is full' in results['status']
  assert CheckpointManager(str(workdir)).metadata(2)['data']['next_step'] == 2


def test_a_library_error_logged_with_its_traceback_reaches_the_log_as_its_first_line(monkeypatch):
  monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
  try:
    raise ValueError('RESOURCE_EXHAUSTED: Error writing local file "x"\nsecond line')
  except ValueError:
    record = logging.LogRecord('orbax', logging.ERROR, '/site-packages/orbax/checkpoint/_src/futures/future.py',
                               387, '_SignalingThread.run() raised an exception: %s', ('RESOURCE_EXHAUSTED',),
                               sys.exc_info())
  assert quiet._QuietLibraries().filter(record)  # pylint: disable=protected-access
  assert record.exc_info is None and record.getMessage() == '_SignalingThread.run() raised an exception: ' \
      'RESOURCE_EXHAUSTED'
  assert '\n' not in logging.Formatter().format(record)
