"""Readers and writers of other projects' checkpoint formats; `vivit_jax.checkpoints.loading` picks one.

Every reader returns a plain nested dict of `np.ndarray` in Scenic naming (dtypes as stored) and never
unpickles. `as_numpy_tree` is their shared last step; `check_weights` is the one check `load_params` applies to
what any of them read.
"""

from typing import Any

import jax
import numpy as np

from vivit_jax.checkpoints.manager import CheckpointError


def as_numpy_tree(tree: Any, source: str, prefix: str = '') -> dict[str, Any]:
  """`tree` with every leaf a writable numeric `np.ndarray`, mappings as plain dicts, empty dicts dropped.

  Args:
    tree: a nested mapping whose leaves are arrays (numpy, jax, or anything `np.asarray` reads numerically).
    source: the file or directory the tree came from, for error messages.
    prefix: the path of `tree` inside the checkpoint, for error messages.

  Raises:
    CheckpointError: a leaf is not a numeric array (an object array, a string, an unknown msgpack type...).
  """
  if not hasattr(tree, 'items'):
    raise CheckpointError(f'{source}: expected a mapping of parameters at {prefix or "the top level"}, '
                          f'found {type(tree).__name__}')
  out = {}
  for key, value in tree.items():
    path = f'{prefix}/{key}' if prefix else str(key)
    if hasattr(value, 'items'):
      sub = as_numpy_tree(value, source, path)
      if sub:
        out[str(key)] = sub
      continue
    if isinstance(value, (str, bytes)) or value is None:
      raise CheckpointError(f'{source}: parameter {path} is a {type(value).__name__}, not an array')
    array = np.asarray(value)
    if not array.flags.writeable:  # msgpack buffers are read-only; callers may edit what they load.
      array = array.copy()
    if array.dtype.kind not in 'biuf' and not array.dtype.name.startswith(('bfloat', 'float')):
      raise CheckpointError(f'{source}: parameter {path} has dtype {array.dtype}; expected a numeric array')
    out[str(key)] = array
  return out


def _listed(paths: list[str], limit: int = 8) -> str:
  return ', '.join(paths[:limit]) + (f' ... ({len(paths)} in all)' if len(paths) > limit else '')


def check_weights(tree: dict[str, Any], source: str) -> None:
  """The one check every loaded params tree passes, whatever its format: it holds at least one array, every
  array is floating point, and every value is finite.

  Args:
    tree: the nested dict of arrays a reader returned (`as_numpy_tree`'s output).
    source: the file or directory it came from, named in the error.

  Raises:
    CheckpointError: an empty tree; integer or boolean arrays (naming each parameter and its dtype); NaN or inf
      values (naming each parameter and how many of its values are not finite).
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  if not leaves:
    raise CheckpointError(f'{source}: the checkpoint holds no parameter arrays (an empty params tree); expected '
                          'the floating-point weights of a ViViT or ViT')
  not_float, not_finite = [], []
  for keys, leaf in leaves:
    path, array = jax.tree_util.keystr(keys, simple=True, separator='/'), np.asarray(leaf)
    if array.dtype.kind in 'biu':
      not_float.append(f'{path} ({array.dtype})')
    elif array.dtype.kind == 'f' or array.dtype.name.startswith(('bfloat', 'float')):
      bad = array.size - int(np.count_nonzero(np.isfinite(array)))
      if bad:
        not_finite.append(f'{path} ({bad} of {array.size} values)')
  if not_float:
    raise CheckpointError(f'{source}: expected floating-point weights; found integer or boolean parameters '
                          f'{_listed(not_float)}')
  if not_finite:
    raise CheckpointError(f'{source}: expected finite weights; found NaN or inf in parameters '
                          f'{_listed(not_finite)} (a diverged run? load an earlier step)')
