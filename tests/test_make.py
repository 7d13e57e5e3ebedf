"""The set-up: `make demo` installs what running needs (no test extra: torch and transformers are for the tests),
`make test` adds the test extra, and nothing the package imports needs the test extra."""

import configparser
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests import paths

ROOT = paths.ROOT
TEST_ONLY = ('torch', 'transformers', 'pytest', 'onnx', 'onnxruntime', 'jax2onnx')


def _requirements(text):
  return [line.strip().split('>')[0].split('=')[0].split('[')[0] for line in text.strip().splitlines()
          if line.strip() and not line.strip().startswith('#')]


def _setup():
  parser = configparser.ConfigParser()
  parser.read(ROOT / 'setup.cfg')
  return parser


def _make_dry_run(target, tmp_path):
  """What `make TARGET` would run on a machine without .venv (make -n, in a copy of the set-up files)."""
  if shutil.which('make') is None:
    pytest.fail('make is not installed')
  for name in ('Makefile', 'setup.cfg', 'pyproject.toml'):
    shutil.copy(ROOT / name, tmp_path / name)
  # Run under `make test` (CI), make's own variables would make this a sub-make printing 'make[1]: ...' lines.
  env = {k: v for k, v in os.environ.items() if k not in ('MAKEFLAGS', 'MAKELEVEL', 'MFLAGS', 'MAKEOVERRIDES')}
  result = subprocess.run(['make', '-n', target], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False, env=env)
  assert result.returncode == 0, result.stderr
  return [line for line in result.stdout.splitlines() if not line.startswith('make[')]


def test_make_demo_installs_the_package_without_the_test_extra_and_runs_the_console_script(tmp_path):
  lines = _make_dry_run('demo', tmp_path)
  installs = [line for line in lines if 'pip install' in line and 'upgrade pip' not in line]
  assert installs == ['.venv/bin/python -m pip install --quiet --no-compile -e .']
  _compiled_after_each_install(lines)
  assert lines[-1].endswith('.venv/bin/vivit-train --config=configs/synthetic.py --workdir=runs/demo')


def test_make_test_installs_the_test_extra_in_one_resolution_on_a_new_venv(tmp_path):
  lines = _make_dry_run('test', tmp_path)
  installs = [line for line in lines if 'pip install' in line and 'upgrade pip' not in line]
  assert installs == [".venv/bin/python -m pip install --quiet --no-compile -e '.[test]'"]
  _compiled_after_each_install(lines)
  assert '.venv/.installed-run' in lines[-2] and '.venv/.installed-test' in lines[-2]  # `make demo` has it all.
  assert lines[-1].startswith('.venv/bin/python -m pytest')


def _compiled_after_each_install(lines):
  """pip installs without compiling to bytecode; the next command compiles the environment on every core."""
  for i, line in enumerate(lines):
    if 'pip install' in line and 'upgrade pip' not in line:
      assert 'compileall.compile_dir' in lines[i + 1] and 'workers=0' in lines[i + 1], lines[i + 1]


def test_running_needs_no_test_only_package_and_the_extras_hold_them():
  setup = _setup()
  running = _requirements(setup['options']['install_requires'])
  assert not set(running) & set(TEST_ONLY) and 'matplotlib' in running
  extras = setup['options.extras_require']
  assert set(TEST_ONLY) <= set(_requirements(extras['test']))
  assert set(_requirements(extras['onnx'])) <= set(_requirements(extras['test']))


def test_no_module_of_the_package_imports_a_test_only_package():
  modules = sorted('.'.join(p.relative_to(ROOT).with_suffix('').parts[:-1] if p.name == '__init__.py' else
                            p.relative_to(ROOT).with_suffix('').parts) for p in (ROOT / 'vivit_jax').rglob('*.py'))
  code = ('import importlib, sys\n'
          f'for name in {TEST_ONLY!r}:\n  sys.modules[name] = None  # Importing it raises ImportError.\n'
          f'for name in {modules!r}:\n  importlib.import_module(name)\n'
          'print("ok")')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode == 0 and result.stdout.split()[-1:] == ['ok'], result.stderr[-3000:]


def test_the_bytecode_compile_leaves_out_no_module_the_tests_import():
  with open(ROOT / 'Makefile') as f:
    skip = re.compile(re.search(r'^SKIP := (.*)$', f.read(), re.M).group(1))
  # transformers' model families the tests load (test_huggingface.py, serving), found without importing torch,
  # and whatever this process has imported by now.
  needed = [importlib.util.find_spec(f'transformers.models.{name}').origin
            for name in ('vivit.modeling_vivit', 'vit.modeling_vit', 'auto.modeling_auto', 'encoder_decoder')]
  needed += [getattr(m, '__file__', None) or '' for m in list(sys.modules.values())]
  assert [f for f in needed if skip.search(f)] == []
  assert skip.search('/x/site-packages/transformers/models/bert/modeling_bert.py')  # It does leave modules out.
  assert skip.search('/x/site-packages/numpy/linalg/tests/test_linalg.py')
