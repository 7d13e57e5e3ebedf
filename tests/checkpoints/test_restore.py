"""Restore-for-use, the one path from a checkpoint to a config, placed params, preprocessing and label names; and
the class names of a model trained on DMVR records (label_map.json beside them) surviving into every tool."""

import json
import os

import jax
import numpy as np
import pytest

from tests.data.test_video import NUM_CLASSES, dmvr_config, write_split
from tests.train_testing import host_tree, train_config
from vivit_jax import train
from vivit_jax.checkpoints import CheckpointError, convert, load_metadata, restore_for_use, save_scenic
from vivit_jax.checkpoints.formats import huggingface
from vivit_jax.data import DataError, Views
from vivit_jax.data.ingest import video_io
from vivit_jax.eval import evaluators
from vivit_jax.serving import export, predict

NAMES = ['archery', 'bowling', 'cooking', 'dancing', 'eating']


@pytest.fixture(scope='module')
def dmvr_run(tmp_path_factory):
  """(workdir, data dir) of a 2-step spacetime run on DMVR records whose label_map.json names the classes."""
  root = tmp_path_factory.mktemp('dmvr_names')
  data = str(root / 'data')
  os.makedirs(data)
  write_split(data, 'train', 0, 16, shards=2)
  write_split(data, 'validation', 16, 6, shards=1)
  with open(os.path.join(data, 'label_map.json'), 'w') as f:
    json.dump({'names': NAMES, 'index': {n: i for i, n in enumerate(NAMES)}}, f)
  config = dmvr_config(data, num_training_steps=2, lr_configs__warmup_steps=1.0, log_eval_steps=1000,
                       eval_batch_size=8, checkpoint_steps=1000, dataset_configs__examples_per_subset__train=16,
                       dataset_configs__tables__train='train@2', dataset_configs__tables__validation='validation@1',
                       dataset_configs__tables__test='')
  workdir = str(root / 'run')
  train.train_and_evaluate(config, workdir)
  return workdir, data


def test_training_saves_the_names_of_the_dmvr_label_map(dmvr_run):
  workdir, _ = dmvr_run
  assert load_metadata(workdir)['preprocessing']['label_names'] == NAMES


def test_evaluate_names_the_classes(dmvr_run, tmp_path):
  workdir, _ = dmvr_run
  summary, _, restored = evaluators.evaluate_checkpoint(workdir, split='validation', views=Views(1, 1))
  assert restored.label_names == NAMES and summary['num_videos'] == 6
  from vivit_jax.cli import evaluate as evaluate_cli  # pylint: disable=g-import-not-at-top
  output = str(tmp_path / 'eval.json')
  assert evaluate_cli.main([f'--checkpoint={workdir}', '--split=validation', '--views=1x1',
                            f'--output={output}']) == 0
  with open(str(tmp_path / 'eval_per_class.csv')) as f:
    assert [line.split(',')[1] for line in f.read().splitlines()[1:]] == NAMES


def test_predict_and_export_name_the_classes(dmvr_run, tmp_path):
  workdir, _ = dmvr_run
  predictor = predict.load_for_inference(workdir)
  assert predictor.label_names == NAMES
  video = str(tmp_path / 'clip.mp4')
  video_io.write_video(video, np.random.default_rng(0).integers(0, 256, (12, 24, 32, 3), dtype=np.uint8))
  assert {label for label, _ in predictor.predict_video(video, top_k=3)} <= set(NAMES)
  export.export_saved_model(predictor, str(tmp_path / 'saved'), platforms=('cpu',))
  assert export.read_export_info(str(tmp_path / 'saved'))['label_names'] == NAMES


def test_convert_keeps_the_names(dmvr_run, tmp_path):
  workdir, _ = dmvr_run
  convert.convert(workdir, str(tmp_path / 'copy'), 'vivit_jax')
  assert load_metadata(str(tmp_path / 'copy'))['label_names'] == NAMES
  convert.convert(workdir, str(tmp_path / 'hf'), 'huggingface')
  assert huggingface.read_info(str(tmp_path / 'hf'))['label_names'] == NAMES


def test_a_label_map_that_disagrees_with_num_classes_stops_the_run_before_training(dmvr_run, tmp_path):
  _, data = dmvr_run
  other = str(tmp_path / 'data')
  os.makedirs(other)
  write_split(other, 'train', 0, 8, shards=1)
  write_split(other, 'validation', 8, 4, shards=1)
  with open(os.path.join(other, 'label_map.json'), 'w') as f:
    json.dump({'names': NAMES[:4]}, f)
  config = dmvr_config(other, num_training_steps=2, eval_batch_size=8, dataset_configs__tables__train='train@1',
                       dataset_configs__tables__validation='validation@1', dataset_configs__tables__test='')
  with pytest.raises(DataError, match=r'label_map\.json names 4 classes.*num_classes. is 5'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')


@pytest.fixture(scope='module')
def synthetic_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('restore_run'))
  train.train(train_config('spacetime'), workdir)
  return workdir


def test_restores_the_saved_config_params_and_spec_onto_a_mesh(synthetic_run):
  restored = restore_for_use(synthetic_run)
  assert restored.format == 'vivit_jax' and restored.config.model.attention_config.type == 'spacetime'
  assert restored.task.num_classes == 5 and len(restored.label_names) == 5
  kernel = restored.params['embedding']['kernel']
  assert isinstance(kernel, jax.Array) and kernel.sharding.mesh.shape == restored.mesh.shape
  assert dict(restored.mesh.shape) == {'data': 8, 'fsdp': 1, 'model': 1}
  assert restored.preprocessing['crop_size'] == 16 and restored.preprocessing['label_names'] == restored.label_names


def test_overrides_and_label_map_take_precedence(synthetic_run, tmp_path):
  label_map = tmp_path / 'names.json'
  label_map.write_text(json.dumps(list('vwxyz')))
  restored = restore_for_use(synthetic_run, overrides=['dataset_configs.stride=3', 'mesh.data=2', 'mesh.fsdp=4'],
                             label_map=str(label_map))
  assert restored.label_names == list('vwxyz') and restored.preprocessing['stride'] == 3
  assert restored.preprocessing['label_names'] == list('vwxyz')
  assert dict(restored.mesh.shape) == {'data': 2, 'fsdp': 4, 'model': 1}
  label_map.write_text(json.dumps(list('xyz')))
  with pytest.raises(CheckpointError, match='3 label names for a model with 5 classes'):
    restore_for_use(synthetic_run, label_map=str(label_map))


def test_a_foreign_checkpoint_takes_its_config_from_a_file_and_has_no_names(synthetic_run, tmp_path):
  scenic = str(tmp_path / 'scenic')
  save_scenic(scenic, host_tree(restore_for_use(synthetic_run).params))
  with pytest.raises(CheckpointError, match='carries no model config'):
    restore_for_use(scenic)
  restored = restore_for_use(scenic, train_config('spacetime'))
  assert restored.format == 'scenic' and restored.label_names is None and restored.metadata is None
  assert NUM_CLASSES == restored.task.num_classes
