"""Attention kernels on `[batch, ..., heads, head_dim]` projections (the layout flax's DenseGeneral gives).

- `dot_product_attention`: full attention over axis 1 of `[B, L, h, dh]`; with attention dropout in training,
  chunked attention drops inside its loop and the others take the einsum path. `attention_backend` picks the
  implementation when the config names none: on CUDA GPUs for bf16/fp16, cuDNN's fused flash attention through
  `jax.nn.dot_product_attention` (JAX itself defaults to XLA, which materialises the [L, L] scores); on the
  CPU, `chunked_attention` (one (example, head) group at a time, recomputed in the backward pass: 1.6x flax's
  einsum attention forward and backward at [4, 785, 6, 64]) unless all the scores fit in one of its chunks,
  where flax's einsums are quicker (nothing recomputed); XLA elsewhere. cuDNN needs even sequence lengths in
  training (ViViT's are odd: patches plus a class token), so its inputs are padded to a multiple of 8 and the
  padding masked out: in each layer, or once for the whole encoder (`encoder_padding`), which then passes
  `valid_length` and the attention only masks.
- `axis_attention`: attention along the time (1) or space (2) axis of `[B, T, S, h, dh]`; space reuses the fused
  kernel with frames folded into the batch (a free reshape), time uses batched einsums so no transpose of the
  activations is materialised.
- `factorised_dot_product_attention`: Model 4; the first half of the heads attends over time, the second half
  over space, the outputs are concatenated back before the output projection.
"""

import contextlib
from typing import Iterator, List, Optional

import jax
import jax.numpy as jnp

from vivit_jax.models import dropout
from vivit_jax.models import chunked_attention as chunking

IMPLEMENTATIONS = ('xla', 'cudnn', 'chunked', 'einsum')
PADDINGS = ('auto', 'once', 'per_layer')  # `model.attention_padding`: see encoder_padding.


@jax.custom_vjp
def softmax(logits):
  """`jax.nn.softmax` over the last axis, differentiated from its output alone: the gradient is
  `y * (g - sum(g * y))`. Autodiff of `jax.nn.softmax` keeps the exponentials and their sums instead, and divides
  them again in the backward pass: the einsum attention's gradient takes 10% fewer temporaries this way."""
  return jax.nn.softmax(logits, axis=-1)


def _softmax_fwd(logits):
  y = jax.nn.softmax(logits, axis=-1)
  return y, y


def _softmax_bwd(y, g):
  return (y * (g - jnp.sum(g * y, axis=-1, keepdims=True)),)


softmax.defvjp(_softmax_fwd, _softmax_bwd)


def _softmax_dropout(logits, dropout_rate, dropout_rng, deterministic, dtype):
  """Softmax in float32, then (in training) dropout on the attention weights."""
  weights = softmax(logits.astype(jnp.float32))
  if not deterministic and dropout_rate > 0.0:
    if dropout_rng is None:
      raise ValueError('attention dropout needs a dropout rng (apply with rngs={"dropout": key})')
    weights = dropout.apply(weights, dropout_rate, dropout_rng)
  return weights.astype(dtype)


def _einsum_attention(q, k, v, seq_axis: int, dropout_rate, dropout_rng, deterministic, valid_length=None):
  """Attention along `seq_axis` of q/k/v `[B, d1, (d2), h, dh]`; every other leading axis is a batch axis.
  Keys from `valid_length` on (padding) get no weight."""
  letters = 'abcdefg'[:q.ndim - 2]
  kv = letters[:seq_axis] + 'z' + letters[seq_axis + 1:]
  others = letters[:seq_axis] + letters[seq_axis + 1:]
  query_side = letters[seq_axis]
  logits = jnp.einsum(f'{letters}hd,{kv}hd->{others}h{query_side}z', q, k)
  logits = logits * jnp.asarray(q.shape[-1] ** -0.5, logits.dtype)
  if valid_length is not None:
    logits = jnp.where(jnp.arange(k.shape[seq_axis]) < valid_length, logits, jnp.finfo(logits.dtype).min)
  weights = _softmax_dropout(logits, dropout_rate, dropout_rng, deterministic, v.dtype)
  return jnp.einsum(f'{others}h{query_side}z,{kv}hd->{letters}hd', weights, v)


CUDNN_LENGTH_MULTIPLE = 8  # cuDNN pads to this: even lengths are required in training; 8 keeps rows aligned.


def _on_cuda() -> bool:
  try:
    return jax.default_backend() == 'gpu' and 'cuda' in jax.local_devices()[0].client.platform_version.lower()
  except Exception:  # pylint: disable=broad-except
    return False


_recording: List[List[str]] = []  # The lists `recorded_backends` blocks fill, innermost last.


@contextlib.contextmanager
def recorded_backends() -> Iterator[List[str]]:
  """A list of the attention backends (in first-use order) that the attention functions here use while
  tracing inside the block: what a model really runs (the choice depends on each
  encoder's shapes), for the benchmarks to report."""
  used: List[str] = []
  _recording.append(used)
  try:
    yield used
  finally:
    _recording[:] = [other for other in _recording if other is not used]  # By identity: equal lists may nest.


def _note(backend: str) -> str:
  for used in _recording:
    if backend not in used:
      used.append(backend)
  return backend


def attention_backend(implementation: Optional[str], q) -> str:
  """`implementation` if given (one of IMPLEMENTATIONS); else 'cudnn' on a CUDA GPU for bf16/fp16 inputs whose
  head dim cuDNN's flash kernel takes (a multiple of 8, at most 128); on the CPU, for inputs of known shape,
  'einsum' when all the float32 scores fit in one chunk of chunked attention (`chunking.GROUP_BYTES`: its loop
  would run once, and recompute the probabilities in the backward pass for nothing), else 'chunked'; else
  'xla'. The shapes are those traced: under a sharded jit, the global batch's."""
  if implementation is not None:
    return implementation
  head_dim = q.shape[-1]
  if q.dtype in (jnp.bfloat16, jnp.float16) and head_dim % 8 == 0 and head_dim <= 128 and _on_cuda():
    return 'cudnn'
  if jax.default_backend() == 'cpu' and all(isinstance(n, int) for n in q.shape):
    b, length, heads = q.shape[:3]
    if 4 * b * heads * length * length <= chunking.GROUP_BYTES:
      return 'einsum'
    return 'chunked'  # Its loop needs a known number of (example, head) pairs: not a symbolic batch (export).
  return 'xla'


def encoder_padding(padding: str, backend: str, length: int) -> int:
  """How many tokens an encoder of `length` tokens appends once for all its layers (0: none; the attention
  then pads in each layer where its kernel needs it). `padding` ('auto', 'once', 'per_layer'):

  - 'auto' pads once when the backend is cuDNN and at most 1/64 more rows go through the projections and MLPs
    (ViViT-B/16x2 Model 1: 3137 -> 3144 tokens; Model 2's spatial encoder 197 -> 200); otherwise
    per layer (Model 2's temporal encoder: 17 -> 24 tokens would be 41% more rows in its MLPs). Padding once
    saves a pad of q, k and v and a slice of the output in every layer, forward and backward.
  - 'once' always pads to the cuDNN multiple; the attention must mask (xla, cudnn or einsum, not chunked).
  """
  if padding not in PADDINGS:
    raise ValueError(f'unknown attention padding {padding!r}; expected one of {PADDINGS}')
  pad = -length % CUDNN_LENGTH_MULTIPLE
  if padding == 'per_layer' or not pad:
    return 0
  if padding == 'once':
    if backend == 'chunked':
      raise ValueError("model.attention_padding='once' needs attention that masks padding "
                       "(model.attention_implementation 'xla', 'cudnn' or 'einsum'); chunked attention does not")
    return pad
  return pad if backend == 'cudnn' and pad * 64 <= length else 0


def masked_attention(q, k, v, implementation: str, valid_length: int):
  """`jax.nn.dot_product_attention` over axis 1 of `[B, L, h, dh]` where the tokens from `valid_length` on are
  padding: masked as keys (`key_value_seq_lengths`) and as queries."""
  lengths = jnp.full((q.shape[0],), valid_length, jnp.int32)
  return jax.nn.dot_product_attention(q, k, v, query_seq_lengths=lengths, key_value_seq_lengths=lengths,
                                      implementation=implementation)


def padded_attention(q, k, v, implementation: str, multiple: int):
  """`masked_attention` with L padded here to a multiple of `multiple`, and the padded query rows dropped."""
  length = q.shape[1]
  pad = -length % multiple
  if not pad:
    return jax.nn.dot_product_attention(q, k, v, implementation=implementation)
  widths = ((0, 0), (0, pad), (0, 0), (0, 0))
  return masked_attention(jnp.pad(q, widths), jnp.pad(k, widths), jnp.pad(v, widths), implementation,
                          length)[:, :length]


def dot_product_attention(q, k, v, *, dropout_rate: float = 0.0, dropout_rng=None,
                          deterministic: bool = True, implementation: Optional[str] = None,
                          valid_length: Optional[int] = None):
  """Self-attention over axis 1 of `[B, L, h, dh]` inputs; returns `[B, L, h, dh]`. With `valid_length`, the
  tokens from it on are the encoder's padding (`encoder_padding`): no token attends to them."""
  backend = _note(attention_backend(implementation, q))
  if valid_length is not None and backend == 'chunked':
    raise ValueError('padded tokens need attention that masks them (xla, cudnn or einsum), not chunked')
  if backend == 'einsum':
    return _einsum_attention(q, k, v, 1, dropout_rate, dropout_rng, deterministic, valid_length)
  if not deterministic and dropout_rate > 0.0:
    if backend == 'chunked' and dropout_rng is not None:
      return chunking.chunked_attention(q, k, v, dropout_rate, dropout_rng)
    return _einsum_attention(q, k, v, 1, dropout_rate, dropout_rng, deterministic, valid_length)  # Or its error.
  if valid_length is not None:
    return masked_attention(q, k, v, backend, valid_length)
  if backend == 'cudnn':
    return padded_attention(q, k, v, backend, CUDNN_LENGTH_MULTIPLE)
  if backend == 'chunked':
    return chunking.chunked_attention(q, k, v)
  return jax.nn.dot_product_attention(q, k, v, implementation=backend)


def few_query_attention(q, k, v, *, valid_length: Optional[int] = None):
  """Attention of a few queries `[B, Lq, h, dh]` over keys and values `[B, L, h, dh]` (an encoder's last
  block when only its class token is read): einsums, whose `[B, h, Lq, L]` scores are small. Keys from
  `valid_length` on (padding) get no weight. Recorded as 'einsum' (`recorded_backends`)."""
  _note('einsum')
  return _einsum_attention(q, k, v, 1, 0.0, None, True, valid_length)


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
  _note('einsum')
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
