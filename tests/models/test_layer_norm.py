"""models/layer_norm.py: flax's LayerNorm forward pass to the bit, its derivative by hand on the CPU."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax.models import layer_norm
from vivit_jax.models.layer_norm import LayerNorm


@pytest.mark.parametrize('backend', ['cpu', 'gpu'])  # By hand on the CPU, automatically elsewhere.
@pytest.mark.parametrize('dtype,x_dtype,grad_tol', [
    (jnp.float32, jnp.float32, 1e-6), (None, jnp.float32, 1e-6),
    (jnp.bfloat16, jnp.bfloat16, 1e-2), (jnp.float32, jnp.bfloat16, 1e-2)])
def test_same_parameters_and_outputs_as_flax_and_the_same_gradients(dtype, x_dtype, grad_tol, backend, monkeypatch):
  monkeypatch.setattr(layer_norm, 'hand_written_backward', lambda: backend == 'cpu')
  x = (3.0 * jax.random.normal(jax.random.PRNGKey(0), (3, 5, 48)) + 1.0).astype(x_dtype)
  ours, flax_ln = LayerNorm(dtype=dtype), nn.LayerNorm(dtype=dtype, param_dtype=jnp.float32)
  params = flax_ln.init(jax.random.PRNGKey(1), x)
  assert jax.tree_util.tree_map(jnp.shape, ours.init(jax.random.PRNGKey(1), x)) == jax.tree_util.tree_map(
      jnp.shape, params)
  params = jax.tree_util.tree_map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  want, got = jax.jit(flax_ln.apply)(params, x), jax.jit(ours.apply)(params, x)
  assert got.dtype == want.dtype
  np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))  # Bitwise.

  weights = jax.random.normal(jax.random.PRNGKey(3), want.shape)
  def grads(module):
    loss = lambda p, v: jnp.sum(module.apply(p, v).astype(jnp.float32) * weights)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
  for g, w in zip(jax.tree_util.tree_leaves(grads(ours)), jax.tree_util.tree_leaves(grads(flax_ln))):
    assert g.dtype == w.dtype and g.shape == w.shape
    g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
    np.testing.assert_allclose(g, w, rtol=0, atol=grad_tol * np.abs(w).max())


def test_a_constant_row_normalises_to_the_bias_with_finite_gradients():
  x = jnp.stack([jnp.full((16,), 2.5), jnp.arange(16.0)])  # Variance 0: rsqrt(eps), no NaN.
  module = LayerNorm()
  params = module.init(jax.random.PRNGKey(0), x)
  params = {'params': {'scale': jnp.full((16,), 2.0), 'bias': jnp.full((16,), 0.5)}}
  np.testing.assert_allclose(module.apply(params, x)[0], 0.5)
  grads = jax.grad(lambda v: jnp.sum(module.apply(params, v) ** 3))(x)
  assert np.isfinite(np.asarray(grads)).all()


def test_the_cpu_differentiates_by_hand_and_other_backends_automatically(monkeypatch):
  x = jnp.ones((2, 8))
  params = LayerNorm().init(jax.random.PRNGKey(0), x)
  jaxpr = lambda: str(jax.make_jaxpr(lambda v: LayerNorm().apply(params, v))(x))  # Before differentiation.
  assert layer_norm.hand_written_backward() and 'name=layer_norm' in jaxpr()  # The tests run on the CPU.
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert not layer_norm.hand_written_backward() and 'custom_vjp_call' not in jaxpr()
