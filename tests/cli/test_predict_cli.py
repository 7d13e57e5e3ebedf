"""vivit-predict on bad flags and bad files: flags and paths are checked before the checkpoint is loaded, one
failing file is reported and the others go on, and --output keeps every finished file when a later one kills the
run."""

import os

import numpy as np
import pytest

from tests.cli.running import exit_status, only_error_line
from tests.serving.test_predict import trained_workdir
from vivit_jax.cli import predict as command
from vivit_jax.data.ingest import video_io
from vivit_jax.serving import predict as inference


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return trained_workdir(tmp_path_factory)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  """good1.mp4, good2.avi, an empty file, garbage, text named .mp4 and a truncated .mkv, in one directory."""
  root = tmp_path_factory.mktemp('predict_cli_videos')
  rng = np.random.default_rng(0)
  video_io.write_video(str(root / 'good1.mp4'), rng.integers(0, 256, (20, 24, 32, 3), dtype=np.uint8), fps=10)
  video_io.write_video(str(root / 'good2.avi'), rng.integers(0, 256, (25, 24, 32, 3), dtype=np.uint8), fps=10)
  video_io.write_video(str(root / 'partial.mkv'), rng.integers(0, 256, (60, 24, 32, 3), dtype=np.uint8), fps=10)
  data = (root / 'partial.mkv').read_bytes()
  (root / 'partial.mkv').write_bytes(data[:len(data) // 2])
  (root / 'empty.mp4').write_bytes(b'')
  (root / 'garbage.webm').write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
  (root / 'text.mp4').write_text('this is not a video\n')
  return root


def run(argv):
  """vivit-predict's exit status."""
  return exit_status(command.main, argv)


def error_line(capsys):
  return only_error_line(capsys.readouterr().err)


@pytest.mark.parametrize('flag,value,message', [
    ('--top_k', '0', "argument --top_k: expected a positive integer, got '0'"),
    ('--top_k', '2.5', "argument --top_k: expected a positive integer, got '2.5'"),
    ('--window', '0', "argument --window: expected a positive number, got '0'"),
    ('--window', '-2', 'argument --window: expected a positive number'),
    ('--window', 'nan', 'argument --window: expected a positive number'),
    ('--fps', '0', 'argument --fps: expected a positive number'),
    ('--fps', 'inf', 'argument --fps: expected a positive number'),
    ('--fps', '5000', '--fps must be a frame rate in (0, 1000]; got 5000.0'),
    ('--batch_size', '0', "argument --batch_size: expected a positive integer, got '0'"),
])
def test_flags_are_checked_before_the_checkpoint_is_loaded(videos, tmp_path, capsys, flag, value, message):
  # A checkpoint that does not exist: had it been loaded first, the error would name it instead.
  assert run([f'--checkpoint={tmp_path / "no_checkpoint"}', f'{flag}={value}', str(videos / 'good1.mp4')]) == 2
  line = error_line(capsys)
  assert message in line and 'no_checkpoint' not in line


def test_paths_are_checked_before_the_checkpoint_is_loaded(videos, tmp_path, capsys):
  missing = tmp_path / 'no_checkpoint'
  assert run([f'--checkpoint={missing}', str(videos / 'good1.mp4'), str(tmp_path / 'nope.mp4')]) == 2
  assert error_line(capsys) == f'error: VIDEO|DIR {tmp_path / "nope.mp4"} does not exist'
  assert run([f'--checkpoint={missing}', f'--output={tmp_path}', str(videos / 'good1.mp4')]) == 2
  assert error_line(capsys) == f'error: --output {tmp_path} is a directory; expected a file name'
  under_a_file = videos / 'good1.mp4' / 'out.jsonl'
  assert run([f'--checkpoint={missing}', f'--output={under_a_file}', str(videos / 'good1.mp4')]) == 2
  assert error_line(capsys) == f'error: --output {under_a_file}: {videos / "good1.mp4"} is a file, not a directory'
  video = str(videos / 'good1.mp4')
  assert run([f'--checkpoint={missing}', f'--output={video}', str(videos)]) == 2
  assert 'is one of the input videos' in error_line(capsys)
  assert os.path.getsize(video) > 0


def test_an_output_in_a_new_directory_is_made(workdir, videos, tmp_path):
  output = tmp_path / 'new' / 'dir' / 'out.jsonl'
  assert run([f'--checkpoint={workdir}', f'--output={output}', str(videos / 'good1.mp4')]) == 0
  assert list(inference.load_predictions(str(output))) == [str(videos / 'good1.mp4')]


def test_one_bad_file_is_reported_and_the_others_are_predicted(workdir, videos, tmp_path, capsys):
  output = tmp_path / 'out.jsonl'
  code = command.main([f'--checkpoint={workdir}', '--top_k=2', f'--output={output}', str(videos)])
  assert code == 1  # Some files failed: not 0, though the others were predicted.
  results = inference.load_predictions(str(output))
  assert list(results) == [str(videos / name) for name in ('empty.mp4', 'garbage.webm', 'good1.mp4', 'good2.avi',
                                                           'partial.mkv', 'text.mp4')]
  err = capsys.readouterr().err
  for name in ('empty.mp4', 'garbage.webm', 'text.mp4'):
    assert set(results[str(videos / name)]) == {'error'}
    assert f'error: {videos / name}: {results[str(videos / name)]["error"]}' in err.splitlines()
  assert 'empty file' in results[str(videos / 'empty.mp4')]['error']
  assert 'not a video container' in results[str(videos / 'text.mp4')]['error']
  for name in ('good1.mp4', 'good2.avi', 'partial.mkv'):
    assert len(results[str(videos / name)]['top_k']) == 2
  assert 'warning' not in results[str(videos / 'good1.mp4')]
  partial = results[str(videos / 'partial.mkv')]
  assert 'of 60 declared frames' in partial['warning'] and f'warning: {videos / "partial.mkv"}: partial' in err
  assert '3 of 6 files predicted, 3 failed' in err


def test_every_file_predicted_exits_0_and_no_video_exits_1(workdir, videos, tmp_path, capsys):
  assert command.main([f'--checkpoint={workdir}', str(videos / 'good1.mp4'), str(videos / 'good2.avi')]) == 0
  (tmp_path / 'notes.txt').write_text('no video here')
  assert command.main([f'--checkpoint={workdir}', str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert f'warning: {tmp_path}: no .mp4' in err and 'error: no video file' in err


def test_output_keeps_every_finished_file_when_a_later_one_kills_the_run(workdir, videos, tmp_path, monkeypatch):
  predict_file = inference.predict_file

  def dies_on_the_third(predictor, path, *args):
    if path.endswith('good2.avi'):
      raise KeyboardInterrupt  # As a kill would: not an error of that file.
    return predict_file(predictor, path, *args)

  monkeypatch.setattr(inference, 'predict_file', dies_on_the_third)
  output = tmp_path / 'out.jsonl'
  with pytest.raises(KeyboardInterrupt):
    command.main([f'--checkpoint={workdir}', f'--output={output}', str(videos / 'good1.mp4'),
                  str(videos / 'empty.mp4'), str(videos / 'good2.avi'), str(videos / 'partial.mkv')])
  results = inference.load_predictions(str(output))
  assert list(results) == [str(videos / 'good1.mp4'), str(videos / 'empty.mp4')]
  assert len(results[str(videos / 'good1.mp4')]['top_k']) == 5 and 'error' in results[str(videos / 'empty.mp4')]


def test_an_output_that_fails_mid_run_is_one_error_line(workdir, videos, tmp_path, monkeypatch, capsys):
  def full_disk(self, file, result):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(inference.PredictionWriter, 'write', full_disk)
  output = tmp_path / 'out.jsonl'
  assert command.main([f'--checkpoint={workdir}', f'--output={output}', str(videos / 'good1.mp4')]) == 2
  assert error_line(capsys) == (f'error: --output={output}: cannot write the result of {videos / "good1.mp4"} '
                                '(No space left on device); the 0 files before it are in it')


def test_an_output_whose_close_fails_too_is_still_one_error_line(workdir, videos, tmp_path, monkeypatch, capsys):
  def full_disk(*args):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(inference.PredictionWriter, 'close', full_disk)
  output = tmp_path / 'out.jsonl'
  assert command.main([f'--checkpoint={workdir}', f'--output={output}', str(videos / 'good1.mp4')]) == 2
  assert error_line(capsys) == f'error: --output={output}: cannot finish writing it (No space left on device)'
  monkeypatch.setattr(inference.PredictionWriter, 'write', full_disk)  # Both fail: the write's error alone.
  assert command.main([f'--checkpoint={workdir}', f'--output={output}', str(videos / 'good1.mp4')]) == 2
  assert 'cannot write the result of' in error_line(capsys)


def test_an_output_that_is_a_device_is_refused_before_any_work(workdir, videos, capsys):
  assert command.main([f'--checkpoint={workdir}', '--output=/dev/full', str(videos / 'good1.mp4')]) == 2
  assert error_line(capsys).startswith('error: --output /dev/full is a character device, not a regular file')
