"""Image ViT `.npz` checkpoints: google-research/vision_transformer and big_vision.

Both store a flat dict of arrays whose keys are '/'-joined tree paths. The original ViT files
(`gs://vit_models/...`) hold the ViT tree as trained with pre-Linen Flax: `embedding` (2D kernel
[fh, fw, 3, d]), `cls`, `Transformer/posembed_input/pos_embedding` (1, 1 + gh*gw, d),
`Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3}`,
`Transformer/encoder_norm`, optional `pre_logits`, and `head`. big_vision checkpoints hold the same tree,
maybe under `params/` or `opt/target/` beside the optimizer state, with Linen numbering (LayerNorm_0,
MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0) and, in newer files, the position embedding as a
top-level `pos_embedding` without a [cls] row (big_vision adds it before prepending [cls]) or the blocks
stacked along a leading axis under `Transformer/encoderblock` (a scanned encoder).

`load_vit_npz` strips the prefixes, puts the position embedding at `Transformer/posembed_input/pos_embedding`
(with a zero [cls] row where big_vision left it out, which computes the same function), unstacks scanned
blocks, and keeps the module names otherwise as stored; `convert_pre_linen` renames pre-Linen numbering to
Linen's. Arrays are read with `allow_pickle=False`: an object array is refused, never unpickled.
"""

import math
import os
import re
import zipfile
from typing import Any

import numpy as np
from flax import traverse_util

from vivit_jax.checkpoints.formats import as_numpy_tree
from vivit_jax.checkpoints.manager import CheckpointError

# Prefixes under which big_vision-like files keep the params beside other state, tried in this order.
PARAMS_PREFIXES = ('params/', 'opt/target/', 'optimizer/target/')
_NUMBERED = re.compile(r'^(.*)_(\d+)$')
_LINEN_BLOCK_NAMES = ('MultiHeadDotProductAttention_0', 'MlpBlock_0', 'LayerNorm_1')


def is_npz_file(path: str) -> bool:
  """Whether `path` is a zip archive of `.npy` members (what `np.savez` writes)."""
  if not os.path.isfile(path) or not zipfile.is_zipfile(path):
    return False
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
  return bool(names) and all(name.endswith('.npy') for name in names)


def npz_keys(path: str) -> list[str]:
  """The array names in an `.npz` file, read from the zip directory without loading any array."""
  with zipfile.ZipFile(path) as archive:
    return [name[:-len('.npy')] for name in archive.namelist()]


def npz_flavour(keys: list[str]) -> str:
  """'big_vision' when the keys show a big_vision layout (prefixes, Linen names, top-level posemb, scanned
  blocks), else 'vit_npz' (the original vision_transformer layout)."""
  for key in keys:
    parts = key.split('/')
    if (key.startswith(PARAMS_PREFIXES) or key.startswith('opt/') or parts[0] == 'pos_embedding' or
        'encoderblock' in parts or any(name in parts for name in _LINEN_BLOCK_NAMES)):
      return 'big_vision'
  return 'vit_npz'


def read_npz(path: str) -> dict[str, np.ndarray]:
  """The flat {key: array} of an `.npz` file, refusing pickled (object) arrays."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      if not isinstance(npz, np.lib.npyio.NpzFile):
        raise CheckpointError(f'{path}: expected an .npz archive of arrays, found a single .npy array')
      flat = {}
      for key in npz.files:
        try:
          flat[key] = npz[key]
        except ValueError as e:  # 'Object arrays cannot be loaded when allow_pickle=False', bad headers.
          raise CheckpointError(f'{path}: array {key!r} cannot be read without unpickling or is corrupt '
                                f'({e}); refusing to load it') from e
  except CheckpointError:
    raise
  except Exception as e:  # Not a zip, truncated members, ...
    raise CheckpointError(f'{path} is not a readable .npz file: {type(e).__name__}: {e}') from e
  return flat


def _strip_prefix(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The params part of a big_vision-like flat dict (keys under the first prefix present), else all."""
  for prefix in PARAMS_PREFIXES:
    inside = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
    if inside:
      return inside
  return flat


def _unstack_scanned_blocks(encoder: dict[str, Any], source: str) -> None:
  """`encoderblock/...` with a leading depth axis -> `encoderblock_{i}/...`, in place."""
  stacked = encoder.pop('encoderblock', None)
  if stacked is None:
    return
  flat = traverse_util.flatten_dict(stacked)
  depths = {v.shape[0] if v.ndim else 0 for v in flat.values()}
  if len(depths) != 1 or 0 in depths:
    raise CheckpointError(f'{source}: the scanned Transformer/encoderblock leaves have leading (depth) axes '
                          f'{sorted(depths)}; expected one depth shared by every leaf')
  for i in range(depths.pop()):
    encoder[f'encoderblock_{i}'] = traverse_util.unflatten_dict({k: v[i] for k, v in flat.items()})


def _has_cls_row(length: int) -> bool:
  """Whether a posemb table of `length` rows looks like 1 + a square grid (and not a square grid)."""
  return math.isqrt(length) ** 2 != length and math.isqrt(length - 1) ** 2 == length - 1


def _move_position_embedding(tree: dict[str, Any]) -> None:
  """Puts big_vision's position embedding where Scenic keeps it, in place."""
  encoder = tree.setdefault('Transformer', {})
  if 'pos_embedding' in encoder:  # big_vision before 2022: in the encoder, [cls] row included.
    encoder['posembed_input'] = {'pos_embedding': encoder.pop('pos_embedding')}
  if 'pos_embedding' not in tree:
    return
  posemb = tree.pop('pos_embedding')
  if 'cls' in tree and not _has_cls_row(posemb.shape[1]):
    # big_vision: concat([cls], x + pe); Scenic: concat([cls], x) + pe. Equal with a zero [cls] row.
    posemb = np.concatenate([np.zeros_like(posemb[:, :1]), posemb], axis=1)
  encoder['posembed_input'] = {'pos_embedding': posemb}


def load_vit_npz(path: str) -> dict[str, Any]:
  """The ViT (or ViViT) params tree of an original-ViT or big_vision `.npz` file, in Scenic's layout."""
  flat = _strip_prefix(read_npz(path))
  try:
    tree = traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in flat.items()})
  except Exception as e:  # A key that is both a leaf and a prefix of another key.
    raise CheckpointError(f'{path}: the array names do not form a tree: {e}') from e
  if 'Transformer' in tree or 'pos_embedding' in tree:
    _unstack_scanned_blocks(tree.setdefault('Transformer', {}), path)
    _move_position_embedding(tree)
  return as_numpy_tree(tree, path)


def convert_pre_linen(tree: dict[str, Any]) -> dict[str, Any]:
  """Renumbers pre-Linen module names (one counter per block) to Linen's (one counter per module type).

  `LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3` becomes `LayerNorm_0,
  MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0` (the names of Scenic's ViT and of ViViT's
  blocks); a tree already in Linen numbering comes back unchanged. Applied at every level of the tree.
  """
  if not isinstance(tree, dict):
    return tree

  def order(name: str) -> tuple[str, int]:
    match = _NUMBERED.match(name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)

  counts: dict[str, int] = {}
  renamed = {}
  for name in sorted(tree, key=lambda n: order(n)[1]):
    match = _NUMBERED.match(name)
    new_name = name
    if match:
      module = match.group(1)
      new_name = f'{module}_{counts.get(module, 0)}'
      counts[module] = counts.get(module, 0) + 1
    renamed[new_name] = convert_pre_linen(tree[name])
  return renamed
