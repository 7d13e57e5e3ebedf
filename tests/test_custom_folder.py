"""Your own videos, end to end: the README's "Your own videos" commands, run as written on real encoded videos.

A folder `my_videos/{train,validation}/{class}/*.mp4` (H.264 written with PyAV) goes through vivit-prepare-data,
vivit-train with configs/custom_folder.py and only `base_dir`, vivit-evaluate, vivit-predict, vivit-export and
vivit-convert, from a directory laid out like the repository's root (the training shortened to 2 steps by two
overrides, SHORT_TRAINING: the length of the run is not what this test checks). Every tool must name the classes as the
folders do (label_map.json), never class_<i> or LABEL_<i>.

The commands run in this process, through the `main` functions their console scripts call (setup.cfg), not as
subprocesses: each console script spends 5-10 s of a 2-core machine importing TensorFlow, JAX and Orbax before it
does anything, which for six commands would take most of this test's time; one process imports them once.
tests/cli/test_commands.py checks that every console script resolves to these functions.
"""

import contextlib
import csv
import io
import json
import logging
import os
import shlex

import numpy as np
import pytest
from absl import flags

from tests import paths
from tests.data.ingest.test_video_io import moving_square
from vivit_jax import main as train_command
from vivit_jax import train
from vivit_jax.cli import convert, evaluate, export, predict, prepare_data
from vivit_jax.config import load_config
from vivit_jax.data.ingest.video_io import write_video

CLASSES = ('archery', 'brushing teeth', 'juggling')  # Sorted, as label_map.json orders them; one with a space.
# The README's section, command for command (tests/test_custom_folder.py: test_the_readme_gives_these_commands).
COMMANDS = (
    'vivit-prepare-data --layout=folder --input=my_videos --output=data/my_videos',
    'vivit-train --config=configs/custom_folder.py --workdir=runs/my_videos '
    '--config.dataset_configs.base_dir=data/my_videos',
    'vivit-evaluate --checkpoint=runs/my_videos --output=runs/my_videos/eval/validation.json',
    'vivit-predict --checkpoint=runs/my_videos --output=runs/my_videos/predictions.jsonl my_videos/validation',
    'vivit-export --checkpoint=runs/my_videos --output=runs/my_videos/export',
    'vivit-convert --input=runs/my_videos --output=runs/my_videos/huggingface --to=huggingface',
)
# Added to the training command only: 2 steps (4 epochs of 6 clips in batches of 16) instead of the preset's 30
# epochs, each validated: the class names travel the same way through a short run, in a fraction of the time.
SHORT_TRAINING = ' --config.num_training_epochs=4 --config.lr_configs.warmup_epochs=1'
MAINS = {'vivit-prepare-data': prepare_data.main, 'vivit-evaluate': evaluate.main, 'vivit-predict': predict.main,
         'vivit-export': export.main, 'vivit-convert': convert.main}


def write_videos(root):
  """2 training and 1 validation clip per class: 12 frames at 10 fps, 48x64, a square moving over a shade of
  grey that tells the class."""
  for c, name in enumerate(CLASSES):
    for split, count in (('train', 2), ('validation', 1)):
      os.makedirs(os.path.join(root, split, name))
      for i in range(count):
        frames = moving_square(12, height=48, width=64, shade=40 + 80 * c)
        write_video(os.path.join(root, split, name, f'clip{i}.mp4'), np.roll(frames, 5 * i, axis=1), fps=10)


def run(command):
  """The command line, as its console script runs it; its exit status."""
  name, *argv = shlex.split(command)
  if name == 'vivit-train':
    try:
      return train_command.main(train_command._parse_flags([name, *argv]))  # pylint: disable=protected-access
    finally:
      flags.FLAGS.unparse_flags()
  return MAINS[name](argv)


@pytest.fixture(scope='module')
def outputs(tmp_path_factory):
  """Runs every command in a directory like the repository's root (configs/ linked); (that directory,
  {command name: what it printed})."""
  root = tmp_path_factory.mktemp('repository_root')
  os.symlink(paths.ROOT / 'configs', root / 'configs')
  write_videos(str(root / 'my_videos'))
  printed = {}
  with pytest.MonkeyPatch.context() as patch:
    patch.chdir(root)
    for command in COMMANDS:
      buffer = io.StringIO()
      with contextlib.redirect_stdout(buffer):
        status = run(command + SHORT_TRAINING if command.startswith('vivit-train') else command)
      print(buffer.getvalue())
      assert status == 0, f'{command} exited {status}:\n{buffer.getvalue()}'
      printed[command.split()[0]] = buffer.getvalue()
  return root, printed


def _no_placeholder_names(text, where):
  for placeholder in ('class_0', 'LABEL_0'):
    assert placeholder not in text, f'{where} says {placeholder}'


def test_the_trained_checkpoint_carries_the_folder_class_names(outputs):
  root, printed = outputs
  with open(root / 'data' / 'my_videos' / 'report.json') as f:
    report = json.load(f)
  assert report['tables'] == {'train': 'train@1', 'validation': 'validation@1'}
  with open(root / 'runs' / 'my_videos' / 'config.json') as f:
    config = json.load(f)
  d = config['dataset_configs']  # Read from report.json; base_dir made absolute.
  assert (d['num_classes'], d['tables']['train'], d['examples_per_subset']['train']) == (3, 'train@1', 6)
  assert d['base_dir'] == str(root / 'data' / 'my_videos')
  with open(root / 'runs' / 'my_videos' / 'results.json') as f:
    assert json.load(f)['status'] == 'completed'
  step = max(os.listdir(root / 'runs' / 'my_videos' / 'checkpoints'), key=int)
  with open(root / 'runs' / 'my_videos' / 'checkpoints' / step / 'metadata' / 'metadata') as f:
    assert json.load(f)['preprocessing']['label_names'] == list(CLASSES)
  assert 'completed' in printed['vivit-train']


def test_evaluate_names_the_classes(outputs):
  root, printed = outputs
  base = root / 'runs' / 'my_videos' / 'eval' / 'validation'
  with open(f'{base}_per_class.csv', newline='') as f:
    assert [row['name'] for row in csv.DictReader(f)] == list(CLASSES)
  with open(f'{base}_confusion.csv', newline='') as f:
    confusion = f.read()
  assert all(name in confusion for name in CLASSES)
  with open(f'{base}.json') as f:
    result = json.load(f)
  assert result['metrics']['multi_view/num_videos'] == 3 and result['split'] == 'validation'
  for path in [f'{base}.json', f'{base}_per_class.csv', f'{base}_confusion.csv']:
    with open(path) as f:
      _no_placeholder_names(f.read(), path)
  _no_placeholder_names(printed['vivit-evaluate'], 'vivit-evaluate')


def test_predict_names_the_classes(outputs):
  root, printed = outputs
  with open(root / 'runs' / 'my_videos' / 'predictions.jsonl') as f:
    lines = [json.loads(line) for line in f if line.strip()]
  assert len(lines) == 3  # One per validation video.
  for line in lines:
    text = json.dumps(line)
    assert sorted(name for name in CLASSES if name in text) == list(CLASSES)  # Top 5 of 3 classes: all of them.
    _no_placeholder_names(text, 'predictions.jsonl')
  assert all(name in printed['vivit-predict'] for name in CLASSES)
  _no_placeholder_names(printed['vivit-predict'], 'vivit-predict')


def test_export_and_the_hugging_face_config_name_the_classes(outputs):
  root, _ = outputs
  with open(root / 'runs' / 'my_videos' / 'export' / 'assets' / 'vivit_export.json') as f:
    info = f.read()
  assert json.loads(info)['label_names'] == list(CLASSES)
  _no_placeholder_names(info, 'vivit_export.json')
  with open(root / 'runs' / 'my_videos' / 'huggingface' / 'config.json') as f:
    hf_text = f.read()
  _no_placeholder_names(hf_text, 'config.json')
  hf_config = json.loads(hf_text)
  assert hf_config['id2label'] == {str(i): name for i, name in enumerate(CLASSES)}
  assert hf_config['label2id'] == {name: i for i, name in enumerate(CLASSES)}


def test_a_tfds_preparation_of_the_same_folder_needs_only_base_dir_too(outputs, monkeypatch, caplog):
  """--format=tfds: the config finds the TFDS dataset below base_dir, its sizes and its class names."""
  root, _ = outputs
  monkeypatch.chdir(root)
  assert run('vivit-prepare-data --layout=folder --input=my_videos --output=data/my_videos_tfds --format=tfds') == 0
  config = load_config(str(paths.ROOT / 'configs' / 'custom_folder.py'),
                       overrides=['dataset_configs.base_dir=data/my_videos_tfds'])
  d = config.dataset_configs
  assert (config.dataset_name, d.tfds_name, d.base_dir) == ('tfds', 'video_folder/fps10_short256',
                                                           str(root / 'data' / 'my_videos_tfds'))
  assert (d.num_classes, d.examples_per_subset.train, d.examples_per_subset.validation) == (3, 6, 3)
  with caplog.at_level(logging.INFO):
    run_setup = train.setup(config)
  assert run_setup.label_names == list(CLASSES)
  assert f"Data: TFDS 'video_folder/fps10_short256' under {d.base_dir}: 3 classes ({', '.join(CLASSES)})" in (
      caplog.text)


def test_the_readme_gives_these_commands():
  """The README's "Your own videos" section walks exactly the commands this test runs."""
  readme = (paths.ROOT / 'README.md').read_text()
  assert '\n## Your own videos\n' in readme
  section = readme.split('\n## Your own videos\n', 1)[1].split('\n## ', 1)[0]
  missing = [command for command in COMMANDS if command not in section]
  assert missing == []
