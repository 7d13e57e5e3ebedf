"""Multi-process training on CPU: two processes of two simulated devices each train exactly like one process (of
eight), only process 0 writes the run's files, a process that dies stops the other and the rerun resumes from the
checkpoint; processes that do not share one workdir stop at once with one clear error.

Every multi-process run here is made of subprocesses with a deadline, so a hang fails a test instead of stalling
CI; the one-process reference and the flag errors that stop before anything starts run in this process. The
two-process run from scratch is the first half of the killed-and-resumed one, which saves a third launch.
"""

import dataclasses
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, List, Sequence

import numpy as np
import pytest

from tests import paths
from vivit_jax import main as main_lib
from vivit_jax.train import multihost, reporting

ROOT = paths.ROOT
TINY = str(ROOT / 'configs' / 'synthetic.py') + ':tiny'
# The tiny preset (4 steps; summaries and checkpoints at steps 2 and 4) validated once, at the end, with no
# multi-view test and no GFLOPs count: the runs compare the training, and each launch stays short.
OVERRIDES = ('--config.log_eval_steps=1000', '--config.dataset_configs.do_multicrop_test=False',
             '--config.count_flops=False')
DEADLINE_S = 300  # For one launch on a slow, shared CI machine; a healthy one takes well under a minute.


@dataclasses.dataclass
class Process:
  popen: subprocess.Popen
  log: pathlib.Path  # stdout and stderr (a file: a full pipe would block the process).

  def text(self) -> str:
    return self.log.read_text(errors='replace')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices: int) -> Dict[str, str]:
  """CPU only, `devices` simulated devices compiled as the tests compile (tests/conftest.py), and no proxy (gRPC
  would send localhost through it)."""
  env = {k: v for k, v in os.environ.items() if not k.lower().endswith('_proxy')}
  flags = [f for f in env.get('XLA_FLAGS', '').split() if not f.startswith('--xla_force_host_platform_device_count')]
  env.update(JAX_PLATFORMS='cpu', CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2',
             XLA_FLAGS=' '.join([f'--xla_force_host_platform_device_count={devices}', *flags]),
             PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p))
  return env


def _start(logs: pathlib.Path, argvs: Sequence[Sequence[str]], coordinate: bool = True) -> List[Process]:
  """`python ARGV` for each argv (2 devices each, 4 when alone); with `coordinate`, several join one run through
  a coordinator on a free port (the --coordinator_address, --num_processes and --process_id flags)."""
  logs.mkdir(parents=True, exist_ok=True)
  port, count = _free_port(), len(argvs)
  processes = []
  for index, argv in enumerate(argvs):
    argv = list(argv)
    if coordinate and count > 1:
      argv += [f'--coordinator_address=localhost:{port}', f'--num_processes={count}', f'--process_id={index}']
    log = logs / f'process_{index}.log'
    with open(log, 'w') as f:
      popen = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=_env(4 // count), stdout=f,
                               stderr=subprocess.STDOUT)
    processes.append(Process(popen, log))
  return processes


def _train(logs: pathlib.Path, workdir: pathlib.Path, count: int = 2) -> List[Process]:
  argv = ['-m', 'vivit_jax.main', f'--config={TINY}', f'--workdir={workdir}', *OVERRIDES]
  return _start(logs, [argv] * count)


def _stop(processes: Sequence[Process]) -> None:
  for p in processes:
    if p.popen.poll() is None:
      p.popen.kill()
      p.popen.wait(timeout=30)


def _wait(processes: Sequence[Process], timeout: float = DEADLINE_S) -> List[int]:
  """The exit codes; kills every process and fails the test when one is still running after `timeout`."""
  deadline = time.monotonic() + timeout
  try:
    for p in processes:
      p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    _stop(processes)
    pytest.fail(f'still running after {timeout:.0f} s (a hang):\n' + _tails(processes))
  return [p.popen.returncode for p in processes]


def _wait_for(condition: Callable[[], bool], processes: Sequence[Process], timeout: float = DEADLINE_S) -> None:
  deadline = time.monotonic() + timeout
  while not condition():
    if any(p.popen.poll() is not None for p in processes) or time.monotonic() > deadline:
      _stop(processes)
      pytest.fail('the run ended or stalled before the awaited moment:\n' + _tails(processes))
    time.sleep(0.05)


def _tails(processes: Sequence[Process]) -> str:
  return '\n'.join(f'--- process {i} (exit {p.popen.returncode}):\n{p.text()[-3000:]}'
                   for i, p in enumerate(processes))


def _losses(workdir: pathlib.Path) -> Dict[str, list]:
  """{'train/loss': [(step, value), ...], 'valid/loss': [...]} from metrics.jsonl."""
  return {k: v for k, v in reporting.read_history(str(workdir)).items() if k.endswith('/loss')}


def _assert_same_losses(losses: Dict[str, list], reference: Dict[str, list]) -> None:
  """Same metrics at the same steps; values equal up to float32 rounding (gloo sums the gradients of the two
  processes in another order than one process sums its devices': grad_norm differs in the 7th digit)."""
  assert set(losses) == set(reference) == {'train/loss', 'valid/loss'}
  for name in reference:
    assert [s for s, _ in losses[name]] == [s for s, _ in reference[name]], name
    np.testing.assert_allclose([v for _, v in losses[name]], [v for _, v in reference[name]], rtol=1e-5,
                               err_msg=name)


def _events_files(workdir: pathlib.Path) -> List[str]:
  return sorted(f for f in os.listdir(workdir) if f.startswith('events.out.tfevents'))


def _writer_pid(events_file: str) -> int:
  """The pid in 'events.out.tfevents.TIME.HOST.PID.0.v2' (the process that wrote it)."""
  return int(events_file.split('.')[-3])


@pytest.fixture(scope='module')
def reference(tmp_path_factory) -> Dict[str, list]:
  """The losses of the same config run by one process: this one, with its eight devices (a subprocess would spend
  ~10 s importing before it trains the same way)."""
  workdir = tmp_path_factory.mktemp('one_process') / 'run'
  assert _main(['vivit-train', f'--config={TINY}', f'--workdir={workdir}', *OVERRIDES]) == 0
  return _losses(workdir)


def _main(argv: Sequence[str]) -> int:
  """`python -m vivit_jax.main ARGV[1:]`'s exit status, run in this process."""
  try:
    return main_lib.main(main_lib._parse_flags(argv))  # pylint: disable=protected-access
  finally:
    main_lib.FLAGS.unparse_flags()


def test_two_processes_train_like_one_stop_together_when_one_dies_and_resume(tmp_path, reference):
  """Two launches of two processes: the first is killed after its checkpoint at step 2, the rerun resumes from it.
  Both only write from process 0, and steps 1-2 (from scratch) and 3-4 (resumed) give one process's losses."""
  workdir = tmp_path / 'run'
  first = _train(tmp_path / 'first', workdir)
  _wait_for(lambda: (workdir / 'checkpoints' / '2').is_dir(), first)
  first[0].popen.kill()  # SIGKILL mid-run: the coordinator dies with step 3 or 4 under way.
  killed_at = time.monotonic()
  survivor = _wait(first[1:], timeout=60)
  assert survivor != [0] and time.monotonic() - killed_at < 60, _tails(first)
  assert not (workdir / 'checkpoints' / '4').exists(), 'the run finished before it could be killed'
  assert [_writer_pid(f) for f in _events_files(workdir)] == [first[0].popen.pid]  # One events file: process 0's.

  rerun = _train(tmp_path / 'rerun', workdir)
  assert _wait(rerun) == [0, 0], _tails(rerun)
  assert 'Resumed from' in rerun[0].text() and 'at step 2' in rerun[0].text(), _tails(rerun)
  _assert_same_losses(_losses(workdir), reference)
  assert sorted(_writer_pid(f) for f in _events_files(workdir)) == sorted([first[0].popen.pid, rerun[0].popen.pid])
  results = reporting.read_results(str(workdir))
  assert (results['status'], results['step']) == ('completed', 4)
  assert not [f for f in os.listdir(workdir) if f.startswith(multihost.TOKEN_PREFIX)]


def test_processes_with_different_workdirs_stop_at_once_with_one_error(tmp_path):
  argv = ['-m', 'vivit_jax.main', f'--config={TINY}', *OVERRIDES]
  processes = _start(tmp_path / 'logs', [[*argv, f'--workdir={tmp_path / name}'] for name in 'ab'])
  assert _wait(processes, timeout=120) == [2, 2], _tails(processes)
  for p in processes:
    errors = [line for line in p.text().splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'every process needs the same shared workdir' in errors[0], _tails(processes)
    assert str(tmp_path / 'a') in errors[0] and str(tmp_path / 'b') in errors[0]
    assert 'Traceback' not in p.text()
  assert [os.listdir(tmp_path / name) for name in 'ab' if (tmp_path / name).exists()] in ([[]], [[], []])


_CHECKS = '''
import json, os, sys, time
import jax
port, index, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jax.distributed.initialize(f'localhost:{port}', 2, index)
from jax._src import distributed
from vivit_jax.train import multihost

def attempt(workdir, **kwargs):
  start = time.monotonic()
  try:
    multihost.check_shared_workdir(workdir, **kwargs)
    return {'error': None, 'seconds': time.monotonic() - start}
  except multihost.SharedWorkdirError as e:
    return {'error': str(e), 'seconds': time.monotonic() - start}

out = {'shared': attempt(os.path.join(tmp, 'shared')), 'file': attempt(os.path.join(tmp, 'a_file'))}
os.chdir(os.path.join(tmp, f'host{index}'))  # One path string, a separate directory per process ("machine").
out['local'] = attempt('run', settle_s=1)
if index == 0:  # Process 1 never comes to this check.
  out['absent'] = attempt(os.path.join(tmp, 'alone'), timeout_s=2, settle_s=0)
  distributed.global_state.client.key_value_set('test/done', '1')
else:
  distributed.global_state.client.blocking_key_value_get('test/done', 120_000)
print('RESULT', json.dumps(out))
'''


def test_the_workdir_check_agrees_across_processes(tmp_path):
  for index in range(2):
    (tmp_path / f'host{index}').mkdir()
  (tmp_path / 'a_file').write_text('not a directory')
  port = _free_port()
  argvs = [['-c', _CHECKS, str(port), str(i), str(tmp_path)] for i in range(2)]
  processes = _start(tmp_path / 'logs', argvs, coordinate=False)
  assert _wait(processes, timeout=120) == [0, 0], _tails(processes)
  out = [json.loads(next(l for l in p.text().splitlines() if l.startswith('RESULT '))[7:]) for p in processes]
  # One shared directory passes, and the token is gone.
  assert [o['shared']['error'] for o in out] == [None, None]
  assert os.listdir(tmp_path / 'shared') == []
  # A workdir process 0 cannot write to is its problem, reported alike by both (not as a sharing problem).
  assert out[0]['file']['error'] == out[1]['file']['error']
  assert out[0]['file']['error'].startswith(f'workdir {tmp_path / "a_file"}: process 0 cannot write ')
  # One path that is a separate directory on each "machine": both processes raise the same error, naming both.
  local = [o['local']['error'] for o in out]
  assert local[0] == local[1] and 'every process needs the same shared workdir' in local[0]
  assert f'process 1 found no {tmp_path / "host1" / "run" / multihost.TOKEN_PREFIX}' in local[0]
  assert str(tmp_path / 'host0' / 'run') in local[0]
  # A process that never reaches the check stops the other after the timeout, not never.
  absent = out[0]['absent']
  assert 'process 1 did not reach the workdir check within 2 s' in absent['error'] and absent['seconds'] < 10


def test_a_single_process_run_skips_the_check(tmp_path):
  multihost.check_shared_workdir(str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


# The two flag errors below stop the command before it joins anything: they run in this process, through the
# `main` that `python -m vivit_jax.main` calls.
def test_process_flags_without_a_coordinator_are_an_error(tmp_path, capsys):
  argv = ['vivit-train', f'--config={TINY}', f'--workdir={tmp_path / "run"}', '--num_processes=2', '--process_id=1']
  assert _main(argv) == 2
  assert ('error: --num_processes=2 --process_id=1 given without --coordinator_address=HOST:PORT'
          in capsys.readouterr().err)
  assert not (tmp_path / 'run').exists()


def test_a_coordinator_address_without_a_port_is_an_error(tmp_path, capsys):
  argv = ['vivit-train', f'--config={TINY}', f'--workdir={tmp_path / "run"}', '--num_processes=2', '--process_id=1',
          '--coordinator_address=notahost']
  assert _main(argv) == 2
  text = capsys.readouterr().err
  assert 'error: --coordinator_address=notahost: expected HOST:PORT' in text and 'Traceback' not in text
  assert not (tmp_path / 'run').exists()
