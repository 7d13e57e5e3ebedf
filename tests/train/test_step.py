"""The train step itself: identical losses on every mesh, gradient accumulation, EMA, the first step's LR."""

import jax
import numpy as np
import pytest

from tests.train_testing import assert_trees_equal, host_tree, train_config
from vivit_jax import sharding, train
from vivit_jax.train import state as state_lib


def _run_steps(config, devices, steps=3, initial=None):
  """Per-step losses and the final state of `steps` train steps on a mesh over `devices`, from the run's own
  initial state or from `initial` (a host tree) placed on the run's shardings."""
  run = train.setup(config, devices=devices)
  if initial is None:
    state = state_lib.create_state(run.init, run.shardings)
  else:
    state = jax.device_put(initial, run.shardings)
  step_fn = train.jitted_train_step(run)
  losses = []
  for s in range(steps):
    state, metrics = step_fn(state, sharding.global_batch(run.pipeline.train_batch(s), run.mesh))
    losses.append(float(metrics['train/loss']))
  return np.asarray(losses), state


def _mesh_config(kind, data, fsdp, model, **overrides):
  # Width 16 and MLP 32 are divisible by every axis size used here, so FSDP and tensor parallelism
  # really split the kernels. Dropout, stochastic depth and mixup check that randomness ignores the mesh.
  return train_config(kind, mesh__data=data, mesh__fsdp=fsdp, mesh__model=model, model__hidden_size=16,
                      model__mlp_dim=32, model__spatial_transformer__mlp_dim=32,
                      model__temporal_transformer__mlp_dim=32, model__dropout_rate=0.1,
                      model__stochastic_droplayer_rate=0.1, mixup__alpha=0.4, **overrides)


@pytest.mark.parametrize('kind', ['spacetime', 'factorized_encoder'])
def test_same_losses_on_one_device_and_on_every_mesh(kind):
  one = train.setup(_mesh_config(kind, 1, 1, 1), devices=jax.devices()[:1])
  initial = host_tree(state_lib.create_state(one.init, one.shardings))
  reference, _ = _run_steps(_mesh_config(kind, 1, 1, 1), jax.devices()[:1], initial=initial)
  # The (2, 2, 2) mesh creates its own sharded state, which must equal the one-device state; the other meshes
  # start from that state placed on their shards (each sharded initialisation is a compilation of its own).
  mesh = _mesh_config(kind, 2, 2, 2)
  run = train.setup(mesh, devices=jax.devices())
  assert_trees_equal(state_lib.create_state(run.init, run.shardings), initial)
  for data, fsdp, model in ((8, 1, 1), (2, 4, 1), (2, 2, 2)):
    losses, state = _run_steps(_mesh_config(kind, data, fsdp, model), jax.devices(),
                               initial=None if (data, fsdp, model) == (2, 2, 2) else initial)
    np.testing.assert_allclose(losses, reference, rtol=1e-4, err_msg=f'mesh {(data, fsdp, model)}')
  query = state.params['Transformer' if kind == 'spacetime' else 'SpatialTransformer']['encoderblock_0'][
      'MultiHeadDotProductAttention_0']['query']['kernel']
  assert query.addressable_shards[0].data.shape == (8, 1, 8)  # (2, 2, 2): fsdp splits d, model the heads.


def test_accumulated_gradients_equal_the_full_batch_update():
  kwargs = dict(model__dropout_rate=0.0, optimizer='sgd', max_grad_norm=1.0)
  _, full = _run_steps(train_config('spacetime', **kwargs), jax.devices(), steps=2)
  _, accumulated = _run_steps(train_config('spacetime', gradient_accumulation_steps=2, **kwargs),
                              jax.devices(), steps=2)
  for a, b in zip(jax.tree_util.tree_leaves(host_tree(full.params)),
                  jax.tree_util.tree_leaves(host_tree(accumulated.params))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_ema_is_the_decayed_average_of_the_params():
  config = train_config('spacetime', ema_decay=0.75)
  run = train.setup(config)
  initial = host_tree(state_lib.create_state(run.init, run.shardings).params)
  _, state = _run_steps(config, jax.devices(), steps=1)
  expected = jax.tree_util.tree_map(lambda p0, p1: 0.75 * p0 + 0.25 * p1, initial, host_tree(state.params))
  for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(host_tree(state.ema_params))):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_first_step_trains_at_a_non_zero_learning_rate():
  config = train_config('spacetime', lr_configs__warmup_steps=10.0, optimizer='sgd', num_training_steps=20,
                        lr_configs__factors='constant * linear_warmup')
  run = train.setup(config)
  initial = host_tree(state_lib.create_state(run.init, run.shardings).params)
  _, state = _run_steps(config, jax.devices(), steps=1)
  assert float(run.schedule(0)) == pytest.approx(0.01 / 10.0)
  # The head starts at zero (Scenic's init), so the first step moves only the head and its bias.
  head = host_tree(state.params)['output_projection']['kernel']
  assert not np.array_equal(initial['output_projection']['kernel'], head)
