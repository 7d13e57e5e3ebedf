"""Every command reports a bad config, flag or path as exactly one `error:` line on stderr with exit status 2, never a
traceback: the commands' `main([...])` in this process, and `vivit-train` once more through absl's `app.run`."""

import importlib
import subprocess
import sys

import pytest
from absl import flags

from tests import paths
from tests.cli.running import exit_status
from vivit_jax import main as train_command
from vivit_jax.cli import common

SYNTHETIC = str(paths.ROOT / 'configs' / 'synthetic.py')


@pytest.fixture
def files(tmp_path):
  """Bad inputs, each built here: a config that is not Python, one that exits, one that raises, a folder, a file."""
  (tmp_path / 'config.txt').write_text('def get_config():\n  return None\n')
  (tmp_path / 'exits.py').write_text('import sys\nsys.exit(3)\n')
  (tmp_path / 'raises.py').write_text("def get_config():\n  raise KeyError('dataset')\n")
  (tmp_path / 'hard_exit.py').write_text('import os\nos._exit(0)\n')
  (tmp_path / 'interrupts.py').write_text('def get_config():\n  raise KeyboardInterrupt\n')
  (tmp_path / 'folder').mkdir()
  (tmp_path / 'file').write_text('not a folder')
  return tmp_path


def one_error_line(status, stderr):
  """The `error:` line, after checking it is the only one, that there is no traceback and that the status is 2."""
  assert 'Traceback' not in stderr, stderr[-3000:]
  lines = [line for line in stderr.splitlines() if 'error:' in line]
  assert len(lines) == 1 and lines[0].startswith('error: '), stderr[-3000:]
  assert status == 2, stderr[-3000:]
  return lines[0]


def run_main(main, argv, capsys):
  return one_error_line(exit_status(main, argv), capsys.readouterr().err)


# (command, arguments with {tmp} for the fixture's folder, what the error line says).
CASES = [
    ('evaluate', ['--checkpoint={tmp}/missing'], 'No checkpoint at {tmp}/missing'),
    ('evaluate', ['--checkpoint={tmp}/missing', '--batch_size=0'], "--batch_size: expected a positive integer"),
    ('evaluate', ['--checkpoint={tmp}/missing', '--views=4x2'], '--views must be CLIPSxCROPS'),
    ('evaluate', ['--checkpoint={tmp}/missing', '--output={tmp}/folder'], '--output {tmp}/folder is a directory'),
    ('evaluate', ['--checkpoint={tmp}/missing', '--output=/dev/full'], '--output /dev/full is a character device'),
    ('evaluate', ['--checkpoint={tmp}/missing', '--config.batch_size'], '--config.batch_size needs a value'),
    ('evaluate', [], 'the following arguments are required: --checkpoint'),
    ('convert', ['--input={tmp}/missing', '--output={tmp}/out', '--to=scenic'], 'No checkpoint at {tmp}/missing'),
    ('convert', ['--input={tmp}/missing', '--output={tmp}/file/out', '--to=scenic'], '{tmp}/file is a file'),
    ('convert', ['--input={tmp}/missing', '--output={tmp}/out', '--to=onnx'], "argument --to: invalid choice: 'onnx'"),
    ('export', ['--checkpoint={tmp}/missing', '--output={tmp}/out'], 'No checkpoint at {tmp}/missing'),
    ('export', ['--checkpoint={tmp}/missing', '--output={tmp}/file'], '--output {tmp}/file is a file; expected a directory'),
    ('export', ['--checkpoint=x', '--output=y', '--batch_size=-1'], "expected a positive integer, got '-1'"),
    ('export', ['--checkpoint=x', '--output=y', '--platforms=cpu,quantum'],
     "--platforms: 'cpu,quantum': expected a comma-separated subset of cpu, cuda, rocm, tpu; unknown: quantum"),
    ('ablation', ['--config={tmp}/config.txt'], "{tmp}/config.txt: expected a Python config file ending in '.py'"),
    ('ablation', ['--config={tmp}/exits.py'], '{tmp}/exits.py: importing the config file called sys.exit(3)'),
    ('ablation', ['--config={tmp}/exits.py', '--time_steps=-1'], "--time_steps: expected an integer >= 0, got '-1'"),
    ('benchmark', ['--model', '--config={tmp}/exits.py'], '{tmp}/exits.py: importing the config file called sys.exit'),
    ('benchmark', ['--model', f'--config={SYNTHETIC}', '--config.batch_size=0'], "'batch_size' is 0; expected"),
    ('benchmark', ['--model', f'--config={SYNTHETIC}', '--steps=0'], "--steps: expected a positive integer, got '0'"),
    ('benchmark', ['--model'], '--model needs --config'),
    ('benchmark', ['--data', '--work_dir={tmp}/file'], '{tmp}/file is a file; expected a directory'),
    ('model_table', ['--config={tmp}/config.txt'], "{tmp}/config.txt: expected a Python config file ending in '.py'"),
    ('model_table', ['--config={tmp}/raises.py'], "{tmp}/raises.py: get_config() raised KeyError: 'dataset'"),
    ('model_table', ['--config={tmp}/missing.py'], 'config file not found: {tmp}/missing.py'),
    ('pretrain_image_vit', ['--steps=0'], "--steps: expected a positive integer, got '0'"),
    ('pretrain_image_vit', ['--learning_rate=-0.1'], "--learning_rate: expected a positive number, got '-0.1'"),
    ('pretrain_image_vit', ['--grid=5'], '--grid=5: expected a divisor of the 32-pixel frame side'),
    ('pretrain_image_vit', ['--output={tmp}/folder', '--steps=1'], '--output {tmp}/folder is a directory; expected a file'),
    ('gpu_check', ['--variants=spacetime,bogus'], "--variants: unknown ['bogus']"),
    ('gpu_check', ['--crop=20'], 'a crop that is a multiple of 16'),
    ('gpu_check', ['--layers=0'], "--layers: expected a positive integer, got '0'"),
]


@pytest.mark.parametrize('command, argv, expected', CASES, ids=[f'{c[0]}-{i}' for i, c in enumerate(CASES)])
def test_every_command_reports_a_bad_input_in_one_line(command, argv, expected, files, capsys):
  main = importlib.import_module(f'vivit_jax.cli.{command}').main
  line = run_main(main, [a.format(tmp=files) for a in argv], capsys)
  assert expected.format(tmp=files) in line


# vivit-train: absl flags, then the config, then --dry_run or training.


@pytest.fixture
def train(files):
  """`main` of vivit-train after absl has parsed `argv` (as app.run does); the flags are reset afterwards."""
  def run(*argv):
    return train_command.main(train_command._parse_flags(['vivit-train', *[a.format(tmp=files) for a in argv]]))
  yield run
  flags.FLAGS.unparse_flags()


TRAIN_CASES = [
    (['--config={tmp}/config.txt', '--dry_run'], "{tmp}/config.txt: expected a Python config file ending in '.py'"),
    (['--config={tmp}/exits.py', '--dry_run'], '{tmp}/exits.py: importing the config file called sys.exit(3)'),
    (['--config={tmp}/raises.py', '--dry_run'], "{tmp}/raises.py: get_config() raised KeyError: 'dataset'"),
    (['--config={tmp}/hard_exit.py', '--dry_run'], '{tmp}/hard_exit.py: importing the config file called os._exit(0)'),
    (['--config={tmp}/interrupts.py', '--dry_run'], '{tmp}/interrupts.py: get_config() raised KeyboardInterrupt'),
    ([f'--config={SYNTHETIC}:tiny', '--config.dataset_configs.num_classes=None', '--dry_run'],
     "'dataset_configs.num_classes' is not set"),
    ([f'--config={SYNTHETIC}:tiny', '--config.batch_size=0', '--dry_run'], "'batch_size' is 0; expected a positive"),
    ([f'--config={SYNTHETIC}:tiny', '--config.lr_configs.warmup_steps=4', '--dry_run'],
     "'lr_configs.warmup_steps' is 4, but the run is 4 steps"),
    ([f'--config={SYNTHETIC}:tiny', '--config.num_training_steps=None', '--dry_run'],
     "set 'num_training_epochs' or 'num_training_steps'"),
    ([f'--config={SYNTHETIC}:tiny', '--config.mesh.model=3', '--dry_run'], 'mesh'),
    ([f'--config={SYNTHETIC}:tiny', '--config.batch_sise=8', '--dry_run'], "did you mean 'batch_size'?"),
    ([f'--config={SYNTHETIC}:tiny', '--config.batch_size'], '--config.batch_size needs a value'),
    ([f'--config={SYNTHETIC}:tiny'], '--workdir=DIR is required to train'),
    ([f'--config={SYNTHETIC}:tiny', 'extra'], 'unexpected arguments: extra'),
    (['--dry_run'], '--config=FILE[:preset] is required'),
    (['--bogus'], "Unknown command line flag 'bogus'"),
    (['--dry_run=maybe'], 'Non-boolean argument to boolean flag'),
]


@pytest.mark.parametrize('argv, expected', TRAIN_CASES, ids=[str(i) for i in range(len(TRAIN_CASES))])
def test_training_reports_a_bad_input_in_one_line(argv, expected, train, files, capsys):
  line = run_main(lambda args: train(*args), argv, capsys)
  assert expected.format(tmp=files) in line


def test_training_through_absl_app_run_reports_a_bad_config_in_one_line(files):
  result = subprocess.run([sys.executable, '-m', 'vivit_jax.main', f'--config={files}/exits.py', '--dry_run'],
                          cwd=paths.ROOT, capture_output=True, text=True, timeout=300, check=False)
  line = one_error_line(result.returncode, result.stderr)
  assert line == f'error: {files}/exits.py: importing the config file called sys.exit(3); a config file must not exit'
  assert result.stdout == ''


def test_an_os_error_is_one_line_naming_its_path(capsys):
  assert common.fail(PermissionError(13, 'Permission denied', '/data/out.json')) == 2
  assert capsys.readouterr().err == 'error: /data/out.json: Permission denied\n'
  common.fail(FileNotFoundError(2, 'No such file or directory', 'a.json', None, 'b.json'))
  assert capsys.readouterr().err == 'error: a.json -> b.json: No such file or directory\n'


def test_an_ablation_whose_sweep_exits_is_one_line_naming_the_file(tmp_path, capsys):
  sweep = tmp_path / 'sweep.py'
  sweep.write_text('import sys\n\ndef get_config():\n  return None\n\ndef get_sweep():\n  sys.exit(3)\n')
  from vivit_jax.cli import ablation  # pylint: disable=g-import-not-at-top
  assert ablation.main([f'--config={sweep}', f'--workdir={tmp_path / "run"}']) == 2
  err = capsys.readouterr().err
  assert err.count('error:') == 1 and 'Traceback' not in err
  assert f'{sweep}: get_sweep() called sys.exit(3)' in err
