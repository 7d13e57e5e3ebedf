"""Learning-rate schedules and optimizers against hand calculations (plain Python / numpy, never optax)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vivit_jax.config import defaults as default
from tests.tiny import tiny_config
from vivit_jax.train.optim import create_learning_rate_schedule, create_optimizer, weight_decay_mask

MOMENTUM = 0.9


def lr_config(**overrides):
  """`config.lr_configs` with the defaults of vivit_jax/config/defaults.py and `overrides`."""
  c = default.get_lr_configs()
  for key, value in overrides.items():
    c[key] = value
  return c


def lrs(schedule, steps):
  return [float(schedule(s)) for s in steps]


def half_cosine(progress):
  return 0.5 * (1.0 + math.cos(math.pi * progress))


# Schedules.


def test_warmup_is_non_zero_at_the_first_update_and_reaches_one_after_warmup_steps():
  s = create_learning_rate_schedule(lr_config(factors='constant * linear_warmup', base_learning_rate=0.1,
                                              warmup_steps=4.0), total_steps=100)
  # min(1, (step + 1) / 4) * 0.1
  np.testing.assert_allclose(lrs(s, [0, 1, 2, 3, 4, 50]), [0.025, 0.05, 0.075, 0.1, 0.1, 0.1], rtol=1e-6)


def test_no_warmup_gives_the_base_rate_at_step_zero():
  s = create_learning_rate_schedule(lr_config(factors='constant * linear_warmup', base_learning_rate=0.3,
                                              warmup_steps=0.0), total_steps=10)
  np.testing.assert_allclose(lrs(s, [0, 9]), [0.3, 0.3], rtol=1e-6)


def test_default_cosine_with_warmup_decays_over_the_run_after_warmup():
  # steps_per_cycle None: decay length 104 - 4 = 100.
  s = create_learning_rate_schedule(lr_config(base_learning_rate=0.5, warmup_steps=4.0), total_steps=104)
  expected = {
      0: 0.5 * 0.25,  # warmup (0 + 1) / 4, cosine still 1
      3: 0.5,  # warmup over, cosine progress 0
      4: 0.5,  # progress 0 / 100
      29: 0.5 * half_cosine(0.25),
      54: 0.25,  # midpoint: progress 0.5
      103: 0.5 * half_cosine(0.99),  # last update of the run
  }
  # atol: float32 cancellation near cos(pi).
  np.testing.assert_allclose(lrs(s, expected), list(expected.values()), rtol=1e-5, atol=1e-7)
  assert float(s(103)) < 0.5 * 1e-3


def test_cosine_cycles_like_scenic_after_steps_per_cycle():
  # steps_per_cycle counts the warmup: decay length 54 - 4 = 50, then the cosine restarts.
  s = create_learning_rate_schedule(lr_config(base_learning_rate=1.0, warmup_steps=4.0, steps_per_cycle=54),
                                    total_steps=200)
  expected = {29: 0.5, 53: half_cosine(49 / 50), 54: 1.0, 79: 0.5, 104: 1.0}
  # atol: float32 cancellation near cos(pi).
  np.testing.assert_allclose(lrs(s, expected), list(expected.values()), rtol=1e-5, atol=1e-7)


def test_steps_per_cycle_equal_to_total_steps_matches_the_default():
  # Scenic's ViViT configs set steps_per_cycle to the run's length.
  explicit = create_learning_rate_schedule(lr_config(warmup_steps=7.0, steps_per_cycle=70), total_steps=70)
  implicit = create_learning_rate_schedule(lr_config(warmup_steps=7.0), total_steps=70)
  np.testing.assert_allclose(lrs(explicit, range(70)), lrs(implicit, range(70)), rtol=1e-6)


def test_fractional_warmup():
  # warmup 2.5, decay length 12 - 2.5 = 9.5.
  s = create_learning_rate_schedule(lr_config(base_learning_rate=1.0, warmup_steps=2.5), total_steps=12)
  expected = {
      0: 1 / 2.5,
      1: 2 / 2.5,
      2: 1.0,  # min(1, 3 / 2.5); cosine: max(0, 2 - 2.5) = 0
      3: half_cosine(0.5 / 9.5),
      7: half_cosine(4.5 / 9.5),
      11: half_cosine(8.5 / 9.5),
  }
  np.testing.assert_allclose(lrs(s, expected), list(expected.values()), rtol=1e-5)


def test_schedule_is_traceable_with_an_int32_step():
  s = create_learning_rate_schedule(lr_config(base_learning_rate=0.5, warmup_steps=4.0), total_steps=104)
  got = jax.jit(s)(jnp.asarray(54, jnp.int32))
  assert got.dtype == jnp.float32 and got.shape == ()
  np.testing.assert_allclose(float(got), 0.25, rtol=1e-6)


def test_rsqrt_decay_follows_scenic():
  # 1 until warmup ends, then sqrt(timescale / (step - warmup + timescale)).
  s = create_learning_rate_schedule(
      lr_config(factors='constant * linear_warmup * rsqrt_decay', base_learning_rate=2.0, warmup_steps=10.0,
                timescale=100), total_steps=1000)
  expected = {0: 2.0 * 0.1, 9: 2.0, 10: 2.0, 110: 2.0 / math.sqrt(2.0), 310: 1.0, 910: 2.0 / math.sqrt(10.0)}
  np.testing.assert_allclose(lrs(s, expected), list(expected.values()), rtol=1e-5)


def test_linear_decay_reaches_end_learning_rate():
  s = create_learning_rate_schedule(
      lr_config(factors='constant * linear_decay', base_learning_rate=0.2, end_learning_rate=0.02),
      total_steps=10)
  # 0.2 * (1 - (1 - 0.02 / 0.2) * step / 10), then constant.
  expected = {0: 0.2, 5: 0.2 * (1 - 0.9 * 0.5), 9: 0.2 * (1 - 0.9 * 0.9), 10: 0.02, 30: 0.02}
  np.testing.assert_allclose(lrs(s, expected), list(expected.values()), rtol=1e-5)


def test_linear_decay_after_warmup():
  s = create_learning_rate_schedule(
      lr_config(factors='constant * linear_warmup * linear_decay', base_learning_rate=1.0, warmup_steps=2.0,
                end_learning_rate=0.0), total_steps=10)
  # Decay over 10 - 2 = 8 steps after the warmup.
  expected = {0: 0.5, 1: 1.0, 2: 1.0, 6: 0.5, 10: 0.0}
  # atol: float32 cancellation near cos(pi).
  np.testing.assert_allclose(lrs(s, expected), list(expected.values()), rtol=1e-5, atol=1e-7)


def test_piecewise_constant_uses_absolute_factors():
  s = create_learning_rate_schedule(
      lr_config(factors='constant * piecewise_constant', base_learning_rate=0.4, decay_events=[3, 6],
                decay_factors=[0.5, 0.1]), total_steps=10)
  # 1 before step 3, 0.5 from step 3 (after 3 updates), 0.1 (not 0.05) from step 6.
  expected = {0: 0.4, 2: 0.4, 3: 0.2, 5: 0.2, 6: 0.04, 100: 0.04}
  np.testing.assert_allclose(lrs(s, expected), list(expected.values()), rtol=1e-6)


def test_unknown_factor_names_the_key():
  with pytest.raises(ValueError, match=r"'lr_configs\.factors'.*'cosine_decayy'"):
    create_learning_rate_schedule(lr_config(factors='constant * cosine_decayy'), total_steps=10)


@pytest.mark.parametrize('overrides, key', [
    ({'factors': 'constant * piecewise_constant'}, 'decay_events'),
    ({'factors': 'constant * piecewise_constant', 'decay_events': [1], 'decay_factors': [0.1, 0.2]},
     'decay_factors'),
    ({'warmup_steps': 10.0}, 'steps_per_cycle'),
    ({'learning_rate_schedule': 'step'}, 'learning_rate_schedule'),
])
def test_inconsistent_keys_are_named(overrides, key):
  with pytest.raises(ValueError, match=key):
    create_learning_rate_schedule(lr_config(**overrides), total_steps=10)


# Optimizers.

P0 = {'kernel': np.array([[1.0, -2.0], [0.5, 3.0]]), 'bias': np.array([0.5, -1.0])}
G1 = {'kernel': np.array([[0.1, -0.2], [0.3, 0.4]]), 'bias': np.array([0.2, -0.1])}
G2 = {'kernel': np.array([[-0.3, 0.1], [0.2, -0.5]]), 'bias': np.array([0.05, 0.3])}
LR = (0.5, 1.0)  # The schedule below at steps 0 and 1.


def schedule(step):
  return 0.5 * (jnp.asarray(step, jnp.float32) + 1.0)


def as_tree(d, dtype=jnp.float32):
  return {'Dense': {k: jnp.asarray(v, dtype) for k, v in d.items()}}


def run(config, grads=(G1, G2)):
  """Params (numpy, per leaf) after each update of create_optimizer(config) from P0."""
  tx = create_optimizer(config, schedule)
  params = as_tree(P0)
  state = tx.init(params)
  out = []
  for g in grads:
    updates, state = jax.jit(tx.update)(as_tree(g), state, params)
    params = optax.apply_updates(params, updates)
    out.append({k: np.asarray(v) for k, v in params['Dense'].items()})
  return out


def assert_params(got, expected):
  for k in ('kernel', 'bias'):
    np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)


def each(fn, *trees):
  return {k: fn(*(t[k] for t in trees)) for k in ('kernel', 'bias')}


def test_sgd():
  p1, p2 = run(tiny_config(optimizer='sgd'))
  e1 = each(lambda p, g: p - LR[0] * g, P0, G1)
  assert_params(p1, e1)
  assert_params(p2, each(lambda p, g: p - LR[1] * g, e1, G2))


def test_momentum_is_heavy_ball():
  p1, p2 = run(tiny_config(optimizer='momentum', optimizer_configs__momentum=MOMENTUM))
  # trace = g + m * trace; p -= lr * trace.
  e1 = each(lambda p, g: p - LR[0] * g, P0, G1)
  e2 = each(lambda p, g1, g2: p - LR[1] * (g2 + MOMENTUM * g1), e1, G1, G2)
  assert_params(p1, e1)
  assert_params(p2, e2)


def test_nesterov():
  p1, p2 = run(tiny_config(optimizer='nesterov', optimizer_configs__momentum=MOMENTUM))
  # trace = g + m * trace; p -= lr * (g + m * trace).
  e1 = each(lambda p, g: p - LR[0] * (g + MOMENTUM * g), P0, G1)
  e2 = each(lambda p, g1, g2: p - LR[1] * (g2 + MOMENTUM * (g2 + MOMENTUM * g1)), e1, G1, G2)
  assert_params(p1, e1)
  assert_params(p2, e2)


def adam_updates(b1, b2, eps):
  """The two bias-corrected Adam directions for G1, G2, by hand."""
  m1, v1 = each(lambda g: (1 - b1) * g, G1), each(lambda g: (1 - b2) * g * g, G1)
  u1 = each(lambda m, v: (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps), m1, v1)
  m2 = each(lambda m, g: b1 * m + (1 - b1) * g, m1, G2)
  v2 = each(lambda v, g: b2 * v + (1 - b2) * g * g, v1, G2)
  u2 = each(lambda m, v: (m / (1 - b1 ** 2)) / (np.sqrt(v / (1 - b2 ** 2)) + eps), m2, v2)
  return u1, u2


ADAM_KEYS = {'optimizer_configs__beta1': 0.8, 'optimizer_configs__beta2': 0.9,
             'optimizer_configs__epsilon': 1e-3}


def test_adam_with_bias_correction():
  p1, p2 = run(tiny_config(optimizer='adam', **ADAM_KEYS))
  u1, u2 = adam_updates(0.8, 0.9, 1e-3)
  e1 = each(lambda p, u: p - LR[0] * u, P0, u1)
  assert_params(p1, e1)
  assert_params(p2, each(lambda p, u: p - LR[1] * u, e1, u2))


@pytest.mark.parametrize('decay_all', [False, True])
def test_adamw_decoupled_decay_skips_biases_by_default(decay_all):
  wd = 0.1
  p1, p2 = run(tiny_config(optimizer='adamw', optimizer_configs__weight_decay=wd,
                           optimizer_configs__decay_biases_and_norms=decay_all, **ADAM_KEYS))
  u1, u2 = adam_updates(0.8, 0.9, 1e-3)
  rate = {'kernel': wd, 'bias': wd if decay_all else 0.0}
  # p -= lr * (adam + wd * p).
  e1 = {k: P0[k] - LR[0] * (u1[k] + rate[k] * P0[k]) for k in P0}
  e2 = {k: e1[k] - LR[1] * (u2[k] + rate[k] * e1[k]) for k in P0}
  assert_params(p1, e1)
  assert_params(p2, e2)


def test_momentum_weight_decay_is_decoupled_and_scaled_by_the_learning_rate():
  wd = 0.2
  p1, p2 = run(tiny_config(optimizer='momentum', optimizer_configs__weight_decay=wd))
  # The trace holds gradients only; the decay wd * p joins after it (kernel only), then times lr.
  e1 = {'kernel': P0['kernel'] - LR[0] * (G1['kernel'] + wd * P0['kernel']),
        'bias': P0['bias'] - LR[0] * G1['bias']}
  trace2 = each(lambda g1, g2: g2 + MOMENTUM * g1, G1, G2)
  e2 = {'kernel': e1['kernel'] - LR[1] * (trace2['kernel'] + wd * e1['kernel']),
        'bias': e1['bias'] - LR[1] * trace2['bias']}
  assert_params(p1, e1)
  assert_params(p2, e2)


def test_weight_decay_mask():
  params = {'Dense': {'kernel': jnp.zeros((2, 2)), 'bias': jnp.zeros(2)},
            'LayerNorm': {'scale': jnp.zeros(3), 'bias': jnp.zeros(3)},
            'embedding': {'kernel': jnp.zeros((2, 2, 2, 3))}}
  expected = {'Dense': {'kernel': True, 'bias': False}, 'LayerNorm': {'scale': False, 'bias': False},
              'embedding': {'kernel': True}}
  assert weight_decay_mask(params) == expected
  assert weight_decay_mask(params, decay_biases_and_norms=True) == jax.tree_util.tree_map(
      lambda _: True, expected)


def test_clipping_to_the_global_norm():
  g = {'kernel': np.array([[3.0, 0.0], [0.0, 0.0]]), 'bias': np.array([0.0, 4.0])}  # norm 5
  (p1,) = run(tiny_config(optimizer='sgd', max_grad_norm=1.0), grads=(g,))
  assert_params(p1, each(lambda p, gg: p - LR[0] * gg / 5.0, P0, g))
  (p1,) = run(tiny_config(optimizer='sgd', max_grad_norm=10.0), grads=(g,))  # below the limit: unchanged
  assert_params(p1, each(lambda p, gg: p - LR[0] * gg, P0, g))


def test_l2_is_added_to_every_parameter_before_clipping():
  l2, max_norm = 0.5, 1.0
  (p1,) = run(tiny_config(optimizer='sgd', l2_decay_factor=l2, max_grad_norm=max_norm), grads=(G1,))
  penalised = each(lambda p, g: g + l2 * p, P0, G1)  # biases too
  norm = math.sqrt(sum(float(np.sum(v ** 2)) for v in penalised.values()))
  assert norm > max_norm
  expected = each(lambda p, g: p - LR[0] * g * max_norm / norm, P0, penalised)
  assert_params(p1, expected)
  # Clipping first, then adding the penalty, would give something else.
  g_norm = math.sqrt(sum(float(np.sum(v ** 2)) for v in G1.values()))
  clip_first = each(lambda p, g: p - LR[0] * (g * min(1.0, max_norm / g_norm) + l2 * p), P0, G1)
  assert not np.allclose(p1['kernel'], clip_first['kernel'], rtol=1e-3)


def test_l2_without_clipping_goes_through_momentum():
  l2 = 0.1
  p1, p2 = run(tiny_config(optimizer='momentum', l2_decay_factor=l2))
  g1 = each(lambda p, g: g + l2 * p, P0, G1)
  e1 = each(lambda p, g: p - LR[0] * g, P0, g1)
  g2 = each(lambda p, g: g + l2 * p, e1, G2)
  e2 = each(lambda p, a, b: p - LR[1] * (b + MOMENTUM * a), e1, g1, g2)
  assert_params(p1, e1)
  assert_params(p2, e2)


@pytest.mark.parametrize('name', ['momentum', 'nesterov', 'adam', 'adamw'])
def test_accumulators_are_float32_for_bfloat16_params(name):
  tx = create_optimizer(tiny_config(optimizer=name), schedule)
  state = tx.init(as_tree(P0, jnp.bfloat16))
  float_leaves = [x for x in jax.tree_util.tree_leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
  # The trace or first moment (kernel and bias) is float32; Adam's second moment follows the params.
  assert sum(x.dtype == jnp.float32 for x in float_leaves) == 2


def test_default_recipe_first_update_is_not_zero():
  config = tiny_config(optimizer='momentum', max_grad_norm=1.0, lr_configs__warmup_steps=2.5,
                       lr_configs__base_learning_rate=0.1)
  sched = create_learning_rate_schedule(config.lr_configs, total_steps=20)
  tx = create_optimizer(config, sched)
  params = as_tree(P0)
  updates, _ = tx.update(as_tree(G1), tx.init(params), params)
  # Step 0: lr 0.1 / 2.5 (cosine 1); G1's norm is below 1, so no clipping.
  np.testing.assert_allclose(np.asarray(updates['Dense']['kernel']), -0.04 * G1['kernel'], rtol=1e-5)
