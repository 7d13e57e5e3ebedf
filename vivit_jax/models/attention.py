"""Attention kernels on `[batch, ..., heads, head_dim]` projections (the layout flax's DenseGeneral gives).

- `dot_product_attention`: full attention over axis 1 of `[B, L, h, dh]`; uses `jax.nn.dot_product_attention`
  (the fused cuDNN kernel on GPU for bf16/fp16) unless attention dropout is active in training.
- `axis_attention`: attention along the time (1) or space (2) axis of `[B, T, S, h, dh]`; space reuses the fused
  kernel with frames folded into the batch (a free reshape), time uses batched einsums so no transpose of the
  activations is materialised.
- `factorised_dot_product_attention`: Model 4; the first half of the heads attends over time, the second half
  over space, the outputs are concatenated back before the output projection.
"""

from typing import Optional

import jax
import jax.numpy as jnp


def _softmax_dropout(logits, dropout_rate, dropout_rng, deterministic, dtype):
  """Softmax in float32, then (in training) dropout on the attention weights."""
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  if not deterministic and dropout_rate > 0.0:
    if dropout_rng is None:
      raise ValueError('attention dropout needs a dropout rng (apply with rngs={"dropout": key})')
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  return weights.astype(dtype)


def _einsum_attention(q, k, v, seq_axis: int, dropout_rate, dropout_rng, deterministic):
  """Attention along `seq_axis` of q/k/v `[B, d1, (d2), h, dh]`; every other leading axis is a batch axis."""
  letters = 'abcdefg'[:q.ndim - 2]
  kv = letters[:seq_axis] + 'z' + letters[seq_axis + 1:]
  others = letters[:seq_axis] + letters[seq_axis + 1:]
  query_side = letters[seq_axis]
  logits = jnp.einsum(f'{letters}hd,{kv}hd->{others}h{query_side}z', q, k)
  logits = logits * jnp.asarray(q.shape[-1] ** -0.5, logits.dtype)
  weights = _softmax_dropout(logits, dropout_rate, dropout_rng, deterministic, v.dtype)
  return jnp.einsum(f'{others}h{query_side}z,{kv}hd->{letters}hd', weights, v)


def dot_product_attention(q, k, v, *, dropout_rate: float = 0.0, dropout_rng=None,
                          deterministic: bool = True, implementation: Optional[str] = None):
  """Self-attention over axis 1 of `[B, L, h, dh]` inputs; returns `[B, L, h, dh]`."""
  if not deterministic and dropout_rate > 0.0:
    return _einsum_attention(q, k, v, 1, dropout_rate, dropout_rng, deterministic)
  return jax.nn.dot_product_attention(q, k, v, implementation=implementation)


def axis_attention(q, k, v, axis: int, *, dropout_rate: float = 0.0, dropout_rng=None,
                   deterministic: bool = True, implementation: Optional[str] = None):
  """Attention along axis 1 (time) or 2 (space) of `[B, T, S, h, dh]` inputs."""
  if axis == 2:
    b, t, s, h, dh = q.shape
    fold = lambda a: a.reshape(b * t, s, h, dh)
    return dot_product_attention(fold(q), fold(k), fold(v), dropout_rate=dropout_rate, dropout_rng=dropout_rng,
                                 deterministic=deterministic, implementation=implementation).reshape(q.shape)
  if axis != 1:
    raise ValueError(f'axis_attention attends along axis 1 (time) or 2 (space), got axis {axis}')
  return _einsum_attention(q, k, v, 1, dropout_rate, dropout_rng, deterministic)


def factorised_dot_product_attention(q, k, v, temporal_dims: int, *, dropout_rate: float = 0.0,
                                     dropout_rng=None, deterministic: bool = True,
                                     implementation: Optional[str] = None):
  """Model 4 on `[B, T*S, h, dh]` tokens ordered time-major: half the heads over time, half over space."""
  b, n, h, dh = q.shape
  if n % temporal_dims or h % 2:
    raise ValueError(f'factorised attention needs tokens divisible by the {temporal_dims} time steps and '
                     f'an even number of heads; got {n} tokens and {h} heads')
  grid = lambda a: a.reshape(b, temporal_dims, n // temporal_dims, h, dh)
  q, k, v = grid(q), grid(k), grid(v)
  rngs = (None, None) if dropout_rng is None else jax.random.split(dropout_rng)
  halves = []
  for axis, sl, rng in ((1, slice(0, h // 2), rngs[0]), (2, slice(h // 2, h), rngs[1])):
    halves.append(axis_attention(q[..., sl, :], k[..., sl, :], v[..., sl, :], axis,
                                 dropout_rate=dropout_rate, dropout_rng=rng,
                                 deterministic=deterministic, implementation=implementation))
  return jnp.concatenate(halves, axis=-2).reshape(b, n, h, dh)
