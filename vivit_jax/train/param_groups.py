"""Parameter groups for fine-tuning: which parameters are frozen (`optimizer_configs.freeze`) and how deep each one
sits in the network, for layer-wise learning-rate decay (`optimizer_configs.layerwise_decay`).

Paths are the '/'-joined names of Scenic's parameter tree, e.g. 'Transformer/encoderblock_3/MlpBlock_0/Dense_0/kernel'.

Depth, as BEiT and VideoMAE count it: 0 for the embeddings (tubelet embedding, class token, the first encoder's
positional embedding), i for the i-th encoder block from the input (1..L), L+1 for the head (the last encoder's
final norm, `pre_logits`, `output_projection`). Layer-wise decay multiplies the learning rate of depth i by
decay^(L+1-i): the head trains at the base rate, each block below it `decay` times slower, the embeddings slowest.

- Models 1, 3 and 4 (`spacetime`, `factorized_self_attention_block`, `factorized_dot_product_attention`):
  L = `model.num_layers`, `Transformer/encoderblock_j` is depth j+1 (in Model 3 one block holds both its time and
  its space attention).
- Model 2 (`factorized_encoder`): L = Ls + Lt, the spatial blocks first (`SpatialTransformer/encoderblock_j`: j+1),
  then the temporal ones (`TemporalTransformer/encoderblock_j`: Ls+j+1). What joins the two encoders (the spatial
  encoder's final norm, the temporal class token and positional embedding) takes depth Ls, the depth of the block
  before it, as the embeddings take 0. With `spatial_only_baseline` (no temporal encoder) L = Ls and the spatial
  encoder's final norm belongs to the head.
"""

import difflib
import re
from typing import Any, Dict, Sequence, Tuple

import jax
import ml_collections

from vivit_jax import sharding as sharding_lib
from vivit_jax.config import ConfigError

PyTree = Any
TRAINABLE, FROZEN = 'trainable', 'frozen'
_BLOCK = re.compile(r'(\w+)/encoderblock_(\d+)(/.*)?')


def path_names(tree: PyTree) -> PyTree:
  """The '/'-joined path of every leaf ('Transformer/encoder_norm/scale'), as a tree shaped like `tree`."""
  return jax.tree_util.tree_map_with_path(lambda path, _: sharding_lib.path_name(path).lstrip('/'), tree)


def _layout(config: ml_collections.ConfigDict) -> Tuple[int, Dict[str, int], Dict[str, int]]:
  """(L, {encoder: depth of the block before its first}, {path prefix: depth}) of the config's variant."""
  m = config.model
  if m.attention_config.type != 'factorized_encoder':
    num_layers = m.num_layers
    fixed = {'embedding': 0, 'cls': 0, 'Transformer/posembed_input': 0, 'Transformer/encoder_norm': num_layers + 1}
    return num_layers, {'Transformer': 0}, {**fixed, **_head(num_layers)}
  spatial = m.spatial_transformer.num_layers
  if m.attention_config.spatial_only_baseline:
    fixed = {'embedding': 0, 'cls_SpatialTransformer': 0, 'SpatialTransformer/posembed_input': 0,
             'SpatialTransformer/encoder_norm': spatial + 1}
    return spatial, {'SpatialTransformer': 0}, {**fixed, **_head(spatial)}
  num_layers = spatial + m.temporal_transformer.num_layers
  fixed = {'embedding': 0, 'cls_SpatialTransformer': 0, 'SpatialTransformer/posembed_input': 0,
           'SpatialTransformer/encoder_norm': spatial, 'cls_TemporalTransformer': spatial,
           'TemporalTransformer/posembed_input': spatial, 'TemporalTransformer/encoder_norm': num_layers + 1}
  return num_layers, {'SpatialTransformer': 0, 'TemporalTransformer': spatial}, {**fixed, **_head(num_layers)}


def _head(num_layers: int) -> Dict[str, int]:
  return {'pre_logits': num_layers + 1, 'output_projection': num_layers + 1}


def layer_depth(path: str, config: ml_collections.ConfigDict) -> int:
  """The depth (0 embeddings, 1..L blocks, L+1 head) of the parameter at `path` in the config's model."""
  _, encoders, fixed = _layout(config)
  block = _BLOCK.fullmatch(path)
  if block and block.group(1) in encoders:
    return encoders[block.group(1)] + int(block.group(2)) + 1
  for prefix, depth in fixed.items():
    if path == prefix or path.startswith(prefix + '/'):
      return depth
  raise ValueError(f"'optimizer_configs.layerwise_decay': parameter '{path}' has no known depth in a "
                   f"'{config.model.attention_config.type}' model; expected Scenic's parameter names")


def layer_scales(tree: PyTree, config: ml_collections.ConfigDict) -> PyTree:
  """decay^(L+1-depth) for every leaf of `tree` (params or updates), as a tree of Python floats."""
  decay = float(config.optimizer_configs.layerwise_decay)
  num_layers = _layout(config)[0]
  return jax.tree_util.tree_map(lambda name: decay ** (num_layers + 1 - layer_depth(name, config)),
                                path_names(tree))


def frozen_mask(tree: PyTree, patterns: Sequence[str]) -> PyTree:
  """True for every leaf whose path some regex of `patterns` matches whole (re.fullmatch)."""
  compiled = [re.compile(p) for p in patterns]
  return jax.tree_util.tree_map(lambda name: any(c.fullmatch(name) for c in compiled), path_names(tree))


def labels(tree: PyTree, patterns: Sequence[str]) -> PyTree:
  """FROZEN or TRAINABLE for every leaf (the labels of optax.partition). Raises ConfigError for a regex that
  matches no parameter, naming the regex and the closest real paths, and when every parameter would be frozen."""
  names = jax.tree_util.tree_leaves(path_names(tree))
  for pattern in patterns:
    if not any(re.fullmatch(pattern, name) for name in names):
      close = difflib.get_close_matches(pattern, names, n=4, cutoff=0.0) or names[:4]
      raise ConfigError(f"'optimizer_configs.freeze' regex {pattern!r} matches no parameter (a regex must match a "
                        f"whole '/'-joined path); parameters are e.g. {', '.join(repr(n) for n in close)}")
  mask = frozen_mask(tree, patterns)
  if names and all(jax.tree_util.tree_leaves(mask)):
    raise ConfigError(f"'optimizer_configs.freeze' {list(patterns)} freezes every parameter; expected some left "
                      "to train (e.g. '(?!output_projection/).*' trains the head only)")
  return jax.tree_util.tree_map(lambda frozen: FROZEN if frozen else TRAINABLE, mask)


def split_counts(params: PyTree, patterns: Sequence[str]) -> Tuple[int, int]:
  """(trainable, frozen) parameter counts; `params` may hold arrays or shapes."""
  counts = [0, 0]
  for leaf, frozen in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(frozen_mask(params, patterns))):
    counts[int(frozen)] += int(leaf.size)
  return counts[0], counts[1]


def stop_frozen_gradients(params: PyTree, patterns: Sequence[str]) -> PyTree:
  """`params` with the frozen leaves behind jax.lax.stop_gradient, so that no gradient is computed for them
  (nor, when everything below the head is frozen, through the backbone)."""
  return jax.tree_util.tree_map(lambda p, frozen: jax.lax.stop_gradient(p) if frozen else p, params,
                                frozen_mask(params, patterns))


def keep_frozen(old: PyTree, new: PyTree, patterns: Sequence[str]) -> PyTree:
  """`new` with the frozen leaves taken from `old`: bit for bit unchanged (adding a zero update would turn -0.0
  into 0.0)."""
  return jax.tree_util.tree_map(lambda o, n, frozen: o if frozen else n, old, new, frozen_mask(old, patterns))

