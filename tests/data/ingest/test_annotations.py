"""annotations: Kinetics CSVs, Something-Something v2 JSON and folder layouts read from tiny trees."""

import json
import logging
import os

import pytest

from vivit_jax.data.base import DataError
from vivit_jax.data.ingest import annotations
from vivit_jax.data.ingest.annotations import VideoEntry


def touch(path, content: bytes = b'x') -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(content)
  return str(path)


def write_text(path, text: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  return str(path)


@pytest.fixture
def kinetics(tmp_path):
  """K400-style CSVs with a split column, a K700-style validate.csv without one, an unlabeled test.csv."""
  root = tmp_path / 'k400'
  write_text(root / 'annotations' / 'train.csv', 'label,youtube_id,time_start,time_end,split\n'
             'abseiling,aaa,10,20,train\n'
             '"passing American football (in game)",bbb,0,10,train\n'
             'abseiling,ccc,5,15,train\n')
  write_text(root / 'annotations' / 'validate.csv', 'label,youtube_id,time_start,time_end\n'
             'zumba,ddd,30,40\n')
  write_text(root / 'annotations' / 'test.csv', 'youtube_id,time_start,time_end,split\neee,1,11,test\n')
  touch(root / 'train' / 'abseiling' / 'aaa_000010_000020.mp4')  # Split and class folders.
  touch(root / 'bbb_000000_000010.webm')  # Flat.
  touch(root / 'val' / 'ddd_000030_000040.avi')
  touch(root / 'test' / 'eee.mkv')  # Only the YouTube id.
  write_text(root / 'notes.csv', 'name,value\nx,1\n')  # Not an annotation CSV: ignored.
  return str(root)


def test_kinetics_entries(kinetics):
  entries = annotations.kinetics_entries(kinetics)
  assert sorted(entries) == ['test', 'train', 'validation']
  train = entries['train']
  assert [e.video_id for e in train] == ['aaa_000010_000020', 'bbb_000000_000010', 'ccc_000005_000015']
  assert train[0] == VideoEntry('train', 'aaa_000010_000020',
                                os.path.join(kinetics, 'train', 'abseiling', 'aaa_000010_000020.mp4'),
                                'abseiling', 10.0, 20.0)
  assert train[1].label == 'passing American football (in game)'
  assert train[1].path == os.path.join(kinetics, 'bbb_000000_000010.webm')
  assert train[2].path is None  # Annotated, no file.
  validation, = entries['validation']
  assert (validation.label, validation.path) == ('zumba', os.path.join(kinetics, 'val', 'ddd_000030_000040.avi'))
  test, = entries['test']
  assert (test.label, test.path, test.start) == (None, os.path.join(kinetics, 'test', 'eee.mkv'), 1.0)


def test_kinetics_split_selection_and_errors(kinetics, tmp_path):
  assert sorted(annotations.kinetics_entries(kinetics, splits=['val', 'test'])) == ['test', 'validation']
  with pytest.raises(ValueError, match="unknown split 'dev'"):
    annotations.kinetics_entries(kinetics, splits=['dev'])
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(FileNotFoundError, match='empty: no Kinetics annotation CSV'):
    annotations.kinetics_entries(str(tmp_path / 'empty'))
  with pytest.raises(FileNotFoundError, match='input directory not found'):
    annotations.kinetics_entries(str(tmp_path / 'absent'))


def test_label_names_are_sorted_and_split_independent(kinetics):
  entries = annotations.kinetics_entries(kinetics)
  names = annotations.label_names(entries)
  assert names == ['abseiling', 'passing American football (in game)', 'zumba']
  reordered = {split: list(reversed(entries[split])) for split in reversed(sorted(entries))}
  assert annotations.label_names(reordered) == names


@pytest.fixture
def ssv2(tmp_path):
  root = tmp_path / 'ssv2'
  labels = {'Holding something': '0', 'Moving something up': '1', 'Pushing something from left to right': '2'}
  write_text(root / 'labels' / 'labels.json', json.dumps(labels))
  write_text(root / 'labels' / 'train.json', json.dumps([
      {'id': '12', 'label': 'holding a pen', 'template': 'Holding [something]', 'placeholders': ['a pen']},
      {'id': '7', 'label': 'moving a cup up', 'template': 'Moving [something] up', 'placeholders': ['a cup']},
      {'id': '9', 'label': 'spinning a top', 'template': 'Spinning [something]', 'placeholders': ['a top']},
  ]))
  write_text(root / 'labels' / 'validation.json', json.dumps([
      {'id': '3', 'label': 'holding a box', 'template': 'Holding [something]', 'placeholders': ['a box']}]))
  write_text(root / 'labels' / 'test.json', json.dumps([{'id': '5'}]))
  for video_id in ('12', '7', '3', '5'):  # '9' has no video.
    touch(root / 'videos' / f'{video_id}.webm')
  return str(root)


def test_ssv2_entries(ssv2, caplog):
  with caplog.at_level(logging.WARNING):
    entries = annotations.ssv2_entries(ssv2)
  assert [(e.video_id, e.label) for e in entries['train']] == [
      ('12', 'Holding something'), ('7', 'Moving something up'), ('9', 'Spinning something')]
  assert entries['train'][0].path == os.path.join(ssv2, 'videos', '12.webm')
  assert entries['train'][2].path is None
  assert "'Spinning something', which labels.json does not list" in caplog.text
  assert [(e.video_id, e.label) for e in entries['validation']] == [('3', 'Holding something')]
  assert [(e.video_id, e.label) for e in entries['test']] == [('5', None)]
  assert sorted(annotations.ssv2_entries(ssv2, splits=['validation'])) == ['validation']
  # Every class of labels.json gets an index, also 'Pushing ...' which has no video.
  assert annotations.label_names(entries, 'ssv2', ssv2) == [
      'Holding something', 'Moving something up', 'Pushing something from left to right']


def test_ssv2_without_labels_json(tmp_path):
  write_text(tmp_path / 'train.json', '[]')
  with pytest.raises(FileNotFoundError, match='no labels.json'):
    annotations.ssv2_entries(str(tmp_path))


def test_folder_tree(tmp_path):
  root = tmp_path / 'videos'
  cat = touch(root / 'train' / 'cat' / 'a.mp4')
  touch(root / 'train' / 'dog' / 'b.avi')
  touch(root / 'train' / 'dog' / 'readme.txt')
  touch(root / 'val' / 'dog' / 'c.webm')
  touch(root / 'test' / 'd.mp4')
  touch(root / 'other' / 'e.mp4')  # Not a split folder.
  entries = annotations.folder_entries(str(root))
  assert sorted(entries) == ['test', 'train', 'validation']
  assert entries['train'][0] == VideoEntry('train', os.path.join('train', 'cat', 'a'), cat, 'cat')
  assert [(e.video_id, e.label) for e in entries['train']] == [
      (os.path.join('train', 'cat', 'a'), 'cat'), (os.path.join('train', 'dog', 'b'), 'dog')]
  assert [(e.video_id, e.label) for e in entries['validation']] == [(os.path.join('val', 'dog', 'c'), 'dog')]
  assert [(e.video_id, e.label) for e in entries['test']] == [(os.path.join('test', 'd'), None)]
  assert annotations.label_names(entries) == ['cat', 'dog']


def test_folder_csv(tmp_path):
  root = tmp_path / 'videos'
  first = touch(root / 'clips' / 'one.mp4')
  write_text(root / 'lists' / 'train.csv', 'path,label\n../clips/one.mp4,jump\n../clips/two.mp4,run\n')
  write_text(root / 'lists' / 'test.csv', 'path\n../clips/one.mp4\n')
  entries = annotations.folder_entries(str(root))
  assert entries['train'] == [VideoEntry('train', os.path.join('clips', 'one'), first, 'jump'),
                              VideoEntry('train', os.path.join('clips', 'two'), None, 'run')]
  assert entries['test'] == [VideoEntry('test', os.path.join('clips', 'one'), first, None)]
  assert annotations.label_names(entries) == ['jump', 'run']


def test_folder_without_videos(tmp_path):
  touch(tmp_path / 'loose.mp4')
  with pytest.raises(FileNotFoundError, match=r'neither \{split\}/\{class\}/'):
    annotations.folder_entries(str(tmp_path))


def test_folder_csv_without_a_path_column_names_the_file_and_its_columns(tmp_path):
  touch(tmp_path / 'v1.mp4')
  write_text(tmp_path / 'train.csv', 'file,cls\nv1.mp4,a\n')
  write_text(tmp_path / 'lists' / 'val.csv', 'file;class\nv1.mp4;a\n')
  write_text(tmp_path / 'notes.csv', 'anything\n')  # Not named after a split: not an annotation.
  with pytest.raises(DataError) as raised:
    annotations.folder_entries(str(tmp_path))
  assert str(raised.value) == (
      f"{tmp_path}: found no {{split}}/{{class}}/ video folders, and train.csv has columns ['file', 'cls']; "
      "lists/val.csv has columns ['file;class'] (a ';'-separated header? columns must be comma-separated); "
      "expected a 'path' column (and 'label' for labelled videos)")


def test_layouts_registry():
  assert annotations.LAYOUTS == {'kinetics': annotations.kinetics_entries, 'ssv2': annotations.ssv2_entries,
                                 'folder': annotations.folder_entries}


def test_folder_keeps_both_files_of_one_name(tmp_path):
  root = tmp_path / 'videos'
  mp4 = touch(root / 'train' / 'cat' / 'x.mp4')
  avi = touch(root / 'train' / 'cat' / 'x.avi')
  touch(root / 'train' / 'cat' / 'y.mp4')
  touch(root / 'train' / 'cat' / 'x.mp4.webm')  # Its plain id would be the first file's full id.
  ids = {e.video_id: e.path for e in annotations.folder_entries(str(root))['train']}
  cat = os.path.join('train', 'cat')
  assert sorted(ids) == [os.path.join(cat, name) for name in ('x.avi', 'x.mp4', 'x.mp4.webm', 'y')]
  assert (ids[os.path.join(cat, 'x.mp4')], ids[os.path.join(cat, 'x.avi')]) == (mp4, avi)


def test_folder_csv_listing_a_file_twice_gives_one_entry(tmp_path, caplog):
  root = tmp_path / 'videos'
  touch(root / 'clips' / 'one.mp4')
  write_text(root / 'train.csv', 'path,label\nclips/one.mp4,jump\n./clips/../clips/one.mp4,run\n')
  with caplog.at_level(logging.WARNING):
    entries = annotations.folder_entries(str(root))
  assert [(e.video_id, e.label) for e in entries['train']] == [(os.path.join('clips', 'one'), 'jump')]
  assert "listed again with label 'run'; keeping label 'jump'" in caplog.text


def test_duplicate_files_are_written_once_in_split_order(tmp_path):
  root = tmp_path / 'videos'
  first = touch(root / 'a.mp4')
  os.symlink('a.mp4', root / 'b.mp4')
  os.link(first, root / 'c.mp4')
  entries = {'validation': [VideoEntry('validation', 'v', first, 'x')],
             'train': [VideoEntry('train', 't2', str(root / 'c.mp4'), 'x'),
                       VideoEntry('train', 't1', str(root / 'b.mp4'), 'x'), VideoEntry('train', 'none', None, 'x')]}
  duplicates = annotations.duplicate_files(entries)
  assert sorted(duplicates) == [('train', 't2'), ('validation', 'v')]  # 't1' (train, first id) keeps it.
  assert duplicates[('validation', 'v')].startswith("same file as video 't1' of split 'train'")


def test_malformed_ssv2_files_are_named(tmp_path):
  write_text(tmp_path / 'labels.json', '["Holding something"]')
  with pytest.raises(ValueError, match=r'labels\.json: expected \{"class name": "index", \.\.\.\}; found a JSON list'):
    annotations.ssv2_entries(str(tmp_path))
  write_text(tmp_path / 'labels.json', '{"Holding something": "zero"}')
  with pytest.raises(ValueError, match=r'labels\.json: every class index must be an integer'):
    annotations.ssv2_entries(str(tmp_path))
  write_text(tmp_path / 'labels.json', '{"Holding something": "0"}')
  write_text(tmp_path / 'train.json', '[{"label": "no id"}]')
  with pytest.raises(ValueError, match=r'train\.json: item 0: expected an object with an "id"'):
    annotations.ssv2_entries(str(tmp_path))


def test_csv_row_with_extra_cells_is_read(tmp_path):
  write_text(tmp_path / 'k.csv', 'label,youtube_id,time_start,time_end,split\nrun,a,0,10,train,extra,cells\n')
  (entry,) = annotations.kinetics_entries(str(tmp_path))['train']
  assert (entry.video_id, entry.label) == ('a_000000_000010', 'run')
