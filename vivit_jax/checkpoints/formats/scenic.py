"""Scenic (Flax msgpack) checkpoints: read the params of a train state, and write one.

Scenic saves its train state with `flax.training.checkpoints`: one msgpack file per step, `checkpoint_<step>`
in the work directory (the released model zoo ships a single file named `checkpoint`). The params sit at
`optimizer/target` in flax.optim-era states (the released ViViT checkpoints), at `params` in optax-era
states, and at `opt/target` in big_vision-like states. Arrays are msgpack extension types that
`flax.serialization.msgpack_restore` decodes from (shape, dtype name, raw bytes): nothing is unpickled, and
an object dtype cannot be decoded at all.
"""

import os
import re
from typing import Any

import numpy as np
from flax import serialization

from vivit_jax.checkpoints.formats import as_numpy_tree
from vivit_jax.checkpoints.manager import CheckpointError

LAYOUTS = ('optax', 'flax_optim')
_STEP_FILE = re.compile(r'^checkpoint_(\d+)$')
# Where the params live in a restored state dict, tried in this order.
_PARAMS_PATHS = (('params',), ('optimizer', 'target'), ('opt', 'target'))
# msgpack map headers (fixmap, map16, map32): a Flax state dict starts with one of them.
_MAP_FIRST_BYTES = frozenset(range(0x80, 0x90)) | {0xde, 0xdf}


def is_msgpack_file(path: str) -> bool:
  """Whether `path` is a file whose first byte opens a msgpack map (what a Flax checkpoint file is)."""
  if not os.path.isfile(path):
    return False
  with open(path, 'rb') as f:
    first = f.read(1)
  return bool(first) and first[0] in _MAP_FIRST_BYTES


def step_files(directory: str) -> dict[int, str]:
  """{step: path} of the `checkpoint_<step>` msgpack files in `directory`."""
  found = {}
  for name in os.listdir(directory):
    match = _STEP_FILE.match(name)
    path = os.path.join(directory, name)
    if match and is_msgpack_file(path):
      found[int(match.group(1))] = path
  return found


def is_scenic_dir(directory: str) -> bool:
  """Whether `directory` holds `checkpoint_<step>` msgpack files or a msgpack file named `checkpoint`."""
  return os.path.isdir(directory) and (bool(step_files(directory)) or
                                       is_msgpack_file(os.path.join(directory, 'checkpoint')))


def checkpoint_file(path: str) -> str:
  """The msgpack file that `path` names: itself, or in a directory the newest `checkpoint_<step>` file
  (else the file named `checkpoint`)."""
  if os.path.isfile(path):
    return path
  if not os.path.isdir(path):
    raise CheckpointError(f'No Scenic checkpoint at {path}: no such file or directory')
  steps = step_files(path)
  if steps:
    return steps[max(steps)]
  single = os.path.join(path, 'checkpoint')
  if is_msgpack_file(single):
    return single
  raise CheckpointError(f'No Scenic checkpoint in {path}: looked for msgpack files named checkpoint_<step> '
                        f'or checkpoint; found {sorted(os.listdir(path))[:20]}')


def read_state(path: str) -> dict[str, Any]:
  """The state dict stored in the msgpack file `path` (numpy leaves, read-only)."""
  with open(path, 'rb') as f:
    data = f.read()
  try:
    state = serialization.msgpack_restore(data)
  except Exception as e:  # msgpack raises several types for corrupt data; numpy for object dtypes.
    raise CheckpointError(f'{path} is not a readable Flax msgpack checkpoint: {type(e).__name__}: {e}') from e
  if not isinstance(state, dict):
    raise CheckpointError(f'{path}: expected a Flax state dict, found a msgpack {type(state).__name__}')
  return state


def params_from_state(state: dict[str, Any], source: str) -> dict[str, Any]:
  """The params subtree of a restored Scenic / Flax / big_vision state dict.

  Looks at `params`, `optimizer/target` and `opt/target`; a dict that already is a params tree (it has an
  `embedding`) is returned whole. A target that is a Linen variables dict (`{'params': ...}`) is unwrapped.
  """
  for path in _PARAMS_PATHS:
    node = state
    for key in path:
      node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
      if set(node) == {'params'} and isinstance(node['params'], dict):
        node = node['params']
      return node
  if 'embedding' in state:
    return state
  raise CheckpointError(f'{source}: no params found; looked for {", ".join("/".join(p) for p in _PARAMS_PATHS)}'
                        f' and a bare params tree (with "embedding"); top-level keys: {sorted(state)}')


def load_scenic(path: str) -> dict[str, Any]:
  """The params of a Scenic checkpoint file, or of the newest `checkpoint_<step>` in a directory."""
  file = checkpoint_file(path)
  return as_numpy_tree(params_from_state(read_state(file), file), file)


def save_scenic(path: str, params: dict[str, Any], step: int = 0, layout: str = 'optax') -> None:
  """Writes `params` as a Flax msgpack checkpoint file that Scenic (and `load_params`) read.

  Args:
    path: the file to write; an existing directory gets `checkpoint_<step>` inside it (Flax's file name).
    params: a nested dict of arrays (Scenic naming).
    step: stored as `global_step` (and as the optimizer step for 'flax_optim').
    layout: 'optax' writes `{'params': params, 'global_step': step}`; 'flax_optim' writes the layout of the
      released ViViT checkpoints, `{'optimizer': {'target': params, 'state': {'step': step}},
      'global_step': step}`.
  """
  if layout not in LAYOUTS:
    raise ValueError(f'save_scenic: layout must be one of {LAYOUTS}, got {layout!r}')
  path = os.fspath(path)
  if os.path.isdir(path):
    path = os.path.join(path, f'checkpoint_{step}')
  tree = as_numpy_tree(params, 'save_scenic params')
  global_step = np.asarray(step, np.int64)
  if layout == 'optax':
    state = {'params': tree, 'global_step': global_step}
  else:
    state = {'optimizer': {'target': tree, 'state': {'step': global_step}}, 'global_step': global_step}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  temporary = f'{path}.tmp-{os.getpid()}'
  with open(temporary, 'wb') as f:
    f.write(serialization.msgpack_serialize(state))
  os.replace(temporary, path)  # Readers never see a half-written file.
