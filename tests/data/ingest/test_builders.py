"""TFDS builders prepared from tiny real downloads (mp4/H.264, webm/VP9, avi/MPEG-4) made in the test."""

import json
import os
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.data.test_video import dmvr_config
from vivit_jax.config.validation import ConfigError
from vivit_jax.data import create_pipeline
from vivit_jax.data.ingest import builders
from vivit_jax.data.ingest import video_io

FPS_IN, FRAMES_IN = 10, 20  # Every source clip lasts 2 s.
FPS_OUT, SHORT_SIDE = 5, 16  # Prepared: ~10 frames, short side 16.
LANDSCAPE, PORTRAIT = (32, 48), (48, 32)  # (H, W) of the sources.


def _write(path: str, color: Sequence[int] = (200, 40, 40), size: Tuple[int, int] = LANDSCAPE) -> str:
  """A 2 s clip of one colour with a small moving square, at `path` (codec from the extension)."""
  frames = np.empty((FRAMES_IN, *size, 3), np.uint8)
  frames[:] = np.asarray(color, np.uint8)
  for t in range(FRAMES_IN):
    frames[t, 2:6, t:t + 4] = 255
  os.makedirs(os.path.dirname(path), exist_ok=True)
  video_io.write_video(path, frames, fps=FPS_IN)
  return path


def _garbage(path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(b'this is not a video container' * 50)
  return path


def _read(builder, split: str) -> Dict[str, dict]:
  """video_id -> example (numpy) of a prepared split."""
  examples = tfds.as_numpy(builder.as_dataset(split=split))
  return {ex['video_id'].decode(): ex for ex in examples}


def _reasons(summary: dict) -> Dict[str, str]:
  with open(summary['report']) as f:
    return {s['video_id']: s['reason'] for s in json.load(f)['skipped']}


def _check_video(video: np.ndarray, size: Tuple[int, int] = (SHORT_SIDE, SHORT_SIDE * 3 // 2)) -> None:
  assert video.dtype == np.uint8
  assert video.shape[1:] == (*size, 3)
  assert abs(video.shape[0] - FPS_OUT * FRAMES_IN / FPS_IN) <= 1  # ~fps x duration.


# ------------------------------------------------------------------------------------------------ Kinetics
@pytest.fixture(scope='module')
def kinetics(tmp_path_factory) -> Tuple[dict, str]:
  root = str(tmp_path_factory.mktemp('kinetics_download'))
  csvs = {
      'train.csv': ['abseiling,aaa,0,10,train', 'bowling,bbb,5,15,train', '"juggling balls",ccc,1,11,train',
                    'bowling,ddd,0,10,train'],
      'validate.csv': ['abseiling,eee,0,10,validate', '"juggling balls",fff,0,10,validate'],
  }
  os.makedirs(os.path.join(root, 'annotations'))
  for name, rows in csvs.items():
    with open(os.path.join(root, 'annotations', name), 'w') as f:
      f.write('\n'.join(['label,youtube_id,time_start,time_end,split'] + rows) + '\n')
  with open(os.path.join(root, 'annotations', 'test.csv'), 'w') as f:  # Kinetics-700 style: no labels.
    f.write('youtube_id,time_start,time_end,split\nggg,3,13,test\n')
  _write(os.path.join(root, 'train', 'abseiling', 'aaa_000000_000010.mp4'))  # Split and class folders.
  _write(os.path.join(root, 'bbb_000005_000015.mp4'))  # Flat.
  _write(os.path.join(root, 'train', 'ccc_000001_000011.mp4'))  # Split folder only.
  # ddd: annotated, no file.
  _write(os.path.join(root, 'val', 'eee_000000_000010.mp4'))
  open(os.path.join(root, 'val', 'fff_000000_000010.mp4'), 'wb').close()  # Zero bytes.
  _write(os.path.join(root, 'test', 'ggg_000003_000013.mp4'))
  output = str(tmp_path_factory.mktemp('kinetics_tfds'))
  summary = builders.prepare_tfds('kinetics', root, output, fps=FPS_OUT, short_side=SHORT_SIDE)
  return summary, output


def test_kinetics_summary(kinetics):
  summary, output = kinetics
  assert summary['name'] == 'kinetics' and summary['builder'] == 'vivit_kinetics'  # 3 classes: generic.
  assert summary['config'] == 'fps5_short16'
  assert summary['num_classes'] == 3
  assert summary['splits'] == {'test': 1, 'train': 3, 'validation': 1}
  assert summary['skipped'] == 2
  assert summary['skipped_per_split'] == {'test': 0, 'train': 1, 'validation': 1}
  assert summary['report'] == os.path.join(summary['data_dir'], 'report.json')
  assert summary['data_dir'].startswith(os.path.join(output, 'vivit_kinetics', 'fps5_short16'))


def test_kinetics_examples_have_labels_and_resized_frames(kinetics):
  summary, output = kinetics
  builder = builders.get_builder('kinetics', output, fps=FPS_OUT, short_side=SHORT_SIDE)
  assert builder.info.features['label'].names == ['abseiling', 'bowling', 'juggling balls']
  train = _read(builder, 'train')
  assert sorted(train) == ['aaa_000000_000010', 'bbb_000005_000015', 'ccc_000001_000011']
  assert {k: (int(ex['label']), ex['label_text'].decode()) for k, ex in train.items()} == {
      'aaa_000000_000010': (0, 'abseiling'), 'bbb_000005_000015': (1, 'bowling'),
      'ccc_000001_000011': (2, 'juggling balls')}
  for ex in train.values():
    _check_video(ex['video'])
    assert np.abs(ex['video'][:, 10:, :].mean((0, 1, 2)) - [200, 40, 40]).max() < 12  # Colour kept.
  (test,) = _read(builder, 'test').values()
  assert int(test['label']) == builders.UNLABELED == -1 and test['label_text'] == b''
  # Readable without this package too, class names included.
  plain = tfds.builder_from_directory(summary['data_dir'])
  assert plain.info.features['label'].names == ['abseiling', 'bowling', 'juggling balls']


def test_kinetics_report_lists_skipped_videos(kinetics):
  summary, _ = kinetics
  reasons = _reasons(summary)
  assert sorted(reasons) == ['ddd_000000_000010', 'fff_000000_000010']
  assert reasons['ddd_000000_000010'].startswith('missing')
  assert reasons['fff_000000_000010'].startswith('empty')
  with open(summary['report']) as f:
    report = json.load(f)
  skipped = {s['video_id']: s for s in report['skipped']}
  assert skipped['fff_000000_000010']['path'].endswith(os.path.join('val', 'fff_000000_000010.mp4'))
  assert skipped['ddd_000000_000010']['split'] == 'train'
  assert report['splits']['train'] == {'entries': 4, 'written': 3, 'partial': 0, 'skipped': 1}
  # Every video file once: ggg's, aaa's, bbb's, ccc's and eee's written, fff's (empty) skipped.
  assert report['files'] == {'found': 6, 'written': 5, 'partial': 0, 'skipped': 1, 'other_files': 3}


def test_prepare_again_reuses_the_dataset(kinetics):
  summary, output = kinetics
  report_mtime = os.path.getmtime(summary['report'])
  builder = builders.get_builder('kinetics', output, fps=FPS_OUT, short_side=SHORT_SIDE)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir='/nonexistent', try_download_gcs=False))
  assert os.path.getmtime(summary['report']) == report_mtime
  assert builder.load_report()['num_skipped'] == 2


def test_kinetics400_requires_400_classes(kinetics, tmp_path):
  summary, _ = kinetics
  input_dir = json.load(open(summary['report']))['input_dir']
  builder = builders.get_builder('kinetics400', str(tmp_path), fps=FPS_OUT, short_side=SHORT_SIDE)
  with pytest.raises(ValueError, match='expects 400 classes.*name 3'):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=input_dir, try_download_gcs=False))
  assert not os.path.exists(os.path.join(str(tmp_path), 'vivit_kinetics400', 'fps5_short16', '1.0.0'))


# ----------------------------------------------------------------------------------------------- SSv2
def _ssv2_item(video_id: str, template: str, placeholders: List[str]) -> dict:
  label = template
  for p in placeholders:
    label = label.replace('[something]', p, 1)
  return {'id': video_id, 'label': label, 'template': template, 'placeholders': placeholders}


def test_something_something_v2(tmp_path):
  root = tmp_path / 'ssv2'
  labels = ['Pushing something from left to right', 'Holding something', 'Opening something']
  files = {
      'labels.json': {name: str(i) for i, name in enumerate(labels)},
      'train.json': [_ssv2_item('1', 'Pushing [something] from left to right', ['a cup']),
                     _ssv2_item('2', 'Holding [something]', ['a pen']),
                     _ssv2_item('3', 'Holding [something]', ['a box'])],
      'validation.json': [_ssv2_item('4', 'Opening [something]', ['a door'])],
      'test.json': [{'id': '5'}],
  }
  os.makedirs(root / 'annotations')
  for name, content in files.items():
    (root / 'annotations' / name).write_text(json.dumps(content))
  for video_id in ('1', '2', '4', '5'):
    _write(str(root / 'videos' / f'{video_id}.webm'), color=(40, 40, 200))
  _garbage(str(root / 'videos' / '3.webm'))

  summary = builders.prepare_tfds('ssv2', str(root), str(tmp_path / 'tfds'), fps=FPS_OUT,
                                  short_side=SHORT_SIDE, workers=2)
  assert summary['builder'] == 'vivit_something_something_v2'
  assert summary['splits'] == {'test': 1, 'train': 2, 'validation': 1}
  reasons = _reasons(summary)
  assert list(reasons) == ['3'] and reasons['3'].startswith('undecodable')

  builder = builders.get_builder('something_something_v2', str(tmp_path / 'tfds'), fps=FPS_OUT,
                                 short_side=SHORT_SIDE)
  assert builder.info.features['label'].names == sorted(labels)
  train = _read(builder, 'train')
  assert {k: (int(ex['label']), ex['label_text'].decode()) for k, ex in train.items()} == {
      '1': (2, 'Pushing something from left to right'), '2': (0, 'Holding something')}
  _check_video(train['1']['video'])
  assert int(_read(builder, 'validation')['4']['label']) == 1
  assert int(_read(builder, 'test')['5']['label']) == -1


# ------------------------------------------------------------------------------------------ video folder
def test_video_folder_with_split_selection_and_codecs(tmp_path):
  root = tmp_path / 'folder'
  _write(str(root / 'train' / 'cat' / 'a.mp4'), size=PORTRAIT)
  _write(str(root / 'train' / 'cat' / 'b.avi'))
  _write(str(root / 'train' / 'dog' / 'c.webm'))
  _garbage(str(root / 'train' / 'dog' / 'broken.mp4'))
  _write(str(root / 'validation' / 'dog' / 'd.mp4'))
  _write(str(root / 'validation' / 'zebra' / 'e.mp4'))  # A class only in a split not prepared.

  summary = builders.prepare_tfds('folder', str(root), str(tmp_path / 'tfds'), fps=FPS_OUT,
                                  short_side=SHORT_SIDE, splits=['train'])
  assert summary['builder'] == 'vivit_video_folder'
  assert summary['splits'] == {'train': 3} and summary['skipped'] == 1
  assert list(_reasons(summary)) == [os.path.join('train', 'dog', 'broken')]

  builder = builders.get_builder('video_folder', str(tmp_path / 'tfds'), fps=FPS_OUT, short_side=SHORT_SIDE)
  assert builder.info.features['label'].names == ['cat', 'dog', 'zebra']  # Split-independent classes.
  train = _read(builder, 'train')
  labels = {k: int(ex['label']) for k, ex in train.items()}
  assert labels == {os.path.join('train', 'cat', 'a'): 0, os.path.join('train', 'cat', 'b'): 0,
                    os.path.join('train', 'dog', 'c'): 1}
  _check_video(train[os.path.join('train', 'cat', 'a')]['video'], size=(SHORT_SIDE * 3 // 2, SHORT_SIDE))
  _check_video(train[os.path.join('train', 'cat', 'b')]['video'])


def test_split_without_a_usable_video_is_left_out(tmp_path):
  root = tmp_path / 'folder'
  _write(str(root / 'train' / 'cat' / 'a.mp4'))
  _garbage(str(root / 'validation' / 'cat' / 'b.mp4'))
  summary = builders.prepare_tfds('folder', str(root), str(tmp_path / 'tfds'), fps=FPS_OUT,
                                  short_side=SHORT_SIDE)
  assert summary['splits'] == {'train': 1}
  assert summary['skipped_per_split'] == {'train': 0, 'validation': 1}
  assert list(_reasons(summary)) == [os.path.join('validation', 'cat', 'b')]


# -------------------------------------------------------------------------------------- names and configs
def test_get_builder_unknown_name_suggests_the_closest():
  valid = re.escape(str(sorted(builders.BUILDERS)))
  with pytest.raises(ConfigError, match=f"^unknown video builder 'kinetcs400'; did you mean 'kinetics400'\\? "
                                        f'expected one of {valid}$'):
    builders.get_builder('kinetcs400', '/tmp/unused')
  with pytest.raises(ConfigError, match=r"^unknown layout 'ssv'; did you mean 'ssv2'\? expected one of "):
    builders.prepare_tfds('ssv', '/tmp/unused', '/tmp/unused')


@pytest.mark.parametrize('name, hint', [('imagenet_video', ''), ('kinetics_400', "did you mean 'kinetics400'? ")])
def test_an_unknown_tfds_name_in_a_config_is_a_config_error_naming_the_key(tmp_path, name, hint):
  config = dmvr_config(str(tmp_path), dataset_name='tfds', dataset_configs__tfds_name=name)
  valid = re.escape(str(sorted(builders.BUILDERS)))
  with pytest.raises(ConfigError, match=f"^'dataset_configs.tfds_name' is '{name}', not a known video builder; "
                                        f'{re.escape(hint)}expected one of {valid}$'):
    create_pipeline(config, 0, 1)


def test_registered_names_and_configs(tmp_path):
  registered = set(tfds.list_builders(with_community_datasets=False))
  for cls in builders.BUILDERS.values():
    assert cls.name.startswith('vivit_') and cls.name in registered
  assert builders.get_builder('kinetics700', str(tmp_path)).builder_config.name == 'fps10_short256'
  custom = builders.get_builder('vivit_kinetics600', str(tmp_path), fps=12.5, short_side=320)
  assert custom.builder_config.name == 'fps12p5_short320'
  assert (custom.builder_config.fps, custom.builder_config.short_side) == (12.5, 320)
  native = builders.get_builder('video_folder', str(tmp_path), fps=0, short_side=None)
  assert native.builder_config.name == 'fpsnative_short256' and native.builder_config.fps is None
  with pytest.raises(ValueError, match='short_side=-1'):
    builders.get_builder('video_folder', str(tmp_path), short_side=-1)
  with pytest.raises(ValueError, match='fps=nan'):
    builders.get_builder('video_folder', str(tmp_path), fps=float('nan'))
