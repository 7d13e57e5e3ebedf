"""Tiny model configs shared by the tests (d=12, 2 heads, MLP 24, patches 4x4x2 on 8x16x16 clips)."""

import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.config import defaults as default
from vivit_jax.config import validate_config

VARIANT_CLASSIFIER = {
    'spacetime': 'token',
    'factorized_encoder': 'token',
    'factorized_self_attention_block': 'gap',
    'factorized_dot_product_attention': 'gap',
}


def tiny_config(kind='spacetime', classifier=None, num_classes=5, **overrides):
  """A validated tiny config; `overrides` are dotted keys with '__' for '.' (model__num_layers=3)."""
  c = default.get_config()
  c.dataset_configs.num_classes = num_classes
  c.dataset_configs.num_frames = 8
  c.dataset_configs.crop_size = 16
  m = c.model
  m.hidden_size, m.num_heads, m.mlp_dim, m.num_layers = 12, 2, 24, 2
  for enc in (m.spatial_transformer, m.temporal_transformer):
    enc.num_heads, enc.mlp_dim, enc.num_layers = 2, 24, 1
  m.patches.size = (4, 4, 2)
  m.dropout_rate = m.attention_dropout_rate = 0.0
  m.attention_config.type = kind
  m.classifier = classifier or VARIANT_CLASSIFIER[kind]
  for key, value in overrides.items():
    *parents, leaf = key.split('__')
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  return validate_config(c)


def randomise(params, seed=1, std=0.2):
  """Replaces every leaf (array or shape) with N(0, std^2) noise (N(1, std^2) for LayerNorm scales), so that
  every weight, including the zero-initialised head, influences the logits."""
  rng = np.random.default_rng(seed)

  def noise(path, leaf):
    centre = 1.0 if jax.tree_util.keystr(path).endswith("['scale']") else 0.0
    return jnp.asarray(centre + std * rng.standard_normal(leaf.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(noise, params)
