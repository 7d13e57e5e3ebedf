"""Loading configs: Scenic's published style, files, presets and overrides."""

import inspect
import re
import textwrap
import warnings

import ml_collections
import pytest

from tests.config.config_testing import (SCENIC_BASE_K400, SCENIC_LARGE_FE_SSV2, SHIPPED_BASE_K400, STRAY_KEYS,
                                         abstract_params, error_of, scenic_config, vit_block_params)
from tests import paths
from vivit_jax.config import ConfigError, ConfigWarning, defaults, load_config


# Scenic's published files.


@pytest.mark.parametrize('path', [SCENIC_BASE_K400, SCENIC_LARGE_FE_SSV2])
def test_scenic_fixture_warns_for_exactly_the_stray_keys(path):
  with pytest.warns(ConfigWarning) as record:
    load_config(path)
  assert all(issubclass(w.category, ConfigWarning) for w in record), [str(w.message) for w in record]
  warned = {re.match(r"config key '([^']+)'", str(w.message)).group(1) for w in record}
  assert warned == STRAY_KEYS
  assert len(record) == len(STRAY_KEYS)


def test_scenic_base_k400_settings():
  with pytest.warns(ConfigWarning):
    config = load_config(SCENIC_BASE_K400)
  assert config.is_locked
  m = config.model
  assert m.attention_config.type == 'spacetime'
  assert tuple(m.patches.size) == (16, 16, 2)
  assert (m.hidden_size, m.num_heads, m.mlp_dim, m.num_layers) == (768, 12, 3072, 12)
  assert m.classifier == 'token'
  assert m.dropout_rate == 0.0 and m.attention_dropout_rate == 0.0
  assert m.temporal_encoding_config.kernel_init_method == 'central_frame_initializer'
  d = config.dataset_configs
  assert d.num_classes == 400
  assert (d.num_frames, d.stride, d.min_resize, d.crop_size) == (32, 2, 256, 224)
  assert d.one_hot_label is True  # The real key keeps its default; the stray one is dropped.
  assert d.tables.train == 'train.tfrecord@1024'
  assert d.examples_per_subset.test == 34579
  assert d.augmentation_params.do_color_augment is True
  assert config.l2_decay_factor == 0.0 and isinstance(config.l2_decay_factor, float)
  assert config.max_grad_norm == 1.0
  assert config.label_smoothing is None
  assert config.num_training_epochs == 30.0
  assert config.lr_configs.warmup_steps == 8390  # Scenic's 2.5 * 3356 = 8390.0.
  assert config.lr_configs.steps_per_cycle == 30 * 3356
  assert config.init_from.model_config.model.classifier == 'token'
  assert config.init_from.checkpoint_path == 'path/to/vit_b16_imagenet21k'
  # Keys the file never sets take vivit_jax's defaults.
  assert config.optimizer_configs.momentum == 0.9
  assert config.model.stochastic_droplayer_rate == 0.0


def test_scenic_large_fe_ssv2_settings():
  with pytest.warns(ConfigWarning):
    config = load_config(SCENIC_LARGE_FE_SSV2)
  m = config.model
  assert m.attention_config.type == 'factorized_encoder'
  assert tuple(m.patches.size) == (16, 16, 2)  # The second assignment wins.
  assert m.hidden_size == 1024
  s, t = m.spatial_transformer, m.temporal_transformer
  assert (s.num_heads, s.mlp_dim, s.num_layers) == (16, 4096, 24)
  assert (t.num_heads, t.mlp_dim, t.num_layers) == (16, 4096, 4)
  assert m.stochastic_droplayer_rate == 0.3
  d = config.dataset_configs
  assert d.num_classes == 174
  assert (d.min_resize, d.crop_size) == (288, 256)
  assert d.augmentation_params.do_rand_augment is True
  assert d.augmentation_params.rand_augment_magnitude == 20
  assert config.mixup.alpha == 0.3
  assert config.label_smoothing == 0.3
  assert config.lr_configs.warmup_steps == 168913 // 64 // 2
  assert config.init_from.checkpoint_path is None  # Reset at the end of the file, as Scenic's is.
  assert config.init_from.positional_embed_size_change == 'resize'


def test_scenic_base_k400_builds_the_88954000_parameter_model():
  with pytest.warns(ConfigWarning):
    config = load_config(SCENIC_BASE_K400)
  count, logits = abstract_params(config, 32, 224)
  assert count == 88_954_000
  assert logits == (1, 400)


def test_scenic_large_fe_ssv2_builds():
  with pytest.warns(ConfigWarning):
    config = load_config(SCENIC_LARGE_FE_SSV2)
  count, logits = abstract_params(config, 32, 256)
  d, mlp, classes = 1024, 4096, 174
  expected = (
      2 * 16 * 16 * 3 * d + d  # Tubelet embedding.
      + d + (1 + 16 * 16) * d + 24 * vit_block_params(d, mlp) + 2 * d  # Spatial: cls, posemb, blocks, norm.
      + d + (1 + 16) * d + 4 * vit_block_params(d, mlp) + 2 * d  # Temporal: cls, posemb, blocks, norm.
      + d * classes + classes)  # Head.
  assert count == expected
  assert logits == (1, classes)


def test_scenic_epic_style_without_num_classes_takes_the_sum_of_class_splits():
  config = scenic_config()
  config.model_name = 'vivit_multihead_classification'
  del config.dataset_configs['num_classes']  # Scenic's EPIC file sets none.
  config.dataset_configs.class_splits = [300, 97]
  config.dataset_configs.split_names = ['noun', 'verb']
  assert load_config(config).dataset_configs.num_classes == 397


def test_scenic_fractional_warmup_steps_load():
  config = scenic_config()
  config.lr_configs.warmup_steps = 2.5 * (363213 // 64)
  assert abs(load_config(config).lr_configs.warmup_steps - 14187.5) <= 0.5


# Files, presets and overrides.


def test_config_file_that_does_not_parse(tmp_path):
  path = tmp_path / 'broken.py'
  path.write_text('def get_config(:\n  return None\n')
  with pytest.raises(ConfigError) as info:
    load_config(str(path))
  assert str(path) in str(info.value)
  assert 'does not parse' in str(info.value)


def test_missing_config_file(tmp_path):
  path = tmp_path / 'missing.py'
  with pytest.raises(ConfigError, match='not found'):
    load_config(str(path))


def test_config_file_without_get_config(tmp_path):
  path = tmp_path / 'empty.py'
  path.write_text('X = 1\n')
  with pytest.raises(ConfigError, match='defines no get_config'):
    load_config(str(path))


PRESET_FILE = textwrap.dedent('''\
    """A config with presets: `file.py:tiny`."""
    from vivit_jax.config import defaults as default


    def get_config(arg=None):
      config = default.get_config()
      config.dataset_configs.num_classes = 10
      if arg == 'tiny':
        config.model.num_layers = 2
        config.model.hidden_size = 64
        config.model.num_heads = 2
      elif arg is not None:
        raise ValueError(f'unknown preset {arg!r}')
      return config
    ''')


def test_file_presets(tmp_path):
  path = tmp_path / 'with_presets.py'
  path.write_text(PRESET_FILE)
  full = load_config(str(path))
  tiny = load_config(f'{path}:tiny')
  assert (full.model.num_layers, full.model.hidden_size) == (12, 768)
  assert (tiny.model.num_layers, tiny.model.hidden_size, tiny.model.num_heads) == (2, 64, 2)
  with pytest.raises(ValueError, match='unknown preset'):
    load_config(f'{path}:huge')


def test_overrides():
  config = load_config(SHIPPED_BASE_K400, overrides=['model.num_layers=2'])
  assert config.model.num_layers == 2
  config = load_config(SHIPPED_BASE_K400, overrides=['--config.model.num_layers=3',
                                                     'init_from.checkpoint_path=/ckpt/vit_b16',
                                                     'model.patches.size=(16, 16, 4)'])
  assert config.model.num_layers == 3
  assert config.init_from.checkpoint_path == '/ckpt/vit_b16'
  assert tuple(config.model.patches.size) == (16, 16, 4)


def test_overrides_on_a_scenic_config_with_a_none_subtree():
  config = scenic_config(SCENIC_LARGE_FE_SSV2)
  config.init_from.model_config = None
  config = load_config(config, overrides=['init_from.model_config.model.classifier=gap'])
  assert config.init_from.model_config.model.classifier == 'gap'


def test_override_typo_is_rejected():
  message = error_of(SHIPPED_BASE_K400, overrides=['model.num_layer=2'])
  assert "unknown config key 'model.num_layer'" in message
  assert "did you mean 'model.num_layers'?" in message


def test_override_that_combines_badly_is_rejected():
  message = error_of(SHIPPED_BASE_K400, overrides=['dataset_configs.crop_size=200'])
  assert "'dataset_configs.crop_size' 200" in message


def test_override_without_equals_sign_is_rejected():
  with pytest.raises(ConfigError, match='not of the form key=value'):
    load_config(SHIPPED_BASE_K400, overrides=['model.num_layers'])


def test_wrongly_typed_override_is_a_config_error():
  message = error_of(SHIPPED_BASE_K400, overrides=['model.num_layers=twelve'])
  assert "'model.num_layers' must be an integer" in message


def test_configdict_input_is_not_modified():
  config = scenic_config()
  before = config.to_dict()
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    load_config(config, overrides=['model.num_layers=2'])
  assert config.to_dict() == before
  assert isinstance(config, ml_collections.ConfigDict)


def test_errors_raised_by_a_config_file_name_the_file(tmp_path):
  path = tmp_path / 'broken.py'
  path.write_text('import ml_collections\nundefined_name\n')
  with pytest.raises(ConfigError, match=r'broken\.py.*NameError'):
    load_config(str(path))
  path.write_text('def get_config():\n  return 3\n')
  with pytest.raises(ConfigError, match=r'broken\.py.*returned int'):
    load_config(str(path))


def test_a_path_with_a_colon_and_a_preset(tmp_path):
  folder = tmp_path / 'a:b'
  folder.mkdir()
  path = folder / 'preset.py'
  path.write_text('from vivit_jax.config import defaults\n'
                  'def get_config(arg=None):\n'
                  '  c = defaults.get_config()\n'
                  '  c.dataset_configs.num_classes = int(arg or 7)\n'
                  '  return c\n')
  assert load_config(str(path)).dataset_configs.num_classes == 7
  assert load_config(f'{path}:9').dataset_configs.num_classes == 9


def _leaf_paths(node, prefix=''):
  for key, value in node.items():
    if isinstance(value, ml_collections.ConfigDict) and key not in ('tables', 'examples_per_subset'):
      yield from _leaf_paths(value, f'{prefix}{key}.')
    else:
      yield prefix + key


def test_every_default_key_is_read_or_is_an_ignored_scenic_key():
  """Read means used outside the defaults and their validation: as `.key` or 'key' in the package's code."""
  sources = [p.read_text() for p in (paths.ROOT / 'vivit_jax').rglob('*.py')
             if p.name not in ('defaults.py', 'validation.py', 'numbers.py')]
  unread = []
  for path in _leaf_paths(defaults.get_config()):
    leaf = path.split('.')[-1]
    pattern = re.compile(rf"(\.{leaf}\b|'{leaf}'|\"{leaf}\")")
    if not any(pattern.search(text) for text in sources):
      unread.append(path)
  assert sorted(unread) == sorted(defaults.IGNORED_SCENIC_KEYS)
  for path in defaults.IGNORED_SCENIC_KEYS:  # Each documented as not read, beside its default.
    leaf = path.split('.')[-1]
    line = next(l for l in inspect.getsource(defaults).splitlines() if re.search(rf'\.{leaf} = ', l))
    assert "Scenic's key, not read" in line, line


def test_an_ignored_scenic_key_set_to_a_value_not_honoured_warns():
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # The values vivit_jax behaves as: silent.
    load_config(scenic_config(), ['trainer_name=vivit_trainer', 'debug_train=False'])
  for override, key in (('trainer_name=classification_trainer', 'trainer_name'),
                        ('multicrop_clips_per_device=4', 'multicrop_clips_per_device'),
                        ('dataset_configs.one_hot_label=False', 'dataset_configs.one_hot_label'),
                        ('debug_eval=True', 'debug_eval')):
    with pytest.warns(ConfigWarning, match=rf"config key '{re.escape(key)}' is .*which vivit_jax ignores"):
      load_config(scenic_config(), [override])
