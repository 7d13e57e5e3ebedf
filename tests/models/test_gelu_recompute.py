"""MlpBlock's recomputed GELU (`blocks.gelu_dense`, the CPU's default): the plain block's parameters, outputs,
dropout masks and gradients, and a train step that keeps less memory for its backward pass; and its Dense
layers (and the attention's fused QKV matmul) on token rows, whose weight gradients read the activations without a
transposed copy."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax.models import blocks


def _apply_and_grads(block, params, x, deterministic):
  def loss(p, x):
    y = block.apply(p, x, deterministic=deterministic, rngs={'dropout': jax.random.PRNGKey(3)})
    return jnp.sum(jnp.sin(y.astype(jnp.float32))), y
  (_, y), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)
  return y, grads


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize('deterministic', [True, False])
def test_the_recomputed_gelu_gives_the_plain_blocks_outputs_masks_and_gradients(dtype, deterministic):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 16), dtype)
  plain, recomputed = (blocks.MlpBlock(48, dropout_rate=0.3, dtype=dtype, recompute_gelu=flag)
                       for flag in (False, True))
  params = plain.init(jax.random.PRNGKey(1), x, deterministic=True)
  same_init = recomputed.init(jax.random.PRNGKey(1), x, deterministic=True)
  assert jax.tree_util.tree_structure(same_init) == jax.tree_util.tree_structure(params)
  for a, b in zip(jax.tree_util.tree_leaves(same_init), jax.tree_util.tree_leaves(params)):
    np.testing.assert_array_equal(a, b)
  params = jax.tree_util.tree_map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  want, got = (_apply_and_grads(block, params, x, deterministic) for block in (plain, recomputed))
  if not deterministic:  # The same elements dropped (both dropouts): the masks are the plain block's.
    assert bool(jnp.any(want[0] == 0))
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    assert a.dtype == b.dtype
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=1e-6, atol=1e-6)


def test_the_gelu_is_recomputed_on_the_cpu_only_unless_asked(monkeypatch):
  assert blocks.recompute_activation(None) and blocks.recompute_activation(True)
  assert not blocks.recompute_activation(False)
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert not blocks.recompute_activation(None) and blocks.recompute_activation(True)


class _Stack(nn.Module):
  recompute: bool

  @nn.compact
  def __call__(self, x):
    for i in range(3):
      x = x + blocks.MlpBlock(256, recompute_gelu=self.recompute, name=f'mlp_{i}')(x, deterministic=True)
    return x


def test_a_train_step_keeps_only_the_gelus_input_for_the_backward_pass():
  # XLA on the CPU drops optimisation barriers and would merge the recomputation with the forward GELU (keeping
  # its output alive); the gradient-dependent zero in gelu_dense prevents that. Each of the 3 blocks then keeps
  # one [512, 256] float32 activation (0.5 MiB) instead of three.
  x = jnp.ones((512, 64))
  temp = {}
  for recompute in (False, True):
    model = _Stack(recompute)
    params = model.init(jax.random.PRNGKey(0), x)
    step = jax.jit(jax.grad(lambda p, x: jnp.sum(model.apply(p, x) ** 2)))
    temp[recompute] = step.lower(params, x).compile().memory_analysis().temp_size_in_bytes
  assert temp[True] <= temp[False] - 2 * 512 * 256 * 4, temp


def _copies_of(hlo: str, num_elements: int) -> list:
  """The copy and transpose instructions of `hlo` (fused ones included) whose result has `num_elements`."""
  found = []
  for match in re.finditer(r'= (?:f32|bf16)\[([\d,]*)\]\{[\d,]*\} (copy|transpose)\(', hlo):
    if int(np.prod([int(n) for n in match.group(1).split(',') if n])) == num_elements:
      found.append(match.group(0))
  return found


@pytest.mark.parametrize('recompute', [False, True])
def test_the_mlps_weight_gradients_read_its_activations_in_place(recompute):
  # The Dense layers run on token rows [n, d], so each kernel's gradient contracts one axis; on [b, t, d] inputs
  # XLA on the CPU copied the [b, t, mlp_dim] gradient into a transposed layout to contract two (3 ms a block in
  # ViViT-S Model 2's train step).
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 50, 32))
  block = blocks.MlpBlock(128, recompute_gelu=recompute)
  params = block.init(jax.random.PRNGKey(1), x, deterministic=True)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(block.apply(p, x, deterministic=True)))))
  assert _copies_of(grads.lower(params).compile().as_text(), 8 * 50 * 128) == []


def test_the_fused_qkv_weight_gradient_reads_its_activations_in_place():
  # The same for the fused query/key/value matmul: [n, d] @ [d, 3 * h * dh]; as an einsum over [b, t, d] XLA on
  # the CPU transposed the [b, t, 3, h, dh] gradient (and copied it) to contract b and t (~2 ms a block in ViViT-S
  # Model 2's train step).
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 50, 64))
  attention = blocks.MultiHeadDotProductAttention(4, fused_qkv=True)
  params = attention.init(jax.random.PRNGKey(1), x, deterministic=True)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(attention.apply(p, x, deterministic=True)))))
  assert _copies_of(grads.lower(params).compile().as_text(), 8 * 50 * 3 * 64) == []
  three = blocks.MultiHeadDotProductAttention(4, fused_qkv=False)  # The same function, three DenseGenerals.
  want = jax.jit(lambda p: three.apply(p, x, deterministic=True))(params)
  np.testing.assert_allclose(jax.jit(lambda p: attention.apply(p, x, deterministic=True))(params), want,
                             rtol=1e-5, atol=1e-6)
