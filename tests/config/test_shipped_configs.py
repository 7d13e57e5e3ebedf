"""Every config shipped under configs/ loads cleanly, documents itself and builds its model (abstractly)."""

import ast
import pathlib
import warnings

import jax
import jax.numpy as jnp
import pytest

from tests import paths
from tests.config.test_custom_folder import write_prepared_dmvr
from vivit_jax.config import load_config
from vivit_jax.models import create_model

ROOT = paths.ROOT
# synthetic.py, the embedded demo, is not a paper experiment: tests/train/test_loop.py covers it; the sweeps under
# configs/ablations/ are covered by tests/experiments/test_ablation.py; custom_folder.py, for the user's own videos,
# by tests/config/test_custom_folder.py and tests/test_custom_folder.py.
NOT_EXPERIMENTS = {'synthetic.py', 'custom_folder.py'}

# Each shipped file: the accuracy its docstring must quote (the paper's) and, where Scenic's parameter trees give
# one, its exact parameter count (ViViT-B/16x2, 32x224x224, 400 classes).
EXPECTED = {
    'kinetics400/vivit_base_k400.py': ('80.0', 88_954_000),
    'kinetics400/vivit_base_factorised_encoder.py': ('78.8', 115_062_928),
    'kinetics400/vivit_base_spatial_only_baseline.py': ('75.8', 86_696_080),
    'kinetics400/vivit_base_factorised_self_attention.py': ('77.4', 117_319_312),
    'kinetics400/vivit_base_factorised_dot_product.py': ('76.3', 88_952_464),
    'kinetics400/vivit_large_factorised_encoder.py': ('80.6', None),
    'kinetics600/vivit_large_factorised_encoder.py': ('82.9', None),
    'something_something_v2/vivit_large_factorised_encoder.py': ('65.9', None),
    'epic_kitchens/vivit_large_factorised_encoder.py': ('44.0', None),
    'moments_in_time/vivit_large_factorised_encoder.py': ('38.5', None),
}


def shipped_configs():
  return sorted(str(p.relative_to(ROOT / 'configs')) for p in (ROOT / 'configs').rglob('*.py')
                if p.name not in NOT_EXPERIMENTS and 'ablations' not in p.parts)


def load(rel):
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # No ConfigWarning (nor any other warning) from our own files.
    return load_config(str(ROOT / 'configs' / rel))


def test_every_shipped_config_is_listed_here():
  assert shipped_configs() == sorted(EXPECTED)


def test_configs_are_files_loaded_by_path_not_a_package(tmp_path, monkeypatch):
  assert not list((ROOT / 'configs').rglob('__init__.py'))  # Not an (installed) package named 'configs'.
  monkeypatch.chdir(tmp_path)  # Away from the repository: every file, ablations included, still loads.
  prepared = write_prepared_dmvr(tmp_path / 'prepared')  # custom_folder.py reads its data keys from one.
  for path in (ROOT / 'configs').rglob('*.py'):
    overrides = [f'dataset_configs.base_dir={prepared}'] if path.name == 'custom_folder.py' else []
    assert load_config(str(path), overrides=overrides).experiment_name, path


@pytest.mark.parametrize('rel', shipped_configs())
def test_docstring_gives_the_command_and_the_paper_accuracy(rel):
  path = ROOT / 'configs' / rel
  docstring = ast.get_docstring(ast.parse(path.read_text()))
  assert docstring, f'{rel} has no docstring'
  assert 'python -m vivit_jax.main' in docstring
  assert f'--config=configs/{rel} --workdir=runs/' in docstring
  accuracy, _ = EXPECTED[rel]
  assert accuracy in docstring
  assert 'init_from.checkpoint_path' in docstring  # Says which pretrained model to point it at.


@pytest.mark.parametrize('rel', shipped_configs())
def test_loads_without_warnings_and_builds(rel):
  config = load(rel)
  d = config.dataset_configs
  assert config.init_from.checkpoint_path is None  # A placeholder for the user.
  assert config.batch_size == 64 and config.optimizer == 'momentum'
  assert config.optimizer_configs.momentum == 0.9
  assert config.max_grad_norm == 1.0
  assert config.model_dtype_str == 'float32'
  assert config.lr_configs.factors == 'constant * cosine_decay * linear_warmup'
  lr = config.lr_configs  # The warmup in epochs (tests/config/test_schedule_epochs.py resolves it); the cosine
  assert lr.warmup_steps is None and lr.warmup_epochs == 2.5  # spans the whole run.
  assert lr.steps_per_cycle is None and lr.steps_per_cycle_epochs is None
  assert config.model.dropout_rate == 0.0 and config.model.attention_dropout_rate == 0.0
  assert config.model.temporal_encoding_config.kernel_init_method == 'central_frame_initializer'
  assert tuple(config.model.patches.size) == (16, 16, 2) and d.num_frames == 32

  model = create_model(config)
  logits, variables = jax.eval_shape(lambda: model.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((1, d.num_frames, d.crop_size, d.crop_size, 3))))
  assert logits.shape == (1, d.num_classes)
  count = sum(x.size for x in jax.tree_util.tree_leaves(variables['params']))
  _, expected_count = EXPECTED[rel]
  if expected_count is not None:
    assert (d.num_frames, d.crop_size, d.num_classes) == (32, 224, 400)
    assert count == expected_count
  else:
    assert 300e6 < count < 400e6, count  # ViViT-L/16x2 FE: ViT-L plus a 4-layer temporal encoder.


# What differs per dataset (the paper's recipe and Scenic's configs).
DATASETS = {
    # folder: (classes, train videos, epochs, base LR, colour jitter, flip, 3 crops, crop)
    'kinetics400': (400, 214834, 30, 0.1, True, True, True, 224),
    'kinetics600': (600, 363213, 30, 0.1, True, True, True, 224),
    'moments_in_time': (339, 802264, 10, 0.25, True, True, False, 224),
    'epic_kitchens': (397, 67217, 50, 0.5, False, True, False, 224),
    'something_something_v2': (174, 168913, 35, 0.5, False, False, False, 256),
}


@pytest.mark.parametrize('rel', shipped_configs())
def test_dataset_recipe(rel):
  config = load(rel)
  d, a = config.dataset_configs, config.dataset_configs.augmentation_params
  classes, train, epochs, base_lr, colour, flip, three_crops, crop = DATASETS[rel.split('/')[0]]
  if rel.endswith(('vivit_base_factorised_encoder.py', 'vivit_base_spatial_only_baseline.py')):
    base_lr = 0.05  # B-FE (and its Lt = 0 ablation).
  assert d.num_classes == classes
  assert d.examples_per_subset.train == train
  assert config.num_training_epochs == epochs
  assert config.lr_configs.base_learning_rate == base_lr
  assert a.do_color_augment is colour
  assert a.do_flip is flip
  assert d.do_three_spatial_crops is three_crops
  assert d.crop_size == crop and d.min_resize == (288 if crop == 256 else 256)


def test_large_factorised_encoder_shape():
  for rel in EXPECTED:
    if 'large' in rel:
      m = load(rel).model
      assert m.attention_config.type == 'factorized_encoder' and m.hidden_size == 1024
      assert (m.spatial_transformer.num_heads, m.spatial_transformer.mlp_dim,
              m.spatial_transformer.num_layers) == (16, 4096, 24)
      assert (m.temporal_transformer.num_heads, m.temporal_transformer.mlp_dim,
              m.temporal_transformer.num_layers) == (16, 4096, 4)


def test_regularisation_of_the_small_datasets():
  epic = load('epic_kitchens/vivit_large_factorised_encoder.py')
  ssv2 = load('something_something_v2/vivit_large_factorised_encoder.py')
  for config, magnitude, rate in ((epic, 15, 0.2), (ssv2, 20, 0.3)):
    a = config.dataset_configs.augmentation_params
    assert a.do_rand_augment and (a.rand_augment_num_layers, a.rand_augment_magnitude) == (2, magnitude)
    assert config.model.stochastic_droplayer_rate == rate
    assert config.label_smoothing == rate
  assert (epic.mixup.alpha, ssv2.mixup.alpha) == (0.1, 0.3)
  assert ssv2.init_from.positional_embed_size_change == 'resize'  # 256 crops: a 16x16 grid, not 14x14.
  for rel in EXPECTED:
    if rel.startswith(('kinetics', 'moments')):
      config = load(rel)
      assert config.mixup.alpha == 0.0 and config.label_smoothing is None
      assert not config.dataset_configs.augmentation_params.do_rand_augment


def test_epic_kitchens_has_two_heads():
  config = load('epic_kitchens/vivit_large_factorised_encoder.py')
  assert config.model_name == 'vivit_multihead_classification'
  assert tuple(config.dataset_configs.class_splits) == (300, 97)
  assert tuple(config.dataset_configs.split_names) == ('noun', 'verb')
  assert config.dataset_configs.num_classes == 397


def test_models_without_a_class_token_pool_globally():
  for rel in ('kinetics400/vivit_base_factorised_self_attention.py',
              'kinetics400/vivit_base_factorised_dot_product.py'):
    config = load(rel)
    assert config.model.classifier == 'gap'
    assert config.init_from.model_config.model.classifier == 'token'  # The ViT it starts from has one.
    assert config.model.attention_config.attention_kernel_init_method == 'xavier'
  assert load('kinetics400/vivit_base_spatial_only_baseline.py').model.attention_config.spatial_only_baseline


def test_shipped_configs_take_no_presets():
  with pytest.raises(ValueError, match='no presets'):
    load_config(str(ROOT / 'configs' / 'kinetics400' / 'vivit_base_k400.py') + ':tiny')
