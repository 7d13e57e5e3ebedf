"""Shared by the config tests: Scenic-style fixture configs and error capture."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import pytest

from tests import paths
from vivit_jax.config import ConfigError, load_config
from vivit_jax.models import create_model

FIXTURES = paths.FIXTURES
SCENIC_BASE_K400 = str(FIXTURES / 'scenic_vivit_base_k400.py')
SCENIC_LARGE_FE_SSV2 = str(FIXTURES / 'scenic_vivit_large_fe_ssv2.py')
SHIPPED_BASE_K400 = str(paths.ROOT / 'configs' / 'kinetics400' / 'vivit_base_k400.py')
STRAY_KEYS = {'datset_configs', 'dataset_configs.one_hot_labels'}


def scenic_config(path=SCENIC_BASE_K400):
  """The fixture's ConfigDict (built from scratch, as Scenic's are) without its two stray keys: no warnings."""
  spec = importlib.util.spec_from_file_location('_fixture_' + pathlib.Path(path).stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  del config['datset_configs']
  del config.dataset_configs['one_hot_labels']
  return config


def scenic_file_with(tmp_path, *replacements):
  """A copy of the Scenic B/16x2 K400 fixture with lines replaced (without its stray keys: no warnings).

  ml_collections fixes a field's type at its first assignment, so a wrong type must be written in the file.
  """
  text = pathlib.Path(SCENIC_BASE_K400).read_text()
  for old, new in replacements + (
      ('  config.datset_configs = ml_collections.ConfigDict()\n', ''),
      ('  config.dataset_configs.one_hot_labels = True\n', '')):
    assert text.count(old) == 1, old
    text = text.replace(old, new)
  path = tmp_path / 'scenic_edited.py'
  path.write_text(text)
  return str(path)


def error_of(config, **kwargs):
  with pytest.raises(ConfigError) as info:
    load_config(config, **kwargs)
  return str(info.value)


def abstract_params(config, frames, crop):
  """(parameter count, logits shape) of the config's model, without allocating anything."""
  model = create_model(config)
  logits, variables = jax.eval_shape(lambda: model.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((1, frames, crop, crop, 3))))
  return sum(x.size for x in jax.tree_util.tree_leaves(variables['params'])), logits.shape


def vit_block_params(d, mlp):
  """Pre-LN encoder block: q, k, v, out (kernels and biases), two LayerNorms, a two-layer MLP."""
  return 4 * (d * d + d) + 2 * 2 * d + (d * mlp + mlp) + (mlp * d + d)
