"""prepare (dmvr): tiny downloads with real and broken videos, read back with plain TensorFlow parsing."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.data.ingest.test_video_io import corrupt_payload, moving_square, truncate
from vivit_jax.cli import prepare_data
from vivit_jax.data.ingest import prepare, video_io

PREPARE_ARGS = dict(settings=prepare.EncodeSettings(fps=5, short_side=16, jpeg_quality=90), shards=2, log=print)


def parse_plain(serialized):
  """Scenic's keys, parsed here without vivit_jax's parser."""
  context, sequence = tf.io.parse_single_sequence_example(
      serialized,
      context_features={'clip/label/index': tf.io.VarLenFeature(tf.int64),
                        'clip/label/text': tf.io.VarLenFeature(tf.string),
                        'video/filename': tf.io.FixedLenFeature([], tf.string, default_value=''),
                        'clip/start/timestamp': tf.io.VarLenFeature(tf.int64),
                        'clip/end/timestamp': tf.io.VarLenFeature(tf.int64)},
      sequence_features={'image/encoded': tf.io.FixedLenSequenceFeature([], tf.string)})
  dense = {k: tf.sparse.to_dense(v).numpy().tolist() for k, v in context.items() if isinstance(v, tf.SparseTensor)}
  frames = sequence['image/encoded'].numpy()
  return {'filename': context['video/filename'].numpy().decode(), 'label_index': dense['clip/label/index'],
          'label_text': [t.decode() for t in dense['clip/label/text']],
          'start': dense['clip/start/timestamp'], 'end': dense['clip/end/timestamp'],
          'shapes': [tf.io.decode_jpeg(f).shape.as_list() for f in frames]}


def read_split(output_dir, split, num_shards):
  """{filename: record} over the split's shards, each record with the index of its shard."""
  records = {}
  for shard in range(num_shards):
    path = os.path.join(output_dir, f'{split}-{shard:05d}-of-{num_shards:05d}')
    for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
      record = parse_plain(serialized)
      records[record['filename']] = dict(record, shard=shard)
  return records


def mtimes(output_dir):
  return {n: os.stat(os.path.join(output_dir, n)).st_mtime_ns for n in os.listdir(output_dir) if '-of-' in n}


@pytest.fixture(scope='module')
def kinetics(tmp_path_factory):
  """Train: 3 good videos (mp4 in a class folder, flat webm, avi), a zero-byte file, a truncated mp4, a text
  file named .mp4, an mp4 whose frame data is garbage and a row without a file; validation: one mp4; test: one
  unlabeled webm."""
  root = tmp_path_factory.mktemp('kinetics')
  rows = [('jump', 'good1', 12, 'train/jump/{}.mp4'), ('run', 'good2', 8, '{}.webm'),
          ('run', 'good3', 10, 'train/run/{}.avi'), ('jump', 'zero', 0, 'train/jump/{}.mp4'),
          ('run', 'trunc', 12, 'train/run/{}.mp4'), ('jump', 'garbage', 0, '{}.mp4'),
          ('run', 'corrupt', 12, 'train/run/{}.mp4'), ('run', 'missing', 0, None)]
  os.makedirs(root / 'train' / 'jump')
  os.makedirs(root / 'train' / 'run')
  lines = ['label,youtube_id,time_start,time_end,split']
  for label, youtube_id, num_frames, pattern in rows:
    lines.append(f'{label},{youtube_id},1,11,train')
    if pattern:
      path = str(root / pattern.format(f'{youtube_id}_000001_000011'))
      if num_frames:
        video_io.write_video(path, moving_square(num_frames), fps=10)
      else:
        with open(path, 'w') as f:
          f.write('' if youtube_id == 'zero' else 'not a video\n' * 50)
  trunc = str(root / 'train' / 'run' / 'trunc_000001_000011.mp4')
  truncate(trunc, trunc + '.part', 0.3)
  os.replace(trunc + '.part', trunc)
  corrupt_payload(str(root / 'train' / 'run' / 'corrupt_000001_000011.mp4'))
  lines += ['jump,val1,0,10,val']
  video_io.write_video(str(root / 'val1_000000_000010.mp4'), moving_square(6), fps=10)
  (root / 'train.csv').write_text('\n'.join(lines) + '\n')
  (root / 'test.csv').write_text('youtube_id,time_start,time_end,split\ntest1,0,10,test\n')
  video_io.write_video(str(root / 'test1_000000_000010.webm'), moving_square(4), fps=10)
  return str(root)


@pytest.fixture(scope='module')
def prepared(kinetics, tmp_path_factory):
  output = str(tmp_path_factory.mktemp('dmvr'))
  report = prepare.prepare_dmvr('kinetics', kinetics, output, workers=1, **PREPARE_ARGS)
  return output, report


def test_records_read_back_with_plain_tensorflow(prepared):
  output, _ = prepared
  with open(os.path.join(output, 'label_map.json')) as f:
    assert json.load(f) == {'names': ['jump', 'run'], 'index': {'jump': 0, 'run': 1}}
  train = read_split(output, 'train', 2)
  assert sorted(train) == ['good2_000001_000011.webm', 'train/jump/good1_000001_000011.mp4',
                           'train/run/good3_000001_000011.avi']  # Every good video, nothing else.
  good1 = train['train/jump/good1_000001_000011.mp4']
  assert (good1['label_index'], good1['label_text']) == ([0], ['jump'])
  assert (good1['start'], good1['end']) == ([1_000_000], [11_000_000])
  assert good1['shapes'] == [[16, 24, 3]] * 6  # 12 frames at 10 fps -> 6 at 5 fps, short side 16.
  assert train['good2_000001_000011.webm']['label_index'] == [1]
  assert len(train['good2_000001_000011.webm']['shapes']) == 4
  assert len(train['train/run/good3_000001_000011.avi']['shapes']) == 5
  assert {r['shard'] for r in train.values()} == {0, 1}
  validation = read_split(output, 'validation', 2)
  assert [(r['label_index'], len(r['shapes'])) for r in validation.values()] == [([0], 3)]
  test = read_split(output, 'test', 2)
  assert [(r['label_index'], r['label_text']) for r in test.values()] == [([], [])]  # Unlabeled: no keys.


def test_report_lists_every_skipped_video_with_its_reason(prepared, kinetics):
  output, report = prepared
  with open(os.path.join(output, 'report.json')) as f:
    assert json.load(f) == report
  train = report['splits']['train']
  assert (train['annotated'], train['written'], train['num_skipped']) == (8, 3, 5)
  assert train['table'] == 'train@2' and report['examples_per_subset'] == {
      'test': 1, 'train': 3, 'validation': 1}
  assert [s['name'] for s in train['shards']] == ['train-00000-of-00002', 'train-00001-of-00002']
  assert sum(s['written'] for s in train['shards']) == 3
  reasons = {s['video_id'].split('_')[0]: s['reason'] for s in train['skipped']}
  assert reasons['zero'] == 'empty file (0 bytes)'
  assert reasons['trunc'].startswith('not a video container') and 'moov atom not found' in reasons['trunc']
  assert reasons['garbage'].startswith('not a video container')
  assert reasons['corrupt'].startswith('decoding failed at frame 0: Invalid data found')
  assert reasons['missing'] == 'no video file found for this annotation'
  skipped_paths = {s['video_id'].split('_')[0]: s['path'] for s in train['skipped']}
  assert skipped_paths['missing'] is None and skipped_paths['zero'].startswith(kinetics)
  assert report['totals'] == {'annotated': 10, 'written': 5, 'num_partial': 0, 'num_skipped': 5}
  # Every video file once: 5 written, the empty, truncated, garbage and corrupt ones skipped; 2 CSVs besides.
  assert report['files'] == {'found': 9, 'written': 5, 'partial': 0, 'skipped': 4, 'other_files': 2}
  assert report['unused_files'] == []


def test_parallel_workers_write_identical_shards(prepared, kinetics, tmp_path, capsys):
  output, report = prepared
  parallel = str(tmp_path / 'parallel')
  assert prepare.prepare_dmvr('kinetics', kinetics, parallel, workers=2, **PREPARE_ARGS) == dict(
      report, output_dir=parallel)
  for name in mtimes(output):
    with open(os.path.join(output, name), 'rb') as a, open(os.path.join(parallel, name), 'rb') as b:
      assert a.read() == b.read(), name
  console = capsys.readouterr().out
  assert 'videos/s' in console and 'ETA' in console
  assert 'skipped zero_000001_000011' in console and 'empty file (0 bytes)' in console


def test_interrupted_run_rebuilds_only_unfinished_shards(prepared, kinetics, tmp_path, capsys):
  output = str(tmp_path / 'resume')
  shutil.copytree(prepared[0], output)
  before = mtimes(output)
  with open(os.path.join(output, 'train-00001-of-00002'), 'rb') as f:
    content = f.read()
  # As if stopped while writing train shard 1: its temporary file is partial and the final name absent.
  os.replace(os.path.join(output, 'train-00001-of-00002'),
             os.path.join(output, prepare.STATE_DIR, 'train-00001-of-00002.tmp'))
  report = prepare.prepare_dmvr('kinetics', kinetics, output, workers=1, **PREPARE_ARGS)
  assert '5 already complete, 1 to write' in capsys.readouterr().out
  after = mtimes(output)
  assert {n for n in before if after[n] != before[n]} == {'train-00001-of-00002'}
  with open(os.path.join(output, 'train-00001-of-00002'), 'rb') as f:
    assert f.read() == content
  assert report == dict(prepared[1], output_dir=output)
  assert not os.path.exists(os.path.join(output, prepare.STATE_DIR, 'train-00001-of-00002.tmp'))


def test_fixed_video_rebuilds_its_shard(prepared, kinetics, tmp_path):
  source = str(tmp_path / 'source')
  shutil.copytree(kinetics, source)
  output = str(tmp_path / 'fixed')
  shutil.copytree(prepared[0], output)
  before = mtimes(output)
  video_io.write_video(os.path.join(source, 'train', 'jump', 'zero_000001_000011.mp4'), moving_square(12))
  report = prepare.prepare_dmvr('kinetics', source, output, workers=1, **PREPARE_ARGS)
  assert report['splits']['train']['written'] == 4
  fixed = read_split(output, 'train', 2)['train/jump/zero_000001_000011.mp4']
  changed = {n for n, t in mtimes(output).items() if t != before[n]}
  assert changed == {f'train-0000{fixed["shard"]}-of-00002'}  # Only the shard holding the fixed video.


def test_ssv2_end_to_end(tmp_path):
  root = tmp_path / 'ssv2'
  os.makedirs(root / 'videos')
  (root / 'labels.json').write_text(json.dumps({'Waving': '0', 'Dropping something': '1', 'Lifting': '2'}))
  (root / 'train.json').write_text(json.dumps([
      {'id': 1, 'label': 'dropping a pen', 'template': 'Dropping [something]', 'placeholders': ['a pen']},
      {'id': 2, 'label': 'spinning it', 'template': 'Spinning [something]', 'placeholders': ['it']}]))
  (root / 'test.json').write_text(json.dumps([{'id': 3}]))
  for video_id in (1, 2, 3):
    video_io.write_video(str(root / 'videos' / f'{video_id}.webm'), moving_square(4), fps=10)
  output = str(tmp_path / 'out')
  report = prepare.prepare_dmvr('ssv2', str(root), output, prepare.EncodeSettings(fps=None, short_side=None),
                                shards=1, log=lambda _: None)
  train = read_split(output, 'train', 1)
  assert [(r['label_index'], r['label_text'], len(r['shapes'])) for r in train.values()] == [
      ([0], ['Dropping something'], 4)]  # Sorted labels.json: Dropping, Lifting, Waving.
  assert report['splits']['train']['skipped'] == [{
      'video_id': '2', 'path': str(root / 'videos' / '2.webm'),
      'reason': "class 'Spinning something' is not in the label map"}]
  assert report['num_classes'] == 3 and read_split(output, 'test', 1)['videos/3.webm']['label_index'] == []


def test_folder_layout_through_the_command_line(tmp_path):
  root = tmp_path / 'folder'
  for split, label, name in [('train', 'cat', 'a'), ('train', 'dog', 'b'), ('train', 'dog', 'c'),
                             ('validation', 'cat', 'd')]:
    os.makedirs(root / split / label, exist_ok=True)
    video_io.write_video(str(root / split / label / f'{name}.mp4'), moving_square(4), fps=10)
  output = str(tmp_path / 'out')
  assert prepare_data.main(['--layout=folder', f'--input={root}', f'--output={output}', '--format=dmvr',
                       '--fps=0', '--short_side=0', '--splits=train', '--workers=1',
                       '--examples_per_shard=1']) == 0
  with open(os.path.join(output, 'report.json')) as f:
    report = json.load(f)
  assert report['tables'] == {'train': 'train@3'} and report['splits']['train']['written'] == 3
  train = read_split(output, 'train', 3)
  assert {k: v['label_index'] for k, v in train.items()} == {
      'train/cat/a.mp4': [0], 'train/dog/b.mp4': [1], 'train/dog/c.mp4': [1]}
  assert train['train/cat/a.mp4']['shapes'] == [[32, 48, 3]] * 4


def test_tfds_format_calls_the_builders(monkeypatch, tmp_path):
  from vivit_jax.data.ingest import builders  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(builders, 'prepare_tfds', lambda **kwargs: calls.append(kwargs) or {'ok': True})
  source, output = str(tmp_path), str(tmp_path / 'out')
  assert prepare.prepare('ssv2', source, output, 'tfds', fps=4, short_side=128, splits=['train'], workers=3) == {
      'ok': True}
  assert calls == [dict(layout='ssv2', input_dir=source, output_dir=output, fps=4, short_side=128,
                        splits=['train'], workers=3)]


def test_ordered_map_survives_a_crashing_worker():
  tasks = ['1 + 1', '__import__("os")._exit(3)', '2 * 3', '4 - 1']
  assert list(prepare.ordered_map(eval, tasks, workers=2)) == [
      2, {'reason': 'decoding crashed the worker process'}, 6, 3]
  assert list(prepare.ordered_map(eval, ['1', '2'], workers=1)) == [1, 2]


def test_shard_assignment_is_deterministic_round_robin():
  entries = [prepare.VideoEntry('train', f'v{i:02d}', None, None) for i in (5, 1, 4, 0, 3, 2)]
  shards = prepare.assign_shards(entries, 2)
  assert sorted(e.video_id for e in shards[0]) == ['v00', 'v02', 'v04']
  assert sorted(e.video_id for e in shards[1]) == ['v01', 'v03', 'v05']
  assert shards == prepare.assign_shards(list(reversed(entries)), 2)
  assert prepare.num_shards_for(250, None, None) == 3 and prepare.num_shards_for(5, 4, None) == 4
  with pytest.raises(ValueError, match='not both'):
    prepare.num_shards_for(5, 2, 2)
  assert prepare.assign_shards(entries, 7)[6] == []  # More shards than videos: empty shards.


def test_rotation_metadata_reaches_the_stored_frames(tmp_path):
  """A phone video stored sideways with a 90-degree display matrix is written upright (portrait) by prepare."""
  from tests.data.ingest.test_orientation import corner_marker, seen_as  # pylint: disable=import-outside-toplevel
  from tests.data.ingest.test_video_io import write_tagged  # pylint: disable=import-outside-toplevel
  frames = corner_marker(num_frames=6)  # 32 high, 48 wide as stored.
  os.makedirs(tmp_path / 'in' / 'train' / 'a')
  write_tagged(str(tmp_path / 'in' / 'train' / 'a' / 'phone.mp4'), frames, rotation=90)
  prepare.prepare('folder', str(tmp_path / 'in'), str(tmp_path / 'out'), fps=10, short_side=0, splits=['train'])
  path = os.path.join(tmp_path, 'out', 'train-00000-of-00001')
  stored = [tf.io.decode_jpeg(f).numpy() for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator()
            for f in tf.io.parse_single_sequence_example(
                serialized, sequence_features={'image/encoded': tf.io.FixedLenSequenceFeature([], tf.string)}
            )[1]['image/encoded'].numpy()]
  assert stored[0].shape == (48, 32, 3)  # Portrait, as the matrix says it is shown.
  assert seen_as(np.stack(stored), frames[:len(stored)]) == 'rot90'
