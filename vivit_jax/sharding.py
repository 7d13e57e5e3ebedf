"""The device mesh, partition rules and global batches.

One `jax.sharding.Mesh` with axes (`data`, `fsdp`, `model`) comes from `config.mesh`. Shardings are declared by
rules, never placed by hand:

- batches split their leading axis over `data` and `fsdp` together;
- parameters (and every optimizer-state or EMA leaf that mirrors one) follow `PARAM_RULES`: attention heads and
  MLP hidden units split over `model` (tensor parallelism), the model width over `fsdp` (fully sharded data
  parallelism); leaves no rule names shard their largest dimension over `fsdp` when they are big enough;
- an axis that does not divide a dimension is dropped for that leaf (the leaf is replicated along it), so any
  mesh runs any model;
- scalars (step counts, learning rates) are replicated.

Rules match the '/'-joined names in a leaf's path, so the same rule covers `params/.../query/kernel` and the
momentum buffer `opt_state/.../trace/.../query/kernel`.
"""

import math
import re
from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ('data', 'fsdp', 'model')
BATCH_AXES = ('data', 'fsdp')
# Leaves with fewer elements than this are replicated unless a rule names them (sharding tiny leaves costs
# more in communication than it saves in memory).
MIN_FSDP_SIZE = 2 ** 14

# (regex searched in the leaf's '/'-joined path, spec per dimension). The first match wins.
PARAM_RULES: Tuple[Tuple[str, P], ...] = (
    (r'/(query|key|value)/kernel$', P('fsdp', 'model', None)),  # [d, heads, head_dim]
    (r'/(query|key|value)/bias$', P('model', None)),  # [heads, head_dim]
    (r'/out/kernel$', P('model', None, 'fsdp')),  # [heads, head_dim, d]
    (r'/MlpBlock\w*/Dense_0/kernel$', P('fsdp', 'model')),  # [d, mlp_dim]
    (r'/MlpBlock\w*/Dense_0/bias$', P('model')),  # [mlp_dim]
    (r'/MlpBlock\w*/Dense_1/kernel$', P('model', 'fsdp')),  # [mlp_dim, d]
)


class MeshError(ValueError):
  """A `config.mesh` that does not fit the available devices."""


def mesh_shape(mesh_config, num_devices: int) -> Tuple[int, ...]:
  """(data, fsdp, model) sizes with the one -1 filled by the devices the other axes leave."""
  sizes = [int(mesh_config[a]) for a in MESH_AXES]
  if any(s == 0 or s < -1 for s in sizes) or sizes.count(-1) > 1:
    raise MeshError(f'config.mesh {dict(zip(MESH_AXES, sizes))}: expected positive sizes with at most one -1')
  fixed = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % fixed:
      raise MeshError(f"config.mesh {dict(zip(MESH_AXES, sizes))}: the fixed axes use {fixed} devices, which "
                      f'does not divide the {num_devices} devices available')
    sizes[sizes.index(-1)] = num_devices // fixed
  if math.prod(sizes) != num_devices:
    raise MeshError(f"config.mesh {dict(zip(MESH_AXES, sizes))} uses {math.prod(sizes)} devices; "
                    f'{num_devices} are available (use -1 on one axis to take the rest)')
  return tuple(sizes)


def create_mesh(mesh_config, devices: Optional[Sequence[Any]] = None) -> Mesh:
  """The (data, fsdp, model) mesh over `devices` (default: all devices of all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


def single_device_mesh(device: Optional[Any] = None) -> Mesh:
  """A (1, 1, 1) mesh over one device (default: the first), for work that runs on one device whatever
  `config.mesh` says (prediction, conversion)."""
  auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  return jax.make_mesh((1, 1, 1), MESH_AXES, axis_types=auto, devices=[device or jax.devices()[0]])


def path_name(path) -> str:
  """'/'-joined dict keys and attribute names of a tree path ('opt_state/.../query/kernel')."""
  parts = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      parts.append(str(key.key))
    elif isinstance(key, jax.tree_util.GetAttrKey):
      parts.append(key.name)
    elif isinstance(key, jax.tree_util.SequenceKey):
      parts.append(str(key.idx))
    elif isinstance(key, jax.tree_util.FlattenedIndexKey):
      parts.append(str(key.key))
  return '/' + '/'.join(parts)


def _fit(spec: Sequence[Optional[str]], shape: Tuple[int, ...], mesh: Mesh) -> P:
  """Drops every axis that does not divide its dimension (or that the mesh does not have)."""
  fitted = []
  for dim, axis in zip(shape, spec):
    size = mesh.shape.get(axis, 0) if axis else 1
    fitted.append(axis if axis and size and dim % size == 0 else None)
  return P(*fitted)


def leaf_spec(name: str, shape: Tuple[int, ...], mesh: Mesh) -> P:
  """The partition spec of one state leaf from its path name and shape."""
  if not shape:
    return P()
  for pattern, spec in PARAM_RULES:
    if re.search(pattern, name) and len(spec) == len(shape):
      return _fit(tuple(spec), shape, mesh)
  fsdp = mesh.shape.get('fsdp', 1)
  if fsdp > 1 and math.prod(shape) >= MIN_FSDP_SIZE:
    for dim in sorted(range(len(shape)), key=lambda i: -shape[i]):
      if shape[dim] % fsdp == 0:
        return P(*(('fsdp' if i == dim else None) for i in range(len(shape))))
  return P()


def state_shardings(abstract_state: Any, mesh: Mesh) -> Any:
  """A NamedSharding for every leaf of an abstract (eval_shape) state, by the rules above."""
  def sharding(path, leaf):
    return NamedSharding(mesh, leaf_spec(path_name(path), tuple(leaf.shape), mesh))
  return jax.tree_util.tree_map_with_path(sharding, abstract_state)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (example) axis over data x fsdp; the rest of each array whole."""
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_parallelism(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def global_batch(local_batch: Dict[str, np.ndarray], mesh: Mesh) -> Dict[str, jax.Array]:
  """Global jax.Arrays from this process's rows of the batch (each process passes its own slice)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def bytes_per_device(abstract_state: Any, shardings: Any) -> int:
  """The largest number of bytes the state puts on any one device."""
  total = 0
  for leaf, s in zip(jax.tree_util.tree_leaves(abstract_state), jax.tree_util.tree_leaves(shardings)):
    total += math.prod(s.shard_shape(tuple(leaf.shape))) * np.dtype(leaf.dtype).itemsize
  return total
