"""Frozen parameters (`optimizer_configs.freeze`): no update, no weight decay, no optimizer state, bit for bit the
same after training; a regex that matches nothing is an error naming it; `--dry_run` counts what trains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tiny import tiny_config
from tests.train.finetune_testing import flat, params_and_grads, random_state, train_one_step
from tests.train_testing import train_config
from vivit_jax import sharding, train
from vivit_jax.config import ConfigError, load_config
from vivit_jax.train import dry_run, param_groups
from vivit_jax.train import state as state_lib
from vivit_jax.train.optim import create_optimizer

LINEAR_PROBE = ('(?!output_projection/).*',)  # Everything but the classifier.
HEAD = 12 * 5 + 5  # The tiny models' output_projection: d=12, 5 classes.
LR = 0.1


def array_paths(tree):
  """'/'-joined paths of the leaves that hold arrays (not scalar counters)."""
  return [sharding.path_name(p) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0] if np.ndim(x) >= 1]


def test_a_linear_probe_holds_adam_moments_for_the_head_only():
  config = tiny_config('spacetime', optimizer='adam', optimizer_configs__freeze=LINEAR_PROBE)
  params, _ = params_and_grads(config)
  paths = array_paths(create_optimizer(config, lambda s: LR).init(params))
  assert len(paths) == 4 and all(p.endswith(('output_projection/kernel', 'output_projection/bias')) for p in paths)
  assert sum(p.endswith('kernel') for p in paths) == 2  # mu and nu.


def test_frozen_leaves_get_no_update_no_decay_and_do_not_count_in_the_clipping_norm():
  wd, l2, max_norm = 0.1, 0.01, 1.0
  config = tiny_config('spacetime', optimizer='sgd', optimizer_configs__weight_decay=wd, l2_decay_factor=l2,
                       max_grad_norm=max_norm, optimizer_configs__freeze=('embedding/.*', 'Transformer/.*'))
  params, grads = params_and_grads(config)
  grads = jax.tree_util.tree_map(lambda g: g * 1e4, grads)  # Huge gradients: the frozen ones would dominate.
  grads['output_projection'] = {'kernel': jnp.full((12, 5), 0.01), 'bias': jnp.full((5,), -0.02)}
  grads['cls'] = jnp.full((1, 1, 12), 0.03)
  tx = create_optimizer(config, lambda s: LR)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  got, p, g = flat(updates), flat(params), flat(grads)
  trainable = {'cls', 'output_projection/kernel', 'output_projection/bias'}
  penalised = {k: g[k] + l2 * p[k] for k in trainable}
  norm = np.sqrt(sum(np.sum(penalised[k].astype(np.float64) ** 2) for k in trainable))
  assert norm < max_norm  # Over the trainable leaves only: no clipping.
  for path, update in got.items():
    if path in trainable:
      expected = -LR * (penalised[path] + (wd * p[path] if p[path].ndim >= 2 else 0.0))
      np.testing.assert_allclose(update, expected, rtol=1e-5, atol=1e-9, err_msg=path)
    else:
      assert not np.any(update), path


def with_negative_zero(run):
  """A random state whose frozen embedding bias starts at -0.0 (a zero update would turn it into +0.0)."""
  state = random_state(run)
  params = flat(state.params)
  params['embedding/bias'] = np.full_like(params['embedding/bias'], -0.0)
  return state_lib.with_params(state, jax.tree_util.tree_map(np.asarray, unflatten(params)), run.shardings)


def unflatten(flat_tree):
  out = {}
  for path, value in flat_tree.items():
    *parents, leaf = path.split('/')
    node = out
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return out


def test_training_leaves_frozen_params_and_their_ema_bit_for_bit():
  config = train_config('spacetime', optimizer='adamw', optimizer_configs__weight_decay=0.1, l2_decay_factor=0.01,
                        max_grad_norm=1.0, ema_decay=0.9, gradient_accumulation_steps=2,
                        optimizer_configs__layerwise_decay=0.7,
                        optimizer_configs__freeze=('embedding/.*', 'cls', 'Transformer/encoderblock_0/.*'))
  run, before, after, metrics = train_one_step(config, with_negative_zero)
  old, new, ema = flat(before.params), flat(after.params), flat(after.ema_params)
  frozen = {k for k in old if k.startswith(('embedding/', 'cls', 'Transformer/encoderblock_0/'))}
  assert len(frozen) == 19
  for path in old:
    if path in frozen:
      assert old[path].tobytes() == new[path].tobytes() == ema[path].tobytes(), path
    elif not path.endswith('key/bias'):  # Softmax ignores the key bias: it has no gradient.
      assert not np.array_equal(old[path], new[path]), path
  assert np.all(np.signbit(new['embedding/bias']))
  assert np.isfinite(float(metrics['grad_norm'])) and float(metrics['grad_norm']) > 0
  moments = array_paths(after.opt_state)  # Each moment's path ends with its parameter's: none for frozen ones.
  assert len(moments) == 2 * (len(old) - len(frozen))
  assert not any(p.endswith(tuple(frozen)) for p in moments)


def test_a_regex_that_matches_nothing_is_an_error_naming_it_and_real_paths():
  config = tiny_config('spacetime', optimizer_configs__freeze=('Transformer/.*', 'embedings/.*'))
  params, _ = params_and_grads(config)
  with pytest.raises(ConfigError, match=r"'optimizer_configs.freeze' regex 'embedings/.\*' matches no parameter "
                     r"\(a regex must match a whole '/'-joined path\); parameters are e.g. 'embedding/bias'"):
    create_optimizer(config, lambda s: LR).init(params)
  with pytest.raises(ConfigError, match="regex 'embedding' matches no parameter"):  # Whole paths only.
    train.setup(train_config('spacetime', optimizer_configs__freeze=('embedding',)))
  with pytest.raises(ConfigError, match=r"freezes every parameter; expected some left to train"):
    create_optimizer(tiny_config('spacetime', optimizer_configs__freeze=('.*',)), lambda s: LR).init(params)


def test_freeze_is_checked_when_the_config_loads():
  synthetic = 'configs/synthetic.py'
  with pytest.raises(ConfigError, match=r"'optimizer_configs.freeze' holds '\(unclosed', which is not a regex"):
    load_config(synthetic, ["optimizer_configs.freeze=('(unclosed',)"])
  assert load_config(synthetic, ['optimizer_configs.freeze=embedding/.*']).optimizer_configs.freeze == (
      'embedding/.*',)  # One regex may be given as a string.
  assert "'optimizer_configs.layerwise_decay' is 1.5; expected a decay in (0, 1]" in str(
      pytest.raises(ConfigError, load_config, synthetic, ['optimizer_configs.layerwise_decay=1.5']).value)


def test_dry_run_counts_what_trains_and_the_state_shrinks():
  plain = train.setup(train_config('spacetime', optimizer='adam'))
  probe = train.setup(train_config('spacetime', optimizer='adam', optimizer_configs__freeze=LINEAR_PROBE))
  moments = lambda run: sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(run.abstract_state.opt_state)
                            if x.ndim >= 1)
  assert moments(probe) == 2 * HEAD * 4  # float32 mu and nu of the head.
  assert moments(plain) == 2 * 4 * sum(x.size for x in jax.tree_util.tree_leaves(plain.abstract_state.params))
  text = dry_run.describe(train_config('spacetime', optimizer='adam', optimizer_configs__freeze=LINEAR_PROBE),
                          compile_step=False)
  total = sum(x.size for x in jax.tree_util.tree_leaves(probe.abstract_state.params))
  assert (f'trainable        {HEAD:,} parameters ({100 * HEAD / total:.2f}%); {total - HEAD:,} frozen by '
          'optimizer_configs.freeze (no update, no optimizer state)') in text
  assert 'state per device' in text and 'optimizer state' in text


def test_with_params_gives_the_ema_buffers_of_its_own():
  """`init_from` with an EMA: the train step donates the state, and a buffer shared by params and EMA cannot be
  donated twice."""
  run = train.setup(train_config('spacetime', ema_decay=0.9))
  state = random_state(run)
  state = state_lib.with_params(state, flat_to_params(state.params), run.shardings)
  pointers = lambda tree: {s.data.unsafe_buffer_pointer() for x in jax.tree_util.tree_leaves(tree)
                           for s in x.addressable_shards}
  assert not pointers(state.params) & pointers(state.ema_params)


def flat_to_params(params):
  return jax.tree_util.tree_map(jnp.asarray, jax.device_get(params))


def test_no_gradient_is_computed_for_frozen_params():
  params = {'embedding': {'kernel': jnp.ones((2, 2))}, 'output_projection': {'kernel': jnp.ones((2, 2))}}
  loss = lambda p: jnp.sum(jax.tree_util.tree_leaves(param_groups.stop_frozen_gradients(p, LINEAR_PROBE))[0] *
                           jax.tree_util.tree_leaves(p)[1] ** 2)
  grads = flat(jax.grad(loss)(params))
  assert not np.any(grads['embedding/kernel']) and np.all(grads['output_projection/kernel'] == 2.0)


def test_a_frozen_run_resumes_from_its_checkpoint(tmp_path):
  # A constant learning rate: the schedule does not depend on the run's length, so both runs share one compiled
  # train step.
  settings = dict(optimizer='adam', optimizer_configs__freeze=('embedding/.*', 'Transformer/encoderblock_0/.*'),
                  ema_decay=0.9, checkpoint_steps=1, lr_configs__warmup_steps=None, lr_configs__factors='constant')
  first, _ = train.train(train_config('spacetime', num_training_steps=1, **settings), str(tmp_path))
  second, results = train.train(train_config('spacetime', num_training_steps=2, **settings), str(tmp_path))
  assert results['status'] == 'completed' and results['step'] == 2
  old, new = flat(first.params), flat(second.params)
  assert old['embedding/kernel'].tobytes() == new['embedding/kernel'].tobytes()
  assert not np.array_equal(old['output_projection/kernel'], new['output_projection/kernel'])
