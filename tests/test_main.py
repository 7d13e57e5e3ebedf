"""The command line: config overrides, --dry_run, and runs interrupted by SIGTERM and SIGKILL."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests import paths
from tests.train_testing import assert_trees_equal, read_json
from vivit_jax import main as main_lib
from vivit_jax import train
from vivit_jax.config import split_config_overrides
from vivit_jax.train import dry_run
from vivit_jax.checkpoints import CheckpointManager
from vivit_jax.config import load_config

ROOT = paths.ROOT
TINY = str(ROOT / 'configs' / 'synthetic.py') + ':tiny'


def _command(*args):
  return [sys.executable, '-m', 'vivit_jax.main', f'--config={TINY}', *args]


def _run(*args, timeout=300):
  return subprocess.run(_command(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                        check=False)


def test_config_overrides_are_split_from_the_other_flags():
  argv = ['prog', '--config=f.py:tiny', '--config.batch_size=8', '--workdir=w', '--config.model.remat',
          'True', '--dry_run']
  rest, overrides = split_config_overrides(argv)
  assert rest == ['prog', '--config=f.py:tiny', '--workdir=w', '--dry_run']
  assert overrides == ['batch_size=8', 'model.remat=True']


def test_misspelt_override_is_rejected_with_the_closest_key():
  result = _run('--config.batch_sise=8', '--dry_run')
  assert result.returncode == 2
  assert "unknown config key 'batch_sise'; did you mean 'batch_size'?" in result.stderr


def _main(*args):
  """`python -m vivit_jax.main --config=TINY ARGS`'s exit status, run in this process through the `main` the
  module calls (a subprocess would spend seconds importing; the tests that need a process of its own, to signal
  it or to read its stderr, start one)."""
  try:
    argv = main_lib._parse_flags(['vivit-train', f'--config={TINY}', *args])  # pylint: disable=protected-access
    return main_lib.main(argv)
  finally:
    main_lib.FLAGS.unparse_flags()


def test_dry_run_prints_the_cost_and_trains_nothing(tmp_path, capsys):
  assert _main('--config.batch_size=8', '--config.eval_batch_size=8', '--dry_run', f'--workdir={tmp_path}') == 0
  out = capsys.readouterr().out
  for text in ('parameters', 'GFLOPs per clip', 'steps of 8 clips', 'state per device', 'per device'):
    assert text in out
  assert not os.listdir(tmp_path)


def test_describe_counts_the_parameters_exactly():
  config = load_config(TINY)
  text = dry_run.describe(config, compile_step=False)
  assert 'factorized_encoder (paper Model 2)' in text
  assert "{'data': 8, 'fsdp': 1, 'model': 1}" in text


def _wait_for(predicate, process, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    if process.poll() is not None:
      raise AssertionError(f'the run ended early: {process.stderr.read()[-3000:]}')
    time.sleep(0.05)
  process.kill()
  raise AssertionError('timed out waiting for the run')


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path):
  workdir = str(tmp_path)
  process = subprocess.Popen(
      _command(f'--workdir={workdir}', '--config.num_training_steps=100000', '--config.checkpoint_steps=100000',
               '--config.log_eval_steps=100000', '--config.log_summary_steps=1'),
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _wait_for(lambda: os.path.exists(os.path.join(workdir, 'results.json')), process)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 0, stderr[-3000:]
  results = read_json(workdir, 'results.json')
  assert results['status'] == 'preempted'
  assert 0 < results['step'] < 100000
  assert CheckpointManager(workdir).all_steps() == [results['step']]


def test_sigkill_and_rerun_gives_bitwise_the_uninterrupted_params(tmp_path):
  # Killed once its checkpoint at step 10 exists, with 30 steps still to go (a tiny step takes milliseconds, the
  # kill follows within 50 ms); no multi-view test at the end: the runs compare the params.
  overrides = ['num_training_steps=40', 'checkpoint_steps=5', 'log_summary_steps=5', 'log_eval_steps=1000',
               'dataset_configs.do_multicrop_test=False']
  killed = str(tmp_path / 'killed')
  process = subprocess.Popen(_command(f'--workdir={killed}', *[f'--config.{o}' for o in overrides]),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _wait_for(lambda: os.path.isdir(os.path.join(killed, 'checkpoints', '10')), process)
  process.send_signal(signal.SIGKILL)
  process.wait(timeout=60)
  steps = CheckpointManager(killed).all_steps()
  if steps and steps[-1] == 40:
    pytest.fail('the run finished before it could be killed; make it longer')
  assert _main(f'--workdir={killed}', *[f'--config.{o}' for o in overrides]) == 0  # The rerun resumes.
  assert read_json(killed, 'results.json')['step'] == 40

  config = load_config(TINY, overrides)
  # Uninterrupted, and without saving: a save reads the state, it does not change it.
  straight, _ = train.train(load_config(config, ['checkpoint=False']), str(tmp_path / 'straight'))
  restored = CheckpointManager(killed).restore(train.setup(config).abstract_state)
  assert restored[0] == 40
  assert_trees_equal(restored[1], straight)
