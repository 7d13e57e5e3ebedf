"""Embedding initialisers, frame sampling, attention kernels and stochastic depth, against hand calculations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tiny import tiny_config
from vivit_jax.models import attention, blocks, create_model, embedding


@pytest.mark.parametrize('frames,n,expected', [
    (32, 8, [4, 7, 11, 14, 18, 21, 25, 28]),  # k * 32 / 9 rounded
    (6, 3, [2, 3, 4]),  # 1.5, 3.0, 4.5 round half to even
    (8, 8, list(range(8))),  # n >= T: every frame
    (4, 10, [0, 1, 2, 3]),
])
def test_uniform_frame_indices(frames, n, expected):
  np.testing.assert_array_equal(embedding.uniform_frame_indices(frames, n), expected)


def test_central_frame_initializer_fills_only_the_central_temporal_slice():
  kernel = embedding.tubelet_kernel_init('central_frame_initializer')(jax.random.PRNGKey(0), (4, 3, 3, 3, 5))
  nonzero = [bool(np.any(kernel[t])) for t in range(4)]
  assert nonzero == [False, False, True, False]
  assert np.all(np.asarray(kernel[2]) != 0)  # Every width column of the central frame is kept.


def test_average_and_arp_initializers_repeat_one_slice():
  shape = (3, 2, 2, 3, 4)
  avg = embedding.tubelet_kernel_init('average_frame_initializer')(jax.random.PRNGKey(0), shape)
  np.testing.assert_array_equal(avg[0], avg[1])
  np.testing.assert_array_equal(avg[0], avg[2])
  arp = embedding.tubelet_kernel_init('average_arp_frame_initializer')(jax.random.PRNGKey(0), shape)
  coeff = embedding.arp_coefficients(3) / 3
  for t in range(3):
    np.testing.assert_allclose(arp[t], coeff[t] * avg[0], rtol=1e-6)


def test_arp_coefficients_by_hand():
  # alpha_t = 2(T - t + 1) - (T + 1)(H_T - H_{t-1}), T = 3, H = [0, 1, 1.5, 11/6].
  np.testing.assert_allclose(embedding.arp_coefficients(3),
                             [6 - 4 * 11 / 6, 4 - 4 * (11 / 6 - 1), 2 - 4 * (11 / 6 - 1.5)])


def test_tubelet_embedding_equals_patch_matmul():
  video = jax.random.normal(jax.random.PRNGKey(1), (1, 4, 8, 8, 3))
  module = embedding.TokenEmbedding(5, (4, 4, 2))
  params = module.init(jax.random.PRNGKey(0), video)
  tokens = module.apply(params, video)
  kernel, bias = params['params']['kernel'], params['params']['bias']
  patch = video[0, 2:4, 4:8, 0:4]  # time slot 1, row 1, column 0
  np.testing.assert_allclose(tokens[0, 1, 1, 0], jnp.einsum('thwc,thwcd->d', patch, kernel) + bias,
                             rtol=1e-5, atol=1e-5)


def naive_attention(q, k, v):
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
  return jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(logits, -1), v)


def test_axis_attention_matches_attention_on_transposed_sequences():
  q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (2, 3, 5, 2, 4)) for i in range(3))
  time = attention.axis_attention(q, k, v, 1)
  t = lambda a: a.transpose(0, 2, 1, 3, 4).reshape(10, 3, 2, 4)
  expected = naive_attention(t(q), t(k), t(v)).reshape(2, 5, 3, 2, 4).transpose(0, 2, 1, 3, 4)
  np.testing.assert_allclose(time, expected, rtol=1e-5, atol=1e-5)
  space = attention.axis_attention(q, k, v, 2)
  s = lambda a: a.reshape(6, 5, 2, 4)
  np.testing.assert_allclose(space, naive_attention(s(q), s(k), s(v)).reshape(q.shape), rtol=1e-5,
                             atol=1e-5)


def test_factorised_attention_splits_heads_time_first():
  q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (1, 3 * 5, 4, 2)) for i in range(3))
  out = attention.factorised_dot_product_attention(q, k, v, temporal_dims=3).reshape(1, 3, 5, 4, 2)
  g = lambda a: a.reshape(1, 3, 5, 4, 2)
  np.testing.assert_allclose(out[..., :2, :], attention.axis_attention(g(q)[..., :2, :], g(k)[..., :2, :],
                                                                       g(v)[..., :2, :], 1), atol=1e-6)
  np.testing.assert_allclose(out[..., 2:, :], attention.axis_attention(g(q)[..., 2:, :], g(k)[..., 2:, :],
                                                                       g(v)[..., 2:, :], 2), atol=1e-6)


def test_attention_dropout_path_equals_fused_path_without_dropout():
  q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (2, 7, 2, 4)) for i in range(3))
  einsum = attention._einsum_attention(q, k, v, 1, 0.0, None, True)
  np.testing.assert_allclose(einsum, attention.dot_product_attention(q, k, v), rtol=1e-5, atol=1e-6)


def test_the_attention_softmax_is_jaxs_differentiated_from_its_output_with_fewer_temporaries(monkeypatch):
  logits = 8 * jax.random.normal(jax.random.PRNGKey(0), (3, 5, 9))
  logits = logits.at[:, :, -2:].set(jnp.finfo(jnp.float32).min)  # Masked keys (padding) get no weight.
  loss = lambda fn: (lambda x: jnp.sum(jnp.sin(3 * fn(x))))
  np.testing.assert_allclose(attention.softmax(logits), jax.nn.softmax(logits, axis=-1), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jax.grad(loss(attention.softmax))(logits),
                             jax.grad(loss(lambda x: jax.nn.softmax(x, axis=-1)))(logits), rtol=1e-5, atol=1e-6)
  q = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 50, 6, 64))  # ViViT-S Model 2's spatial attention.
  def temporaries():
    f = lambda q: jnp.sum(jnp.sin(attention._einsum_attention(q, q, q, 2, 0.0, None, True)))
    return jax.jit(jax.grad(f)).lower(q).compile().memory_analysis().temp_size_in_bytes
  ours = temporaries()
  monkeypatch.setattr(attention, 'softmax', lambda x: jax.nn.softmax(x, axis=-1))
  assert ours <= 0.95 * temporaries()


def test_padded_attention_masks_the_padding_in_values_and_gradients():
  # The cuDNN path pads odd lengths (patches + a class token); XLA runs the same padding and masking on CPU.
  q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (2, 13, 2, 8)) for i in range(3))
  padded = lambda q, k, v: attention.padded_attention(q, k, v, 'xla', 8)
  np.testing.assert_allclose(padded(q, k, v), naive_attention(q, k, v), rtol=1e-5, atol=1e-5)
  loss = lambda fn: (lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v))))
  grads = lambda fn: jax.jit(jax.grad(loss(fn), argnums=(0, 1, 2)))(q, k, v)  # Compiled: op by op is slower.
  for got, want in zip(grads(padded), grads(naive_attention)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert padded(q[:, :8], k[:, :8], v[:, :8]).shape == (2, 8, 2, 8)  # Already a multiple: no padding.


def test_attention_backend_honours_the_config():
  q = jnp.zeros((1, 5, 2, 64), jnp.bfloat16)
  assert attention.attention_backend(None, q) == 'einsum'  # The tests run on CPU; these scores are tiny.
  assert attention.attention_backend('cudnn', q) == 'cudnn'
  assert attention.attention_backend('xla', q) == 'xla'


class _Residual(blocks._ResidualBlock):

  @nn.compact
  def __call__(self, x, branch, deterministic):
    return self.residual(x, branch, deterministic)


def test_stochastic_depth_drops_whole_examples_and_rescales_by_one_over_keep():
  module = _Residual(mlp_dim=1, num_heads=1, droplayer_p=0.25)
  x, branch = jnp.zeros((20000, 3, 2)), jnp.ones((20000, 3, 2))
  np.testing.assert_array_equal(module.apply({}, x, branch, True), branch)
  out = np.asarray(module.apply({}, x, branch, False, rngs={'dropout': jax.random.PRNGKey(0)}))
  per_example = out.reshape(20000, -1)
  assert np.all(per_example == per_example[:, :1])  # one mask per example
  assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
  assert abs((per_example[:, 0] == 0).mean() - 0.25) < 0.02
  assert abs(out.mean() - 1.0) < 0.02  # the expectation is the eval output


def test_factorised_encoder_draws_stochastic_depth_per_frame():
  config = tiny_config('factorized_encoder', model__stochastic_droplayer_rate=0.9,
                       model__spatial_transformer__num_layers=2)
  model = create_model(config)
  frame = jax.random.normal(jax.random.PRNGKey(0), (1, 2, 16, 16, 3))
  video = jnp.tile(frame, (1, 4, 1, 1, 1))  # every tubelet time slot identical
  params = jax.jit(model.init)(jax.random.PRNGKey(1), video)
  apply = jax.jit(lambda train, rngs: model.apply(params, video, capture_intermediates=True,
                                                  mutable=['intermediates'], train=train, rngs=rngs),
                  static_argnums=0)
  spatial = lambda train, rngs=None: apply(train, rngs)[1]['intermediates']['SpatialTransformer']['__call__'][0]
  evaluated = spatial(train=False)
  assert evaluated.shape[0] == 4  # batch 1 x 4 frames folded into the batch
  np.testing.assert_allclose(evaluated[0], evaluated[3], atol=1e-6)
  trained = spatial(train=True, rngs={'dropout': jax.random.PRNGKey(5)})
  assert not all(np.allclose(trained[0], trained[i]) for i in range(1, 4))
