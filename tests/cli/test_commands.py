"""The commands: console scripts declared in setup.cfg, each a `vivit_jax.cli` function that the matching
scripts/*.py wraps without logic, with its usage in --help."""

import ast
import configparser
import importlib
import subprocess
import sys

import pytest

from tests import paths

REQUIRED = ('vivit-train', 'vivit-evaluate', 'vivit-predict', 'vivit-prepare-data', 'vivit-convert', 'vivit-export',
            'vivit-ablation', 'vivit-benchmark', 'vivit-model-table', 'vivit-features')
SCRIPTS = {'evaluate': 'evaluate', 'predict': 'predict', 'prepare_data': 'prepare_data',
           'convert_checkpoint': 'convert', 'export': 'export', 'run_ablation': 'ablation', 'benchmark': 'benchmark',
           'model_table': 'model_table', 'pretrain_image_vit': 'pretrain_image_vit', 'gpu_check': 'gpu_check',
           'extract_features': 'features'}


def console_scripts():
  parser = configparser.ConfigParser()
  parser.read(paths.ROOT / 'setup.cfg')
  lines = parser['options.entry_points']['console_scripts'].strip().splitlines()
  return dict(tuple(part.strip() for part in line.split('=')) for line in lines)


def test_setup_declares_every_command_and_each_resolves_to_a_function():
  scripts = console_scripts()
  assert set(REQUIRED) <= set(scripts)
  for name, target in scripts.items():
    module, _, function = target.partition(':')
    assert module.startswith('vivit_jax.cli.') or module == 'vivit_jax.main', name
    assert callable(getattr(importlib.import_module(module), function)), name


def test_configs_are_not_an_installed_package():
  parser = configparser.ConfigParser()
  parser.read(paths.ROOT / 'setup.cfg')
  include = parser['options.packages.find']['include'].split()
  assert include == ['vivit_jax', 'vivit_jax.*']


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_every_script_is_a_thin_wrapper_of_its_command(script):
  path = paths.ROOT / 'scripts' / f'{script}.py'
  text = path.read_text()
  assert len(text.splitlines()) <= 25 and 'sys.path' not in text
  tree = ast.parse(text)
  assert [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))] == []  # No logic.
  imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
  assert [(n.module, [a.name for a in n.names]) for n in imports] == [(f'vivit_jax.cli.{SCRIPTS[script]}', ['main'])]
  target = console_scripts().get(f"vivit-{SCRIPTS[script].replace('_', '-')}")
  assert target == f'vivit_jax.cli.{SCRIPTS[script]}:main'


@pytest.mark.parametrize('command', sorted(set(SCRIPTS.values())))
def test_every_command_has_its_usage_in_help(command, capsys):
  module = importlib.import_module(f'vivit_jax.cli.{command}')
  with pytest.raises(SystemExit) as exit_info:
    module.main(['--help'])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  assert f"vivit-{command.replace('_', '-')}" in out and module.USAGE.splitlines()[0] in out
  assert '--verbose' in out  # Every command can bring the libraries' logs back.


def test_training_help_shows_the_usage():
  result = subprocess.run([sys.executable, '-m', 'vivit_jax.main', '--help'], capture_output=True, text=True,
                          cwd=paths.ROOT, timeout=300, check=False)
  assert '--workdir' in result.stdout and 'python -m vivit_jax.main --config=' in result.stdout
  assert '--[no]verbose' in result.stdout


def test_library_docstrings_say_what_a_module_is_for_not_how_to_run_it():
  offenders = []
  for path in sorted((paths.ROOT / 'vivit_jax').rglob('*.py')):
    if 'cli' in path.parts or path.name == 'main.py':
      continue
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ''
    for line in docstring.splitlines():
      if line.strip().startswith(('python scripts/', 'python -m ', 'vivit-')):
        offenders.append(f'{path.relative_to(paths.ROOT)}: {line.strip()}')
  assert offenders == []
