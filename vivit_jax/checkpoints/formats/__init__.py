"""Readers and writers of other projects' checkpoint formats; `vivit_jax.checkpoints.loading` picks one.

Every reader returns a plain nested dict of `np.ndarray` in Scenic naming (dtypes as stored) and never
unpickles. `as_numpy_tree` is their shared last step.
"""

from typing import Any

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
