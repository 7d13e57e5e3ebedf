"""vivit-features: flags and paths checked before the checkpoint is read, a split and a folder of files end to end
(a corrupt file reported and the others written), and the .npz loading without pickle."""

import os

import numpy as np
import pytest

from tests.cli.running import exit_status, only_error_line
from tests.serving.test_features import VALIDATION, class_names, retrieval_config, trained_workdir, write_videos
from tests.train_testing import host_tree
from vivit_jax.checkpoints import load_params, save_scenic
from vivit_jax.cli import features as command
from vivit_jax.serving import features

CONFIG_FILE = """
from tests.serving.test_features import retrieval_config

def get_config():
  return retrieval_config()
"""


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return trained_workdir(tmp_path_factory)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  return write_videos(tmp_path_factory.mktemp('feature_cli_videos'))


def run(argv):
  """vivit-features' exit status."""
  return exit_status(command.main, argv)


@pytest.mark.parametrize('arguments,message', [
    ([], 'nothing to read: give VIDEO|DIR arguments or --split=NAME'),
    (['--split=validation', '{videos}'], 'give either VIDEO|DIR arguments or --split=NAME (not both)'),
    (['--split=validation', '--fps=5'], '--fps=5 applies to video files'),
    (['--fps=5000', '{videos}'], '--fps must be a frame rate in (0, 1000]; got 5000.0'),
    (['--fps=0', '{videos}'], "argument --fps: expected a positive number, got '0'"),
    (['--batch_size=0', '{videos}'], "argument --batch_size: expected a positive integer, got '0'"),
    (['--views=4x2', '{videos}'], "--views must be CLIPSxCROPS with CLIPS >= 1 and CROPS 1 or 3 (e.g. 4x3), got '4x2'"),
    (['--output={tmp}/features.json', '{videos}'], 'features.json: expected a file name ending in .npz'),
    (['{tmp}/missing.mp4'], 'VIDEO|DIR {tmp}/missing.mp4 does not exist'),
    (['--output={tmp}/dir.npz', '{videos}'], '--output {tmp}/dir.npz is a directory; expected a file name'),
    (['--output={videos}/corrupt.mp4/x.npz', '{videos}'], 'is a file, not a directory'),
])
def test_bad_flags_are_one_error_line_before_the_checkpoint_is_read(arguments, message, videos, tmp_path, capsys):
  (tmp_path / 'dir.npz').mkdir()
  fill = lambda text: text.format(videos=videos, tmp=tmp_path)
  argv = [f'--checkpoint={tmp_path}/no_checkpoint_here', f'--output={tmp_path}/out.npz']
  argv += [fill(a) for a in arguments]
  assert run(argv) == 2
  assert fill(message) in only_error_line(capsys.readouterr().err)


def test_a_split_end_to_end(workdir, tmp_path, capsys):
  output = tmp_path / 'features_validation.npz'
  assert run([f'--checkpoint={workdir}', '--split=validation', f'--output={output}', '--batch_size=16']) == 0
  captured = capsys.readouterr()
  assert f'[{VALIDATION}/{VALIDATION}] videos' in captured.err and 'error' not in captured.err
  assert 'nearest-neighbour retrieval' in captured.out and '(chance 0.179)' in captured.out
  with np.load(output, allow_pickle=False) as data:
    assert data['features'].shape == (VALIDATION, 16) and data['labels'].tolist() == [i % 5 for i in range(VALIDATION)]
    assert str(data['source']) == 'split:validation' and str(data['checkpoint']) == workdir
    assert str(data['label_names'][0]).startswith('direction_')
  expected = features.extract_split(features.load(workdir), 'validation')
  np.testing.assert_allclose(features.load_features(str(output))['features'], expected.features, atol=1e-6)


def test_a_folder_with_a_corrupt_file(workdir, videos, tmp_path, capsys):
  output = tmp_path / 'nested' / 'features.npz'
  assert run([f'--checkpoint={workdir}', f'--output={output}', '--views=2x1', str(videos)]) == 1  # One failed.
  captured = capsys.readouterr()
  assert only_error_line(captured.err).startswith(f'error: {videos / "corrupt.mp4"}: ')
  assert '[3/3] files' in captured.err and '1 of 3 files failed' in captured.err
  loaded = features.load_features(str(output))
  assert [p.rsplit('/', 1)[1] for p in loaded['ids']] == ['a.mp4', 'b.mp4']
  assert loaded['labels'].tolist() == [0, 0] and loaded['failed_ids'].tolist() == [str(videos / 'corrupt.mp4')]
  assert loaded['views'] == '2x1' and loaded['num_views'] == 2 and loaded['fps'] == 10.0
  assert loaded['features'].shape == (2, 16)
  assert run([f'--checkpoint={workdir}', f'--output={tmp_path / "none.npz"}', str(videos / 'corrupt.mp4')]) == 1
  assert 'no features: all 1 files failed; nothing written' in capsys.readouterr().err
  assert not (tmp_path / 'none.npz').exists()


def test_any_checkpoint_restore_reads(workdir, videos, tmp_path, capsys):
  """A step directory, and a Scenic file with --config (without it: one error line naming --config)."""
  video = str(videos / class_names()[0] / 'a.mp4')
  expected = features.extract_files(features.load(workdir, for_files=True), [video]).features
  scenic = str(tmp_path / 'checkpoint')
  save_scenic(scenic, host_tree(load_params(workdir)))
  (tmp_path / 'config.py').write_text(CONFIG_FILE)
  assert run([f'--checkpoint={scenic}', f'--output={tmp_path}/x.npz', video]) == 2
  assert '--config' in only_error_line(capsys.readouterr().err)
  step = os.path.join(workdir, 'checkpoints', str(retrieval_config().num_training_steps))
  for argv in ([f'--checkpoint={step}'], [f'--checkpoint={scenic}', f'--config={tmp_path}/config.py']):
    output = tmp_path / 'one.npz'
    assert run(argv + [f'--output={output}', video]) == 0
    np.testing.assert_allclose(features.load_features(str(output))['features'], expected, atol=1e-6)
