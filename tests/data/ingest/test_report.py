"""report.json tells the truth: every video file found is written, partial or skipped, once; bad settings and bad
paths are one `error:` line."""

import json
import os

import pytest

from tests.data.ingest.test_prepare import read_split
from tests.data.ingest.test_video_io import corrupt_payload, moving_square, noise, truncate, write_tagged
from vivit_jax.cli import prepare_data
from vivit_jax.data import DataError
from vivit_jax.data.ingest import builders, prepare, video_io

SETTINGS = prepare.EncodeSettings(fps=5, short_side=16)
QUIET = dict(shards=1, log=lambda _: None)


def _partial_mp4(path: str) -> str:
  """100 frames declared by an index at the front, about 30 left after the cut (a half-finished download)."""
  whole = write_tagged(path + '.whole.mp4', noise(100), options={'movflags': 'faststart'})
  truncate(whole, path, 0.3)
  os.remove(whole)
  return path


@pytest.fixture(scope='module')
def download(tmp_path_factory):
  """A folder download with good, colliding, partial, corrupt, empty, garbage, linked and stray files."""
  root = tmp_path_factory.mktemp('download')
  for name in ('train/cat/good.mp4', 'train/cat/x.mp4', 'train/cat/x.avi', 'validation/cat/v.mp4',
               'stray/s.mp4'):
    os.makedirs(os.path.dirname(root / name), exist_ok=True)
    video_io.write_video(str(root / name), moving_square(6))
  os.makedirs(root / 'train' / 'dog')
  _partial_mp4(str(root / 'train' / 'dog' / 'partial.mp4'))
  video_io.write_video(str(root / 'train' / 'dog' / 'corrupt.mp4'), moving_square(12))
  corrupt_payload(str(root / 'train' / 'dog' / 'corrupt.mp4'))
  (root / 'train' / 'dog' / 'empty.mp4').write_bytes(b'')
  (root / 'train' / 'dog' / 'garbage.webm').write_text('not a video\n' * 40)
  os.symlink(os.path.join('..', 'cat', 'good.mp4'), root / 'train' / 'dog' / 'link.mp4')  # good.mp4 again.
  os.symlink('..', root / 'train' / 'dog' / 'loop')  # A directory loop.
  os.symlink('nowhere.mp4', root / 'train' / 'dog' / 'gone.mp4')  # A link that leads nowhere.
  (root / 'README.txt').write_text('notes')
  return str(root)


@pytest.fixture(scope='module')
def report(download, tmp_path_factory):
  return prepare.prepare_dmvr('folder', download, str(tmp_path_factory.mktemp('out')), SETTINGS, **QUIET)


def test_every_file_found_is_written_partial_or_skipped_once(report):
  files = report['files']
  assert files == {'found': 10, 'written': 4, 'partial': 1, 'skipped': 5, 'other_files': 1}
  assert files['written'] + files['partial'] + files['skipped'] == files['found']
  assert {(u['kind'], os.path.basename(u['path'])) for u in report['unused_files']} == {
      ('unannotated', 's.mp4'), ('unreadable', 'gone.mp4')}


def test_partial_video_is_stored_and_listed_with_both_counts(report):
  train = report['splits']['train']
  (partial,) = train['partial']
  assert partial['video_id'] == os.path.join('train', 'dog', 'partial')
  assert partial['declared_frames'] == 100 and 1 <= partial['decoded_frames'] <= 35
  assert (train['written'], train['num_partial'], train['records']) == (3, 1, 4)
  assert report['examples_per_subset'] == {'train': 4, 'validation': 1}
  records = read_split(report['output_dir'], 'train', 1)
  assert len(records[os.path.join('train', 'dog', 'partial.mp4')]['shapes']) == (partial['decoded_frames'] + 1) // 2


def test_same_name_files_are_both_kept_and_a_linked_file_is_written_once(report):
  records = read_split(report['output_dir'], 'train', 1)
  cat = os.path.join('train', 'cat')
  assert sorted(records) == [os.path.join(cat, 'good.mp4'), os.path.join(cat, 'x.avi'), os.path.join(cat, 'x.mp4'),
                             os.path.join('train', 'dog', 'partial.mp4')]
  reasons = {s['video_id']: s['reason'] for s in report['splits']['train']['skipped']}
  assert reasons[os.path.join('train', 'dog', 'link')].startswith(
      f"same file as video '{os.path.join(cat, 'good')}' of split 'train'")
  assert sorted(reasons) == [os.path.join('train', 'dog', name) for name in ('corrupt', 'empty', 'garbage', 'link')]


def test_files_of_a_split_left_out_and_a_second_file_for_one_id(tmp_path):
  root = tmp_path / 'kinetics'
  os.makedirs(root)
  (root / 'k.csv').write_text('label,youtube_id,time_start,time_end,split\nrun,aaa,0,10,train\nrun,bbb,0,10,val\n')
  for name in ('aaa_000000_000010.mp4', 'aaa_000000_000010.webm', 'bbb_000000_000010.mp4'):
    video_io.write_video(str(root / name), moving_square(4))
  report = prepare.prepare_dmvr('kinetics', str(root), str(tmp_path / 'out'), SETTINGS, splits=['train'], **QUIET)
  assert report['files'] == {'found': 3, 'written': 1, 'partial': 0, 'skipped': 2, 'other_files': 1}
  assert sorted((u['kind'], os.path.basename(u['path']), u['reason']) for u in report['unused_files']) == [
      ('other_split', 'bbb_000000_000010.mp4', "annotated in split 'validation', which --splits leaves out"),
      ('same_video_id', 'aaa_000000_000010.webm',
       f"another file of the same video id was used: {root / 'aaa_000000_000010.mp4'}")]


def test_tfds_report_counts_partial_and_every_file(tmp_path):
  root = tmp_path / 'folder'
  os.makedirs(root / 'train' / 'cat')
  video_io.write_video(str(root / 'train' / 'cat' / 'a.mp4'), moving_square(6))
  _partial_mp4(str(root / 'train' / 'cat' / 'b.mp4'))
  os.symlink('a.mp4', root / 'train' / 'cat' / 'c.mp4')
  summary = builders.prepare_tfds('folder', str(root), str(tmp_path / 'tfds'), fps=5, short_side=16)
  assert summary['splits'] == {'train': 2} and summary['partial'] == 1 and summary['skipped'] == 1
  assert summary['files'] == {'found': 2, 'written': 1, 'partial': 1, 'skipped': 0, 'other_files': 0}
  with open(summary['report']) as f:
    (partial,) = json.load(f)['partial']
  assert partial['declared_frames'] == 100 and partial['decoded_frames'] < 100


@pytest.mark.parametrize('flag', ['--fps=-1', '--fps=nan', '--fps=1e9', '--short_side=-3', '--short_side=12.5',
                                  '--jpeg_quality=0', '--jpeg_quality=101', '--workers=0', '--workers=two',
                                  '--shards=0', '--examples_per_shard=-1'])
def test_bad_flag_values_stop_at_parsing_naming_the_flag(flag, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    prepare_data.main(['--layout=folder', f'--input={tmp_path}', f'--output={tmp_path / "out"}', flag])
  assert exit_info.value.code == 2
  error = capsys.readouterr().err
  assert f"argument {flag.split('=')[0]}: expected" in error and repr(flag.split('=')[1]) in error
  assert 'Traceback' not in error and not os.path.exists(tmp_path / 'out')


def test_settings_are_checked_in_the_library_too():
  with pytest.raises(DataError, match=r'jpeg_quality: expected an integer in \[1, 100\]; got 0'):
    prepare.EncodeSettings(jpeg_quality=0)
  with pytest.raises(DataError, match='fps: expected'):
    prepare.EncodeSettings(fps=float('nan'))
  with pytest.raises(DataError, match=r'workers: expected an integer in \[1, 1024\]; got 0'):
    prepare.prepare('folder', '.', '.', workers=0)


def test_expected_failures_are_one_error_line(tmp_path, capsys):
  taken = tmp_path / 'taken'
  taken.write_text('a file')
  os.makedirs(tmp_path / 'ssv2')
  (tmp_path / 'ssv2' / 'labels.json').write_text('[1, 2]')
  cases = [(['--layout=folder', f'--input={tmp_path / "absent"}', f'--output={tmp_path / "o1"}'],
            f'error: input directory {tmp_path / "absent"}: not found'),
           (['--layout=folder', f'--input={tmp_path}', f'--output={taken}'], f'error: output directory {taken}'),
           (['--layout=ssv2', f'--input={tmp_path / "ssv2"}', f'--output={tmp_path / "o2"}'],
            f'error: {tmp_path / "ssv2" / "labels.json"}: expected {{"class name": "index", ...}}')]
  for argv, expected in cases:
    assert prepare_data.main(argv + ['--workers=1']) == 2
    error = capsys.readouterr().err
    assert error.startswith(expected) and error.count('\n') == 1, error


def test_bad_splits_and_csv_rows_are_named(tmp_path, capsys):
  with pytest.raises(SystemExit):
    prepare_data.main(['--layout=folder', f'--input={tmp_path}', f'--output={tmp_path / "o"}', '--splits=train,dev'])
  assert "argument --splits: expected comma-separated splits among train, validation (or val), test; got " \
         "'train,dev'" in capsys.readouterr().err
  os.makedirs(tmp_path / 'k')
  (tmp_path / 'k' / 'train.csv').write_bytes(b'label,youtube_id,time_start,time_end,split\nrun,a,0,1,train,extra\n'
                                             b'\xff\xfe,b,0,1,train\n')
  assert prepare_data.main(['--layout=kinetics', f'--input={tmp_path / "k"}', f'--output={tmp_path / "o"}',
                            '--workers=1']) == 2
  assert capsys.readouterr().err.startswith(f'error: {tmp_path / "k" / "train.csv"}: cannot read it as a UTF-8 CSV')
