"""The device mesh, partition rules, sharded state creation and global batches on 8 simulated CPU devices."""

import math

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tests.tiny import tiny_config
from vivit_jax.train import optim
from vivit_jax import sharding as sharding_lib
from vivit_jax.train import state as state_lib
from vivit_jax.models import create_model
from vivit_jax.models.shapes import input_shape
from vivit_jax.sharding import MeshError, leaf_spec

ATTENTION = '/params/Transformer/encoderblock_0/MultiHeadDotProductAttention_0'
MLP = '/params/Transformer/encoderblock_0/MlpBlock_0'


def mesh_config(data, fsdp, model):
  return {'data': data, 'fsdp': fsdp, 'model': model}


@pytest.fixture(scope='module')
def mesh():
  return sharding_lib.create_mesh(mesh_config(2, 2, 2))


def tiny_state_parts(config):
  """(init function, abstract state, shardings) of a tiny model with the project's momentum optimizer."""
  model = create_model(config)
  schedule = optim.create_learning_rate_schedule(config.lr_configs, 10)
  tx = optim.create_optimizer(config, schedule)
  init = state_lib.init_fn(model, tx, input_shape(config), config.rng_seed, use_ema=False)
  mesh = sharding_lib.create_mesh(config.mesh)
  abstract, shardings = state_lib.abstract_state(init, mesh)
  return init, abstract, shardings


@pytest.fixture(scope='module')
def tiny_state():
  """(init function, abstract state, shardings, created state) on the (2, 2, 2) mesh, built once."""
  config = tiny_config(lr_configs__warmup_steps=1.0, mesh__data=2, mesh__fsdp=2, mesh__model=2,
                       model__num_layers=1)
  init, abstract, shardings = tiny_state_parts(config)
  return init, abstract, shardings, state_lib.create_state(init, shardings)


def by_name(tree):
  return {sharding_lib.path_name(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


# Mesh.


@pytest.mark.parametrize('config, expected', [
    (mesh_config(-1, 2, 2), (2, 2, 2)),
    (mesh_config(2, -1, 1), (2, 4, 1)),
    (mesh_config(1, 1, -1), (1, 1, 8)),
    (mesh_config(-1, 1, 1), (8, 1, 1)),
    (mesh_config(2, 2, 2), (2, 2, 2)),
])
def test_mesh_shape_fills_the_minus_one(config, expected):
  assert sharding_lib.mesh_shape(config, 8) == expected


@pytest.mark.parametrize('config', [
    mesh_config(-1, 3, 1),  # 3 does not divide 8.
    mesh_config(-1, 16, 1),  # More devices than there are.
    mesh_config(16, 1, 1),
    mesh_config(2, 2, 1),  # Leaves devices unused.
])
def test_mesh_shape_rejects_sizes_that_do_not_fit(config):
  with pytest.raises(MeshError, match=r'config\.mesh'):
    sharding_lib.mesh_shape(config, 8)


def test_create_mesh_axes_and_devices():
  mesh = sharding_lib.create_mesh(mesh_config(-1, 2, 2))
  assert mesh.axis_names == ('data', 'fsdp', 'model')
  assert dict(mesh.shape) == {'data': 2, 'fsdp': 2, 'model': 2}
  assert mesh.devices.size == 8


def test_create_mesh_on_a_subset_of_devices():
  mesh = sharding_lib.create_mesh(mesh_config(-1, 1, 1), devices=jax.devices()[:4])
  assert dict(mesh.shape) == {'data': 4, 'fsdp': 1, 'model': 1}


# Partition rules.


@pytest.mark.parametrize('name, shape, expected', [
    (f'{ATTENTION}/query/kernel', (12, 2, 6), P('fsdp', 'model', None)),
    (f'{ATTENTION}/key/kernel', (12, 2, 6), P('fsdp', 'model', None)),
    (f'{ATTENTION}/value/kernel', (12, 2, 6), P('fsdp', 'model', None)),
    (f'{ATTENTION}/query/bias', (2, 6), P('model', None)),
    (f'{ATTENTION}/out/kernel', (2, 6, 12), P('model', None, 'fsdp')),
    (f'{MLP}/Dense_0/kernel', (12, 24), P('fsdp', 'model')),
    (f'{MLP}/Dense_0/bias', (24,), P('model')),
    (f'{MLP}/Dense_1/kernel', (24, 12), P('model', 'fsdp')),
    (f'{MLP}/Dense_1/bias', (12,), P()),
    # Model 3 names its MLP 'MlpBlock' (no suffix).
    ('/params/Transformer/encoderblock_0/MlpBlock/Dense_0/kernel', (12, 24), P('fsdp', 'model')),
])
def test_named_parameters_follow_the_rules(mesh, name, shape, expected):
  assert leaf_spec(name, shape, mesh) == expected


def test_an_axis_that_does_not_divide_a_dimension_is_dropped(mesh):
  # 3 heads cannot be split over model=2; d=12 still splits over fsdp.
  assert leaf_spec(f'{ATTENTION}/query/kernel', (12, 3, 4), mesh) == P('fsdp', None, None)
  assert leaf_spec(f'{ATTENTION}/out/kernel', (3, 4, 12), mesh) == P(None, None, 'fsdp')
  # An odd width cannot be split over fsdp=2; 24 hidden units still split over model.
  assert leaf_spec(f'{MLP}/Dense_0/kernel', (13, 24), mesh) == P(None, 'model')
  assert leaf_spec(f'{MLP}/Dense_0/bias', (25,), mesh) == P(None)


def test_optimizer_state_paths_follow_the_parameter_rules(mesh):
  trace = '/opt_state/0/trace/Transformer/encoderblock_0'
  assert leaf_spec(f'{trace}/MlpBlock_0/Dense_0/kernel', (12, 24), mesh) == P('fsdp', 'model')
  assert leaf_spec(f'{trace}/MultiHeadDotProductAttention_0/query/kernel', (12, 2, 6),
                   mesh) == P('fsdp', 'model', None)


def test_scalars_are_replicated(mesh):
  assert leaf_spec('/step', (), mesh) == P()
  assert leaf_spec('/opt_state/1/count', (), mesh) == P()


def test_large_unnamed_leaves_shard_their_largest_divisible_dimension(mesh):
  assert leaf_spec('/params/embedding/kernel', (3, 4096, 6), mesh) == P(None, 'fsdp', None)
  # The largest dimension (4097) is odd: the next largest takes fsdp.
  assert leaf_spec('/params/posembed/pos_embedding', (4097, 64), mesh) == P(None, 'fsdp')
  # No dimension divides: replicated.
  assert leaf_spec('/params/posembed/pos_embedding', (4097, 65), mesh) == P()


def test_small_unnamed_leaves_are_replicated(mesh):
  assert leaf_spec('/params/output_projection/kernel', (12, 5), mesh) == P()
  assert leaf_spec('/params/cls', (1, 1, 12), mesh) == P()
  assert math.prod((127, 128)) < sharding_lib.MIN_FSDP_SIZE
  assert leaf_spec('/params/embedding/kernel', (127, 128), mesh) == P()


def test_large_unnamed_leaves_are_replicated_without_fsdp():
  mesh = sharding_lib.create_mesh(mesh_config(4, 1, 2))
  assert leaf_spec('/params/embedding/kernel', (3, 4096, 6), mesh) == P()


# Sharded state.


def test_create_state_places_every_leaf_on_its_sharding(tiny_state):
  _, abstract, shardings, state = tiny_state
  leaves = jax.tree_util.tree_leaves(state)
  expected = jax.tree_util.tree_leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
  assert len(leaves) == len(expected) > 0
  for leaf, sharding in zip(leaves, expected):
    assert leaf.sharding == sharding
  # The abstract state carries the same shardings.
  for leaf, sharding in zip(jax.tree_util.tree_leaves(abstract), expected):
    assert leaf.sharding == sharding


def test_query_kernel_and_its_momentum_are_actually_split(tiny_state):
  state = by_name(tiny_state[3])
  for name in (f'{ATTENTION}/query/kernel',
               '/opt_state/0/trace/Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel'):
    kernel = state[name]
    assert kernel.shape == (12, 2, 6)
    assert kernel.sharding.spec == P('fsdp', 'model', None)
    assert {s.data.shape for s in kernel.addressable_shards} == {(6, 1, 6)}
  # Replicated leaves are whole on every device.
  assert {s.data.shape for s in state['/step'].addressable_shards} == {()}
  assert {s.data.shape for s in state['/params/cls'].addressable_shards} == {(1, 1, 12)}


def test_sharded_state_holds_the_same_values_as_an_unsharded_init(tiny_state):
  init, _, _, state = tiny_state
  sharded = by_name(state)
  plain = by_name(jax.jit(init)())  # On one device.
  assert sharded.keys() == plain.keys()
  for name, leaf in plain.items():
    np.testing.assert_allclose(np.asarray(sharded[name]), np.asarray(leaf), rtol=1e-6, atol=0, err_msg=name)


def test_bytes_per_device_shrinks_with_fsdp():
  def state_bytes(**mesh):
    config = tiny_config(lr_configs__warmup_steps=1.0, model__hidden_size=16,
                         **{f'mesh__{k}': v for k, v in mesh.items()})
    _, abstract, shardings = tiny_state_parts(config)
    total = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(abstract))
    return sharding_lib.bytes_per_device(abstract, shardings), total

  replicated, total = state_bytes(data=8, fsdp=1, model=1)
  sharded, total_fsdp = state_bytes(data=1, fsdp=8, model=1)
  assert total == total_fsdp
  assert replicated == total  # Pure data parallelism keeps a whole copy on every device.
  assert sharded < replicated


# Global batches.


def test_global_batch_shards_rows_over_data_and_fsdp(mesh):
  rng = np.random.default_rng(0)
  local = {'inputs': rng.standard_normal((16, 8, 16, 16, 3)).astype(np.float32),
           'label': np.eye(5, dtype=np.float32)[rng.integers(0, 5, 16)],
           'batch_mask': np.ones(16, np.float32)}
  batch = sharding_lib.global_batch(local, mesh)
  assert batch.keys() == local.keys()
  for key, value in batch.items():
    assert isinstance(value, jax.Array)
    assert value.shape == local[key].shape
    assert value.sharding.spec == P(('data', 'fsdp'))
    # 4 data x fsdp groups of 4 rows; the model axis holds copies.
    assert {s.data.shape[0] for s in value.addressable_shards} == {4}
    np.testing.assert_array_equal(np.asarray(value), local[key])
  assert sharding_lib.batch_parallelism(mesh) == 4
