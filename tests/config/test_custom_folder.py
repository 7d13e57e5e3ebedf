"""configs/custom_folder.py: the data keys read from a prepared folder's report.json (DMVR and TFDS), the errors
when it is not there or disagrees with an override, the presets, and what --dry_run says it read.

The folders here hold what vivit-prepare-data writes (report.json, label_map.json, TFDS's directory layout) without
videos; tests/test_custom_folder.py prepares real ones."""

import ast
import json
import logging
import os

import jax
import jax.numpy as jnp
import pytest

from tests import paths
from vivit_jax.config import ConfigError, load_config, validate_config
from vivit_jax.models import create_model
from vivit_jax.train import param_groups

CONFIG = str(paths.ROOT / 'configs' / 'custom_folder.py')
NAMES = ['archery', 'brushing teeth', 'juggling']


def _write_json(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(value, f)


def write_prepared_dmvr(directory, sizes=None, names=NAMES, tables=None):
  """report.json and label_map.json as vivit-prepare-data --format=dmvr writes them (the keys read here)."""
  sizes = sizes or {'train': 6, 'validation': 3}
  tables = tables or {split: f'{split}@1' for split in sizes}
  _write_json(os.path.join(directory, 'report.json'), {
      'format': 'dmvr', 'layout': 'folder', 'num_classes': len(names), 'tables': tables,
      'examples_per_subset': sizes})
  _write_json(os.path.join(directory, 'label_map.json'),
              {'names': names, 'index': {n: i for i, n in enumerate(names)}})
  return str(directory)


def write_prepared_tfds(data_dir, config='fps10_short256', written=None):
  """A TFDS report at data_dir/vivit_video_folder/CONFIG/1.0.0, as the folder builder writes it; its directory."""
  written = written or {'train': 6, 'validation': 3}
  version_dir = os.path.join(data_dir, 'vivit_video_folder', config, '1.0.0')
  splits = {s: {'entries': n, 'written': n - 1, 'partial': 1, 'skipped': 0} for s, n in written.items()}
  _write_json(os.path.join(version_dir, 'report.json'), {
      'builder': 'vivit_video_folder', 'config': config, 'version': '1.0.0', 'num_classes': len(NAMES),
      'splits': splits})
  return version_dir


def load(*overrides, preset=''):
  return load_config(CONFIG + preset, overrides=list(overrides))


def error(*overrides, preset=''):
  with pytest.raises(ConfigError) as info:
    load(*overrides, preset=preset)
  return str(info.value)


# Resolution.


def test_dmvr_folder_gives_tables_classes_and_sizes(tmp_path):
  data = write_prepared_dmvr(tmp_path / 'data', {'train': 6, 'validation': 3, 'test': 2})
  d = load(f'dataset_configs.base_dir={data}').dataset_configs
  assert (d.num_classes, d.tables.train, d.tables.validation, d.tables.test) == (3, 'train@1', 'validation@1',
                                                                                'test@1')
  assert (d.examples_per_subset.train, d.examples_per_subset.validation, d.examples_per_subset.test) == (6, 3, 2)
  assert d.base_dir == data


def test_relative_and_home_base_dirs_become_absolute(tmp_path, monkeypatch):
  write_prepared_dmvr(tmp_path / 'data')
  monkeypatch.chdir(tmp_path)
  assert load('dataset_configs.base_dir=data').dataset_configs.base_dir == str(tmp_path / 'data')
  monkeypatch.setenv('HOME', str(tmp_path))
  assert load('dataset_configs.base_dir=~/data/').dataset_configs.base_dir == str(tmp_path / 'data')


def test_a_split_the_folder_lacks_stays_unset(tmp_path):
  d = load(f"dataset_configs.base_dir={write_prepared_dmvr(tmp_path / 'data')}").dataset_configs
  assert d.tables.test == '' and d.examples_per_subset.test is None  # No test/ folder: no multi-view test table.


@pytest.mark.parametrize('where', ['data_dir', 'dataset_dir'])
def test_tfds_folder_switches_the_dataset_and_names_the_builder(tmp_path, where):
  version_dir = write_prepared_tfds(str(tmp_path / 'tfds'), config='fps5_short128')
  base_dir = str(tmp_path / 'tfds') if where == 'data_dir' else version_dir  # prepare_data prints the second.
  config = load(f'dataset_configs.base_dir={base_dir}')
  d = config.dataset_configs
  assert (config.dataset_name, d.tfds_name) == ('tfds', 'video_folder/fps5_short128')
  assert d.base_dir == str(tmp_path / 'tfds')  # The TFDS data dir, whichever of the two was given.
  assert (d.num_classes, d.examples_per_subset.train, d.examples_per_subset.validation) == (3, 6, 3)
  assert d.tables.train == ''


def test_tfds_with_its_name_given_picks_that_dataset(tmp_path):
  data_dir = str(tmp_path / 'tfds')
  write_prepared_tfds(data_dir, config='fps10_short256', written={'train': 6, 'validation': 2})
  write_prepared_tfds(data_dir, config='fps5_short128', written={'train': 9, 'validation': 2})
  message = error(f'dataset_configs.base_dir={data_dir}')
  assert 'holds 2 prepared TFDS datasets' in message and 'video_folder/fps5_short128' in message
  assert "'dataset_configs.tfds_name'" in message
  config = load('dataset_name=tfds', 'dataset_configs.tfds_name=video_folder/fps5_short128',
                f'dataset_configs.base_dir={data_dir}')
  assert config.dataset_configs.examples_per_subset.train == 9
  assert config.dataset_configs.tfds_name == 'video_folder/fps5_short128'


def test_an_override_that_agrees_with_the_report_is_kept(tmp_path):
  data = write_prepared_dmvr(tmp_path / 'data')
  d = load(f'dataset_configs.base_dir={data}', 'dataset_configs.num_classes=3',
           'dataset_configs.examples_per_subset.train=6').dataset_configs
  assert (d.num_classes, d.examples_per_subset.train, d.tables.train) == (3, 6, 'train@1')


def test_a_saved_config_is_not_read_again(tmp_path):
  """A run's config.json has every key set: restoring it for evaluate or predict never opens the report."""
  data = tmp_path / 'data'
  resolved = load(f'dataset_configs.base_dir={write_prepared_dmvr(data)}')
  os.remove(data / 'report.json')
  os.remove(data / 'label_map.json')
  again = validate_config(resolved.to_dict())
  assert again.dataset_configs.to_dict() == resolved.dataset_configs.to_dict()


def test_configs_that_set_their_data_are_left_alone(tmp_path):
  data = write_prepared_dmvr(tmp_path / 'data', {'train': 6})
  kinetics = load_config(str(paths.ROOT / 'configs' / 'kinetics400' / 'vivit_base_k400.py'),
                         overrides=[f'dataset_configs.base_dir={data}'])
  assert kinetics.dataset_configs.examples_per_subset.train == 214834  # Tables set: the report is not read.


# Errors: each names the config file, the key or file, and what to run.


def test_no_base_dir_says_to_run_prepare_data():
  message = error()
  assert message.startswith(f'{CONFIG}: ') and 'problems' not in message
  assert "'dataset_configs.base_dir' is not set" in message
  assert 'vivit-prepare-data --layout=folder' in message and '--config.dataset_configs.base_dir=DIR' in message


def test_a_folder_without_report_names_the_file_and_prepare_data(tmp_path):
  os.makedirs(tmp_path / 'videos' / 'train')
  message = error(f"dataset_configs.base_dir={tmp_path / 'videos'}")
  assert f"{tmp_path / 'videos' / 'report.json'} not found" in message
  assert 'not a folder prepared by vivit-prepare-data' in message and 'vivit-prepare-data --layout=folder' in message
  message = error(f"dataset_configs.base_dir={tmp_path / 'absent'}")
  assert f"'dataset_configs.base_dir' {tmp_path / 'absent'}: not found" in message and 'vivit-prepare-data' in message


@pytest.mark.parametrize('override,key,given,read', [
    ('dataset_configs.num_classes=5', 'dataset_configs.num_classes', '5', '3'),
    ('dataset_configs.examples_per_subset.train=600', 'dataset_configs.examples_per_subset.train', '600', '6'),
    ('dataset_configs.tables.validation=val@4', 'dataset_configs.tables.validation', "'val@4'", "'validation@1'"),
    ('dataset_name=tfds', 'dataset_name', "'tfds'", "'video_tfrecord_dataset'"),
])
def test_an_override_that_disagrees_with_the_report_is_an_error(tmp_path, override, key, given, read):
  data = write_prepared_dmvr(tmp_path / 'data')
  message = error(f'dataset_configs.base_dir={data}', override)
  report = os.path.join(data, 'report.json')
  assert f"'{key}' is {given}, but {report} (written by vivit-prepare-data) gives {read}" in message


def test_a_missing_or_short_label_map_is_an_error(tmp_path):
  data = write_prepared_dmvr(tmp_path / 'data')
  _write_json(os.path.join(data, 'label_map.json'), {'names': NAMES[:2]})
  assert 'label_map.json names 2 classes, but' in error(f'dataset_configs.base_dir={data}')
  os.remove(os.path.join(data, 'label_map.json'))
  message = error(f'dataset_configs.base_dir={data}')
  assert f"{os.path.join(data, 'label_map.json')}: not found" in message and 'vivit-prepare-data' in message


def test_a_report_without_training_or_validation_videos_or_unreadable_is_an_error(tmp_path):
  data = write_prepared_dmvr(tmp_path / 'data', {'validation': 3})
  assert 'no train videos (videos per split: ' in error(f'dataset_configs.base_dir={data}')
  data = write_prepared_dmvr(tmp_path / 'train_only', {'train': 6})
  assert 'no validation videos' in error(f'dataset_configs.base_dir={data}')
  assert 'validation/ (or val/) folder' in error(f'dataset_configs.base_dir={data}')
  with open(os.path.join(data, 'report.json'), 'w') as f:
    f.write('{"format": "dmvr", ')
  assert 'report.json: cannot read it as JSON' in error(f'dataset_configs.base_dir={data}')


# The presets.


def test_presets_and_their_recipes(tmp_path):
  data = f"dataset_configs.base_dir={write_prepared_dmvr(tmp_path / 'data')}"
  scratch, finetune, probe = load(data), load(data, preset=':finetune'), load(data, preset=':linear_probe')
  assert scratch.to_dict() == load(data, preset=':scratch').to_dict()
  for config in (scratch, finetune, probe):
    lr = config.lr_configs  # Epochs, not steps: any number of videos keeps the schedule's shape.
    assert config.num_training_epochs and config.num_training_steps is None
    assert lr.warmup_epochs and lr.warmup_steps is None and lr.steps_per_cycle is None
    assert config.model.attention_config.type == 'spacetime' and config.optimizer == 'adamw'
  assert scratch.init_from.checkpoint_path is None and scratch.model.hidden_size == 128
  for config in (finetune, probe):
    assert config.init_from.checkpoint_path is None and config.init_from.checkpoint_format == 'auto'
    assert (config.model.hidden_size, config.model.num_layers, tuple(config.model.patches.size)) == (768, 12,
                                                                                                      (16, 16, 2))
  assert finetune.optimizer_configs.layerwise_decay == 0.75 and not finetune.optimizer_configs.freeze
  assert 'unknown preset' in error(data, preset=':tiny') and 'linear_probe' in error(data, preset=':tiny')


def test_linear_probe_trains_the_head_alone(tmp_path):
  config = load(f"dataset_configs.base_dir={write_prepared_dmvr(tmp_path / 'data')}", preset=':linear_probe')
  d = config.dataset_configs
  params = jax.eval_shape(lambda: create_model(config).init(
      jax.random.PRNGKey(0), jnp.zeros((1, d.num_frames, d.crop_size, d.crop_size, 3))))['params']
  labels = param_groups.labels(params, config.optimizer_configs.freeze)
  flat = jax.tree_util.tree_leaves_with_path(labels)
  trainable = sorted(jax.tree_util.keystr(path) for path, label in flat if label == param_groups.TRAINABLE)
  assert trainable == ["['output_projection']['bias']", "['output_projection']['kernel']"]
  assert param_groups.split_counts(params, config.optimizer_configs.freeze)[0] == 768 * 3 + 3


def test_docstring_opens_with_the_commands():
  docstring = ast.get_docstring(ast.parse((paths.ROOT / 'configs' / 'custom_folder.py').read_text()))
  for text in ('vivit-prepare-data --layout=folder', 'python -m vivit_jax.main --config=configs/custom_folder.py '
               '--workdir=runs/', '--config.dataset_configs.base_dir=', 'init_from.checkpoint_path', 'vivit-evaluate',
               'vivit-predict', ':finetune', ':linear_probe'):
    assert text in docstring, text


# What the run says it read (--dry_run shows the same line: train.setup logs it).


def test_setup_logs_the_resolved_data_with_the_class_names(tmp_path, caplog):
  from tests.data.test_video import write_split  # pylint: disable=import-outside-toplevel
  from vivit_jax.train import dry_run  # pylint: disable=import-outside-toplevel
  data = tmp_path / 'data'
  os.makedirs(data)
  write_split(str(data), 'train', 0, 6, shards=1)
  write_split(str(data), 'validation', 6, 3, shards=1)
  names = ['a', 'b', 'c', 'd', 'e']  # write_split labels its videos index % 5.
  write_prepared_dmvr(data, names=names)
  config = load(f'dataset_configs.base_dir={data}')
  with caplog.at_level(logging.INFO):
    described = dry_run.describe(config, compile_step=False)
  assert 'spacetime (paper Model 1)' in described
  assert (f'Data: DMVR records under {data} (vivit-prepare-data report {data / "report.json"}): 5 classes '
          '(a, b, c, d, e); train 6 videos (train@1), validation 3 videos (validation@1)') in caplog.text
  assert 'names no classes' not in caplog.text
  os.remove(data / 'label_map.json')  # A DMVR folder without names: said before training, not found out after.
  with caplog.at_level(logging.INFO):
    dry_run.describe(validate_config(config.to_dict()), compile_step=False)
  assert 'The data names no classes' in caplog.text and 'class_<i>' in caplog.text
