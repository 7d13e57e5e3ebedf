"""Hashed dropout masks: the rate, the scaling, independence across rngs, elements and rows, and nn.Dropout's
call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tiny import tiny_config
from vivit_jax.models import create_model, dropout


@pytest.mark.parametrize('rate', [0.1, 0.5, 0.9])
def test_the_mask_keeps_one_minus_rate_and_the_kept_values_are_rescaled(rate):
  x = jnp.ones((16, 50, 384))
  y = dropout.apply(x, rate, jax.random.PRNGKey(0))
  kept = np.asarray(y != 0)
  assert abs(kept.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / kept.size)
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / (1 - rate), rtol=1e-6)
  assert abs(float(y.mean()) - 1.0) < 0.02  # The expectation is kept.


def test_masks_are_uncorrelated_across_rngs_neighbours_and_rows():
  shape = (8, 200, 300)
  n = np.prod(shape)
  a, b = (np.asarray(dropout.keep_mask(jax.random.PRNGKey(i), shape, 0.5), np.float32) for i in (1, 2))
  bound = 5 / np.sqrt(n)
  assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < bound  # Another rng (another step or module).
  assert abs(np.corrcoef(a.ravel()[:-1], a.ravel()[1:])[0, 1]) < bound  # Neighbours.
  assert abs(np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]) < bound  # The same element in the next row.
  assert abs(np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1]) < bound
  same = dropout.keep_mask(jax.random.PRNGKey(1), shape, 0.5)
  np.testing.assert_array_equal(same, a.astype(bool))  # The same rng gives the same mask.
  rows = a.reshape(shape[0], -1)
  assert len({r.tobytes() for r in rows}) == shape[0]  # Rows differ (the leading index is hashed too).


def test_edge_rates_and_dtypes():
  x = jnp.ones((3, 5), jnp.bfloat16)
  assert dropout.apply(x, 0.3, jax.random.PRNGKey(0)).dtype == jnp.bfloat16
  np.testing.assert_array_equal(dropout.apply(x, 1.0, jax.random.PRNGKey(0)), 0)
  assert bool(dropout.keep_mask(jax.random.PRNGKey(0), (1000,), 0.0).all())
  assert dropout.keep_mask(jax.random.PRNGKey(0), (), 0.5).shape == ()


def test_the_module_has_nn_dropouts_call_and_no_parameters():
  layer = dropout.Dropout(rate=0.5)
  x = jnp.ones((4, 6))
  variables = layer.init({'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(1)}, x, True)
  assert not jax.tree_util.tree_leaves(variables)
  np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
  y = layer.apply({}, x, deterministic=False, rngs={'dropout': jax.random.PRNGKey(2)})
  assert set(np.unique(np.asarray(y)).tolist()) <= {0.0, 2.0}
  with pytest.raises(Exception):  # Like nn.Dropout, training needs a dropout rng.
    layer.apply({}, x, deterministic=False)


def test_training_with_dropout_draws_new_masks_each_step_and_evaluation_is_deterministic():
  config = tiny_config('spacetime', model__dropout_rate=0.3, model__attention_dropout_rate=0.3,
                       model__attention_implementation='xla')
  model = create_model(config)
  video = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 16, 16, 3))
  params = jax.jit(model.init)(jax.random.PRNGKey(1), video)['params']
  params = jax.tree_util.tree_map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  train = jax.jit(lambda key: model.apply({'params': params}, video, train=True, rngs={'dropout': key}))
  a, b = train(jax.random.PRNGKey(3)), train(jax.random.PRNGKey(4))
  assert not np.allclose(a, b) and np.allclose(a, train(jax.random.PRNGKey(3)))
  evaluate = jax.jit(lambda: model.apply({'params': params}, video, train=False))
  np.testing.assert_array_equal(evaluate(), evaluate())
