"""The files of a Hugging Face directory, read defensively: JSON configs, and safetensors weights in one file or
in shards listed by an index.

Every failure is a `CheckpointError` naming the file: JSON that does not parse or is not an object, a safetensors
file whose header the safetensors library rejects (length prefix, header size beyond the file, non-JSON header,
offsets outside the data, unknown dtype), a tensor whose dtype numpy cannot hold, an index whose `weight_map` is
not {tensor: shard file}, and a shard path that resolves outside the directory (absolute, `..`, or a symlink
out). The one exception to the last rule is the Hugging Face hub cache, whose `snapshots/<revision>/` files are
symlinks into the repository's `blobs/`: a directory named `snapshots/<revision>` may also read from there.
"""

import json
import os
from typing import Any

import numpy as np
import safetensors

from vivit_jax.checkpoints.manager import CheckpointError

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
INDEX_FILE = 'model.safetensors.index.json'
_SAFETENSORS_LAYOUT = ('an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} '
                       'and the tensor bytes it indexes')


def read_json(path: str) -> dict[str, Any]:
  """The JSON object in `path`.

  Raises:
    CheckpointError: naming `path`, when it cannot be opened, is not UTF-8 JSON, or is not a JSON object.
  """
  try:
    with open(path, encoding='utf-8') as f:
      value = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise CheckpointError(f'{path}: expected a JSON object; cannot parse it: {type(e).__name__}: {e}') from e
  except RecursionError as e:
    raise CheckpointError(f'{path}: expected a JSON object; it is nested too deeply to parse') from e
  if not isinstance(value, dict):
    raise CheckpointError(f'{path}: expected a JSON object ({{...}}); found a JSON {type(value).__name__}')
  return value


def _allowed_roots(directory: str) -> list[str]:
  """The real directories that files of `directory` may resolve into: itself, and in the hub cache
  (`<repo>/snapshots/<revision>`) the repository's `blobs/`."""
  real = os.path.realpath(directory)
  roots = [real]
  if os.path.basename(os.path.dirname(real)) == 'snapshots':
    roots.append(os.path.join(os.path.dirname(os.path.dirname(real)), 'blobs'))
  return roots


def inside(directory: str, name: Any, listed_in: str) -> str:
  """`directory/name`, checked to resolve (symlinks followed) inside `directory`.

  Args:
    directory: the checkpoint directory.
    name: a file name as `listed_in` gives it (relative to `directory`).
    listed_in: the file (an index) or rule that named it, for the error.

  Raises:
    CheckpointError: `name` is not a non-empty string, is absolute, or resolves outside the directory.
  """
  if not isinstance(name, str) or not name or '\0' in name:
    raise CheckpointError(f'{listed_in}: expected a shard file name relative to {directory}; found {name!r}')
  if os.path.isabs(name):
    raise CheckpointError(f'{listed_in}: shard path {name!r} is absolute; expected a file name relative to '
                          f'{directory}; refusing to read it')
  path = os.path.join(directory, name)
  real = os.path.realpath(path)
  if not any(os.path.commonpath([real, root]) == root for root in _allowed_roots(directory)):
    raise CheckpointError(f'{listed_in}: shard path {name!r} resolves to {real}, outside the checkpoint '
                          f'directory {os.path.realpath(directory)}; refusing to read it')
  return path


def read_safetensors(file: str) -> dict[str, np.ndarray]:
  """All tensors of one safetensors file as numpy arrays, dtypes as stored (bfloat16 via ml_dtypes).

  Raises:
    CheckpointError: naming `file`: missing, a header the safetensors library rejects, or a tensor whose dtype
      numpy cannot hold (float8, ...).
  """
  if not os.path.isfile(file):
    raise CheckpointError(f'{file}: no such safetensors file')
  tensors = {}
  try:
    with safetensors.safe_open(file, framework='numpy') as f:
      for name in f.keys():
        try:
          tensors[name] = f.get_tensor(name)
        except Exception as e:  # noqa: BLE001  # numpy has no float8 / 4-bit types.
          raise CheckpointError(f'{file}: tensor {name!r} has dtype {f.get_slice(name).get_dtype()}, which numpy '
                                f'cannot hold; expected F32, F16, BF16 or F64 weights') from e
  except CheckpointError:
    raise
  except Exception as e:  # noqa: BLE001  # SafetensorError for every malformed header.
    raise CheckpointError(f'{file}: not a readable safetensors file (expected {_SAFETENSORS_LAYOUT}): '
                          f'{type(e).__name__}: {e}') from e
  return tensors


def shard_files(directory: str) -> list[str]:
  """The paths of the safetensors files holding the directory's weights: model.safetensors, else the shards
  that model.safetensors.index.json lists (each checked to lie inside the directory)."""
  single = os.path.join(directory, WEIGHTS_FILE)
  if os.path.lexists(single):
    return [inside(directory, WEIGHTS_FILE, f'{directory} (its {WEIGHTS_FILE})')]
  index_file = os.path.join(directory, INDEX_FILE)
  weight_map = read_json(index_file).get('weight_map')
  if not isinstance(weight_map, dict) or not weight_map:
    raise CheckpointError(f'{index_file}: expected a non-empty "weight_map" object {{tensor name: shard file}}; '
                          f'found {type(weight_map).__name__}')
  names = []
  for name in weight_map.values():
    if name not in names:
      names.append(name)
  return [inside(directory, name, index_file) for name in names]


def weights_source(directory: str) -> str:
  """What names the weights of `directory` in messages: its one weights file, else the directory."""
  single = os.path.join(directory, WEIGHTS_FILE)
  return single if os.path.isfile(single) else directory


def read_tensors(directory: str) -> dict[str, np.ndarray]:
  """The directory's tensors by transformers name, from model.safetensors or the shards its index lists.

  Raises:
    CheckpointError: naming the file, for any of the failures in the module docstring, or a tensor that two
      shards both hold.
  """
  tensors, origin = {}, {}
  for file in shard_files(directory):
    for name, value in read_safetensors(file).items():
      if name in tensors:
        raise CheckpointError(f'{file}: tensor {name!r} is also in {origin[name]}; expected each tensor in one shard')
      tensors[name], origin[name] = value, file
  return tensors
