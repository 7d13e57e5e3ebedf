"""CheckpointManager and PreemptionWatcher on 8 simulated CPU devices."""

import os
import re
import signal
import warnings
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vivit_jax.checkpoints import CheckpointError, CheckpointManager, PreemptionWatcher


@flax.struct.dataclass
class TinyState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  ema_params: Any = None


_TX = optax.sgd(0.1, momentum=0.9)


def make_state(seed: int = 0, kernel_shape: tuple[int, int] = (4, 8), with_ema: bool = False,
               with_bias: bool = True) -> TinyState:
  """A state whose every leaf (momentum included) holds seed-dependent, non-trivial values."""
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  dense = {'kernel': jax.random.normal(k1, kernel_shape)}
  if with_bias:
    dense['bias'] = jax.random.normal(k2, kernel_shape[-1:])
  params = {'Dense_0': dense}
  grads = jax.tree.map(lambda x: x * 0.5 + 1.0, params)
  _, opt_state = _TX.update(grads, _TX.init(params), params)
  return TinyState(step=jnp.asarray(seed + 1, jnp.int32), params=params, opt_state=opt_state, rng=k3,
                   ema_params=jax.tree.map(lambda x: x * 2, params) if with_ema else None)


def shardings_for(tree: Any, mesh: jax.sharding.Mesh, kernel_spec: P) -> Any:
  """Kernels (parameters and their momentum) get `kernel_spec`; every other leaf is replicated."""
  def rule(path, _):
    name = jax.tree_util.keystr(path, simple=True, separator='/')
    return NamedSharding(mesh, kernel_spec if name.endswith('kernel') else P())
  return jax.tree_util.tree_map_with_path(rule, tree)


def abstract_for(mesh: jax.sharding.Mesh, kernel_spec: P, **state_kwargs) -> Any:
  shapes = jax.eval_shape(lambda: make_state(**state_kwargs))
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, shardings_for(shapes, mesh, kernel_spec))


@pytest.fixture(scope='module')
def mesh():
  return jax.make_mesh((8,), ('data',))


def sharded_state(mesh, seed: int = 0) -> TinyState:
  state = make_state(seed)
  return jax.device_put(state, shardings_for(state, mesh, P(None, 'data')))


def save_steps(workdir, mesh, steps, max_to_keep: int | None = 3, async_save: bool = True) -> dict:
  """Saves sharded_state(mesh, seed=step) at each step, returns {step: state}."""
  states = {}
  with CheckpointManager(workdir, max_to_keep=max_to_keep, save_interval_steps=1,
                         async_save=async_save) as ckpt:
    for step in steps:
      states[step] = sharded_state(mesh, seed=step)
      assert ckpt.save(step, states[step], {'step': step})
  return states


def assert_bitwise_equal(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.dtype == e.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def test_round_trip_is_bitwise_with_requested_shardings_and_metadata(tmp_path, mesh):
  state = sharded_state(mesh, seed=3)
  metadata = {'config': {'model': {'hidden_size': 8}, 'lr': 0.1}, 'data': {'position': [2, 17]},
              'preprocessing': {'mean': [0.5, 0.5, 0.5]}, 'note': None}
  with CheckpointManager(str(tmp_path), save_interval_steps=1) as ckpt:
    assert ckpt.save(10, state, metadata)
  abstract = abstract_for(mesh, P(None, 'data'))
  with CheckpointManager(str(tmp_path)) as ckpt:  # A fresh manager, as after a restart.
    step, restored, restored_metadata = ckpt.restore(abstract)
    assert ckpt.metadata() == metadata
  assert step == 10 and restored_metadata == metadata
  assert isinstance(restored, TinyState) and restored.ema_params is None
  assert_bitwise_equal(restored, state)
  assert restored.rng.dtype == jnp.uint32
  for leaf, want in zip(jax.tree.leaves(restored), jax.tree.leaves(abstract)):
    assert leaf.sharding.is_equivalent_to(want.sharding, leaf.ndim), (leaf.sharding, want.sharding)
  assert restored.params['Dense_0']['kernel'].sharding.spec == P(None, 'data')


@pytest.mark.parametrize('mesh_shape,axes,kernel_spec', [
    ((2, 4), ('data', 'model'), P('data', 'model')),
    ((8,), ('data',), P()),
])
def test_restore_reshards_onto_another_mesh(tmp_path, mesh, mesh_shape, axes, kernel_spec):
  states = save_steps(str(tmp_path), mesh, [5])
  other_mesh = jax.make_mesh(mesh_shape, axes)
  abstract = abstract_for(other_mesh, kernel_spec)
  with CheckpointManager(str(tmp_path)) as ckpt:
    _, restored, _ = ckpt.restore(abstract)
  assert_bitwise_equal(restored, states[5])
  kernel = restored.params['Dense_0']['kernel']
  assert kernel.sharding.is_equivalent_to(NamedSharding(other_mesh, kernel_spec), 2)


def test_max_to_keep_keeps_the_newest(tmp_path, mesh):
  save_steps(str(tmp_path), mesh, [1, 2, 3, 4], max_to_keep=2)
  with CheckpointManager(str(tmp_path), max_to_keep=2) as ckpt:
    assert ckpt.all_steps() == [3, 4]
    assert ckpt.latest_step() == 4
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3', '4']


def corrupt(step_dir, how: str) -> None:
  """Damages the array storage of one checkpoint step the way a torn or partial copy would."""
  files = [os.path.join(root, name) for root, _, names in os.walk(os.path.join(step_dir, 'state'))
           for name in names]
  for path in files:
    is_data = f'{os.sep}d{os.sep}' in path  # OCDBT data files, holding array chunks and zarr headers.
    if how == 'truncate_all' or (how == 'truncate_data' and is_data):
      open(path, 'wb').close()
    elif how == 'delete_data' and is_data:
      os.remove(path)


@pytest.mark.parametrize('how', ['truncate_all', 'truncate_data', 'delete_data'])
def test_unreadable_latest_falls_back_with_a_warning(tmp_path, mesh, how):
  states = save_steps(str(tmp_path), mesh, [1, 2])
  step2_dir = str(tmp_path / 'checkpoints' / '2')
  corrupt(step2_dir, how)
  with CheckpointManager(str(tmp_path)) as ckpt:
    with pytest.warns(RuntimeWarning, match=re.escape(step2_dir)):
      step, restored, metadata = ckpt.restore(abstract_for(mesh, P(None, 'data')))
    with pytest.raises(CheckpointError, match=re.escape(step2_dir)):  # An explicit step never falls back.
      ckpt.restore(abstract_for(mesh, P(None, 'data')), step=2)
  assert (step, metadata) == (1, {'step': 1})
  assert_bitwise_equal(restored, states[1])


def test_saving_after_a_fallback_replaces_the_unreadable_steps(tmp_path, mesh):
  save_steps(str(tmp_path), mesh, [1, 2, 3])
  for step in (2, 3):
    corrupt(str(tmp_path / 'checkpoints' / str(step)), 'truncate_data')
  replacement = sharded_state(mesh, seed=20)
  with CheckpointManager(str(tmp_path), save_interval_steps=2) as ckpt:
    with pytest.warns(RuntimeWarning):
      assert ckpt.restore(abstract_for(mesh, P(None, 'data')))[0] == 1
    assert ckpt.all_steps() == [1, 2, 3]  # Restoring deletes nothing; the first should_save does.
    assert ckpt.should_save(2)
    assert ckpt.save(2, replacement, {'step': 2})
    assert ckpt.all_steps() == [1, 2]
  with CheckpointManager(str(tmp_path)) as ckpt, warnings.catch_warnings():
    warnings.simplefilter('error', RuntimeWarning)
    step, restored, _ = ckpt.restore(abstract_for(mesh, P(None, 'data')))
  assert step == 2
  assert_bitwise_equal(restored, replacement)


def test_no_readable_checkpoint_lists_every_one(tmp_path, mesh):
  save_steps(str(tmp_path), mesh, [1, 2])
  for step in (1, 2):
    corrupt(str(tmp_path / 'checkpoints' / str(step)), 'truncate_data')
  with CheckpointManager(str(tmp_path)) as ckpt, pytest.warns(RuntimeWarning), \
      pytest.raises(CheckpointError) as error:
    ckpt.restore(abstract_for(mesh, P(None, 'data')))
  for step in (1, 2):
    assert str(tmp_path / 'checkpoints' / str(step)) in str(error.value)


def test_mismatch_names_every_path_and_does_not_fall_back(tmp_path, mesh):
  save_steps(str(tmp_path), mesh, [1, 2])
  abstract = abstract_for(mesh, P(None, 'data'), kernel_shape=(4, 16), with_ema=True, with_bias=False)
  with CheckpointManager(str(tmp_path)) as ckpt, warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    with pytest.raises(CheckpointError) as error:
      ckpt.restore(abstract)
  assert not [w for w in caught if 'Cannot read checkpoint' in str(w.message)]  # No fallback to step 1.
  message = str(error.value)
  assert str(tmp_path / 'checkpoints' / '2') in message
  for path in ('params/Dense_0/kernel', 'opt_state/0/trace/Dense_0/kernel'):
    assert re.search(re.escape(path) + r': checkpoint \(4, 8\), model \(4, 16\)', message), message
  assert re.search(r'missing from the checkpoint.*ema_params/Dense_0/kernel \(4, 16\)', message), message
  assert re.search(r'unexpected in the checkpoint.*params/Dense_0/bias \(8,\)', message), message


def test_no_checkpoint_restores_none(tmp_path, mesh):
  with CheckpointManager(str(tmp_path)) as ckpt:
    assert ckpt.restore(abstract_for(mesh, P(None, 'data'))) is None
    assert ckpt.latest_step() is None and ckpt.all_steps() == []
    with pytest.raises(CheckpointError):
      ckpt.metadata()


def test_restore_needs_shardings(tmp_path, mesh):
  save_steps(str(tmp_path), mesh, [1])
  shapes = jax.eval_shape(make_state)
  with CheckpointManager(str(tmp_path)) as ckpt, pytest.raises(ValueError, match='params/Dense_0/kernel'):
    ckpt.restore(shapes)


def test_async_save_then_wait_leaves_a_complete_checkpoint(tmp_path, mesh):
  state = sharded_state(mesh, seed=7)
  expected = jax.tree.map(np.asarray, state)
  ckpt = CheckpointManager(str(tmp_path), save_interval_steps=1, async_save=True)
  assert ckpt.save(7, state, {'k': 'v'})
  jax.tree.map(lambda x: x.delete(), state)  # As a donating train step would: the save owns a host copy.
  ckpt.wait_until_finished()
  assert os.listdir(tmp_path / 'checkpoints') == ['7']  # Committed: no temporary directory left.
  assert os.path.exists(tmp_path / 'checkpoints' / '7' / 'state' / '_METADATA')
  ckpt.close()
  with CheckpointManager(str(tmp_path)) as fresh:
    step, restored, metadata = fresh.restore(abstract_for(mesh, P(None, 'data')))
  assert (step, metadata) == (7, {'k': 'v'})
  assert_bitwise_equal(restored, expected)


def test_interrupted_save_is_ignored_and_cleaned_up(tmp_path, mesh):
  save_steps(str(tmp_path), mesh, [1])
  tmp_dir = tmp_path / 'checkpoints' / '9.orbax-checkpoint-tmp'
  (tmp_dir / 'state').mkdir(parents=True)
  (tmp_dir / 'state' / '_METADATA').write_text('{"trunc')
  with CheckpointManager(str(tmp_path)) as ckpt:
    assert ckpt.all_steps() == [1]
    assert ckpt.restore(abstract_for(mesh, P(None, 'data')))[0] == 1
  assert not tmp_dir.exists()


def test_should_save_and_existing_step_is_a_no_op(tmp_path, mesh):
  state = sharded_state(mesh)
  with CheckpointManager(str(tmp_path), save_interval_steps=10) as ckpt:
    assert not ckpt.should_save(5) and ckpt.should_save(10)
    assert not ckpt.save(5, state, {})
    assert ckpt.save(10, state, {'first': True})
    assert not ckpt.should_save(10)
    assert not ckpt.save(10, state, {'first': False}, force=True)
    assert ckpt.save(15, state, {}, force=True)
    assert ckpt.all_steps() == [10, 15]
    assert ckpt.metadata(10) == {'first': True}


def test_metadata_must_be_json(tmp_path, mesh):
  with CheckpointManager(str(tmp_path), save_interval_steps=1) as ckpt:
    with pytest.raises(TypeError, match='JSON'):
      ckpt.save(1, sharded_state(mesh), {'array': np.zeros(2)})
    assert ckpt.all_steps() == []


def test_preemption_watcher_sets_flag_and_restores_handler():
  def previous(signum, frame):
    del signum, frame
  original = signal.signal(signal.SIGTERM, previous)
  try:
    with PreemptionWatcher() as watcher:
      assert not watcher.requested and not watcher.should_stop(0)
      assert signal.getsignal(signal.SIGTERM) is not previous
      os.kill(os.getpid(), signal.SIGTERM)
      assert watcher.requested
      assert watcher.should_stop(1)
    assert signal.getsignal(signal.SIGTERM) is previous
  finally:
    signal.signal(signal.SIGTERM, original)
