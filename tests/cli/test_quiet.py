"""Quiet commands (vivit_jax/cli/quiet.py): the libraries' noise (TensorFlow's oneDNN notice, absl's pre-init
warning, the JAX TPU probe, deprecations) stays off the console unless --verbose or VIVIT_VERBOSE=1 asks for
it, and a run ends by saying where its outputs are."""

import ast
import logging
import os
import subprocess
import sys

import pytest

from tests import paths
from vivit_jax import main as main_lib
from vivit_jax.cli import quiet
from vivit_jax.train import reporting

ROOT = paths.ROOT
TINY = str(ROOT / 'configs' / 'synthetic.py') + ':tiny'
LIBRARY_SETTINGS = ('JAX_PLATFORMS', *quiet.QUIET_ENVIRONMENT, quiet.VERBOSE_ENV)


def _run(args):
  """A command as a user runs it: none of the settings that quiet it (conftest's included) in its environment,
  so that JAX probes for a TPU and TensorFlow loads with its defaults."""
  env = {k: v for k, v in os.environ.items() if k not in LIBRARY_SETTINGS}
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                        check=False)


def _noise(stderr):
  return [text for text in quiet.NOISE if text in stderr]


def test_training_is_quiet_by_default():
  result = _run(['-m', 'vivit_jax.main', f'--config={TINY}', '--dry_run'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'parameters       17,304' in result.stdout
  assert _noise(result.stderr) == [], result.stderr[-3000:]


def test_a_command_is_quiet_by_default_and_verbose_brings_the_libraries_logs_back():
  """Quiet without turning TensorFlow's oneDNN kernels off (TF_ENABLE_ONEDNN_OPTS=0 read the benchmark's records at
  55 instead of 72 clips/s): the notices are dropped from stderr while TensorFlow loads, what else is written then
  gets through, and afterwards `tensorflow` is an ordinary module with no hook left behind."""
  code = ('import os, runpy, sys\n'
          'sys.argv = ["scripts/prepare_data.py", "--help"]\n'
          'try:\n  runpy.run_path("scripts/prepare_data.py", run_name="__main__")\n'  # Importing it loads TensorFlow.
          'except SystemExit as e:\n  assert not e.code, e.code\n'
          'import tensorflow\n'
          'from tensorflow.python.util import _pywrap_util_port\n'
          'from vivit_jax.cli import quiet\n'
          'hooks = [f for f in sys.meta_path if isinstance(f, quiet.TensorFlowImportFilter)]\n'
          'print(_pywrap_util_port.IsMklEnabled(), os.environ.get("TF_ENABLE_ONEDNN_OPTS"), len(hooks),\n'
          '      type(tensorflow.__loader__).__name__, type(tensorflow.__spec__.loader).__name__)\n')
  quiet_run = _run(['-c', code])
  assert quiet_run.returncode == 0 and 'vivit-prepare-data' in quiet_run.stdout, quiet_run.stderr[-3000:]
  assert quiet_run.stdout.split()[-5:] == ['True', 'None', '0', 'SourceFileLoader', 'SourceFileLoader']
  assert _noise(quiet_run.stderr) == [], quiet_run.stderr[-3000:]
  verbose_run = _run(['scripts/prepare_data.py', '--verbose', '--help'])
  assert verbose_run.returncode == 0 and 'vivit-prepare-data' in verbose_run.stdout
  assert 'oneDNN' in verbose_run.stderr  # What the quiet run kept off the console, and this test's proof.


def _top_level_imports(path):
  """The modules a file imports at its top level, in order (for `from a import b`: a.b when that is a module)."""
  names = []
  for node in ast.parse(path.read_text()).body:
    if isinstance(node, ast.Import):
      names += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names += [f'{node.module}.{alias.name}' for alias in node.names]
  return names


def test_every_command_sets_the_quiet_environment_before_anything_imports_tensorflow():
  before = {}  # Command file: the modules it imports before the quiet environment is set.
  for path in sorted((ROOT / 'vivit_jax' / 'cli').glob('*.py')) + [ROOT / 'vivit_jax' / 'main.py']:
    if path.name in ('__init__.py', 'quiet.py', 'common.py'):
      continue
    names = _top_level_imports(path)
    hooks = [i for i, n in enumerate(names) if n in ('vivit_jax.cli.common', 'vivit_jax.cli.quiet')]
    assert hooks, f'{path.name} imports neither vivit_jax.cli.common nor vivit_jax.cli.quiet'
    # main.py sets it in run(), after all its imports; the others when they import common.
    before[path.name] = names if path.name == 'main.py' else names[:hooks[0]]
  common = _top_level_imports(ROOT / 'vivit_jax' / 'cli' / 'common.py')
  assert common.index('vivit_jax.cli.quiet') < min(i for i, n in enumerate(common)
                                                   if n.startswith('vivit_jax.') and n != 'vivit_jax.cli.quiet')
  modules = sorted({n.rpartition('.')[0] if n.rpartition('.')[0] and not _is_module(n) else n
                    for names in before.values() for n in names})
  code = ('import importlib, sys\n'
          f'for name in {modules!r}:\n  importlib.import_module(name)\n'
          'print("tensorflow" in sys.modules)')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split()[-1] == 'False', before


def _is_module(name):
  import importlib.util  # pylint: disable=import-outside-toplevel
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


@pytest.mark.parametrize('argv, env, expected', [
    ([], {}, False), (['--verbose'], {}, True), (['--verbose=true'], {}, True), (['--verbosity=1'], {}, False),
    ([], {'VIVIT_VERBOSE': '1'}, True), ([], {'VIVIT_VERBOSE': '0'}, False)])
def test_verbose_comes_from_the_flag_or_the_environment(argv, env, expected, monkeypatch):
  monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  assert quiet.verbose(argv) == expected
  assert reporting.verbose() == (expected and bool(env))  # The trainer reads the same variable.


def test_the_quiet_environment_keeps_what_the_user_set_and_verbose_sets_nothing(monkeypatch):
  for name in quiet.QUIET_ENVIRONMENT:
    monkeypatch.delenv(name, raising=False)
  monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
  monkeypatch.setenv('GRPC_VERBOSITY', 'INFO')
  quiet.quiet_environment([])
  assert os.environ['GRPC_VERBOSITY'] == 'INFO' and os.environ['TF_CPP_MIN_LOG_LEVEL'] == '2'
  monkeypatch.delenv('TF_CPP_MIN_LOG_LEVEL')
  quiet.quiet_environment(['--verbose'])
  assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ and os.environ[quiet.VERBOSE_ENV] == '1'
  assert quiet.VERBOSE_ENV == reporting.VERBOSE_ENV


def test_the_stderr_filter_drops_the_load_notices_and_passes_everything_else(capfd):
  with quiet.filtered_stderr():
    os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on. You may see ...\nkept: from C\n')
    print('kept: from Python', file=sys.stderr)
    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n')
  # (pytest's capture takes sys.stderr's text straight away, the descriptor's when the block ends.)
  assert sorted(capfd.readouterr().err.splitlines()) == ['kept: from C', 'kept: from Python']


def test_the_stderr_filter_lets_a_process_without_stderr_run():
  code = ('import os, sys\nfrom vivit_jax.cli import quiet\nos.close(2)\nsys.stderr = None\n'
          'with quiet.filtered_stderr():\n  x = 1\nprint("ran", x)\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
  assert (result.returncode, result.stdout) == (0, 'ran 1\n')


def _record(level, message, pathname='/work/main/vivit_jax/train/loop.py', name='root'):
  return logging.LogRecord(name, level, pathname, 1, message, None, None)


def test_the_filter_drops_the_libraries_chatter_and_keeps_their_warnings_and_ours():
  site = '/venv/lib/python3.11/site-packages'
  keep = [_record(logging.INFO, 'Training 4 steps'), _record(logging.WARNING, 'checkpoint 4 is unreadable'),
          _record(logging.WARNING, 'a real problem', f'{site}/orbax/checkpoint/manager.py'),
          _record(logging.ERROR, 'x is deprecated', f'{site}/tensorflow/python/util/deprecation.py')]
  drop = [_record(logging.INFO, "Unable to initialize backend 'tpu'", f'{site}/jax/_src/xla_bridge.py'),
          _record(logging.WARNING, "Platform 'tpu' is experimental and not all JAX functionality may be correctly "
                  'supported!', f'{site}/jax/_src/xla_bridge.py'),
          _record(logging.INFO, 'Saving checkpoint', f'{site}/orbax/checkpoint/manager.py'),
          _record(logging.INFO, 'Resetting cache at /tmp/c.', f'{site}/jax/_src/compilation_cache.py'),
          _record(logging.WARNING, 'From x.py: calling f is deprecated and will be removed in a future version.',
                  f'{site}/tensorflow/python/util/deprecation.py', name='tensorflow'),
          _record(logging.WARNING, f'{site}/tensorflow_datasets/x.py:3: DeprecationWarning: use y', name='py.warnings')]
  test_filter = quiet._QuietLibraries()  # pylint: disable=protected-access
  assert [test_filter.filter(r) for r in keep] == [True] * len(keep)
  assert [test_filter.filter(r) for r in drop] == [False] * len(drop)


def test_a_run_ends_with_its_results_and_where_its_outputs_are(tmp_path, capsys, caplog, monkeypatch):
  monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
  workdir = str(tmp_path / 'run')
  try:
    # Parsed as the command parses it, which also replaces the config overrides an earlier in-process run of
    # this worker left behind (custom_folder's epochs, say).
    parse = main_lib._parse_flags  # pylint: disable=protected-access
    argv = parse(['vivit-train', f'--config={TINY}', f'--workdir={workdir}'])
    with caplog.at_level(logging.INFO):
      assert main_lib.main(argv) == 0
      fresh = caplog.text
      caplog.clear()
      assert main_lib.main(argv) == 0  # A finished run: resumed at its last step.
  finally:
    main_lib.FLAGS.unparse_flags()
  out = capsys.readouterr().out
  assert out.count('status') == 2 and out.count(f'results.json   {workdir}/results.json') == 2
  assert f'checkpoints    {workdir}/checkpoints (steps 2, 4)' in out
  assert f'TensorBoard    {workdir} (tensorboard --logdir {workdir})' in out
  assert 'SpatialTransformer/encoder_norm/bias' in fresh and 'step 4/4  ' in fresh
  assert 'SpatialTransformer' not in caplog.text and 'Parameters: 17,304 (resuming at step 4' in caplog.text
