"""Transformer blocks with Scenic's parameter names.

- `MultiHeadDotProductAttention`: flax's parameter layout (`query`/`key`/`value` kernels `[d, h, dh]`, `out`
  `[h, dh, d]`) over our attention kernels, for full, per-axis (Model 3) or head-factorised (Model 4) attention.
  With `fused_qkv` (the default on the CPU: `fuse_qkv`) the three projections are one matmul against the three
  kernels stacked at each call (`[d, 3, h, dh]`): the input is read once and one larger matmul replaces three,
  forward and backward; the parameters, their initialisation and the function are unchanged. It runs on the
  tokens as rows (`[n, d] @ [d, 3 * h * dh]`), as the MLP does (below), so that its kernel's gradient contracts
  one axis: XLA on the CPU copied the `[3, h, dh, ...]` gradient into a transposed layout to contract two
  (ViViT-S Model 2's train step 1.2% quicker, Model 1's 0.8%).
- `MlpBlock`: Dense_0 - GELU (tanh approximation) - Dropout - Dense_1 - Dropout. On the CPU the GELU, its
  dropout and Dense_1 are one custom-gradient function (`gelu_dense`) that keeps only Dense_0's output for the
  backward pass and recomputes the rest there (autodiff keeps three activations of MLP width per block). XLA on
  the CPU takes a step's temporaries as fresh memory each call, and every 4 KiB page costs a fault on first
  write: ViViT-S Model 2's train step needs 451 MB of temporaries instead of 624 and runs 2-3% quicker (Model 1
  5%), interleaved in one process. GPUs keep their memory pooled, so they differentiate automatically.
  Both Dense layers run on the tokens as rows (`[n, d]`, a bitcast of `[..., d]`; the GELU and its dropout mask
  keep the input's shape), so that each kernel's gradient contracts one axis: XLA on the CPU copied the MLP-width
  gradient into a transposed layout to contract two (train step 2-3% quicker for ViViT-S Models 1 and 2).
- `EncoderBlock` (Models 1, 2, 4) and `FactorisedSelfAttentionBlock` (Model 3): pre-LN residual blocks with
  stochastic depth rescaled by 1 / (1 - p) on every residual branch, one mask per example (per example and frame
  in the factorised encoder, whose frames are folded into the batch). Dropout is models/dropout.py's (hashed
  masks; 30x cheaper than threefry's on a CPU).
"""

import functools
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vivit_jax.models import attention as attn
from vivit_jax.models import dropout as dropout_lib
from vivit_jax.models.dropout import Dropout
from vivit_jax.models.layer_norm import LayerNorm

ATTENTION_KERNEL_INITS = {'xavier': nn.initializers.xavier_uniform(), 'zero': nn.initializers.zeros}
_AXIS = {'time': 1, 'space': 2}


class _Projection(nn.Module):
  """The `kernel` `[d, h, dh]` and `bias` `[h, dh]` of one of query / key / value, created (and initialised) as
  flax's DenseGeneral creates them: the kernel initialiser sees the flat `[d, h * dh]` shape."""
  num_heads: int
  head_dim: int
  kernel_init: Callable

  @nn.compact
  def __call__(self, width: int):
    def kernel_init(rng, shape, dtype=jnp.float32):
      return jnp.reshape(self.kernel_init(rng, (shape[0], shape[1] * shape[2]), dtype), shape)
    kernel = self.param('kernel', kernel_init, (width, self.num_heads, self.head_dim), jnp.float32)
    return kernel, self.param('bias', nn.initializers.zeros, (self.num_heads, self.head_dim), jnp.float32)


class MultiHeadDotProductAttention(nn.Module):
  """Self-attention with flax's MultiHeadDotProductAttention parameter tree.

  `mode`: 'full' (tokens on axis 1 of `[B, N, d]`), 'time' or 'space' (axis 1 or 2 of `[B, T, S, d]`), or
  'factorised' (Model 4 on `[B, T*S, d]`, needs `temporal_dims`).
  """
  num_heads: int
  mode: str = 'full'
  temporal_dims: Optional[int] = None
  dropout_rate: float = 0.0
  kernel_init_method: str = 'xavier'
  implementation: Optional[str] = None
  fused_qkv: Optional[bool] = None  # None: one matmul on the CPU, three elsewhere (blocks.fuse_qkv).
  valid_length: Optional[int] = None  # 'full' mode: tokens from here on are padding (attention.encoder_padding).
  query_tokens: Optional[int] = None  # 'full' mode: only the first tokens attend (and are returned); see below.
  dtype: jnp.dtype = jnp.float32

  def project(self, x: jnp.ndarray, kernel_init):
    """q, k, v `[..., h, dh]` of `x` `[..., d]` (q of its first `query_tokens` tokens only, where set)."""
    d = x.shape[-1]
    queries = x if self.query_tokens is None else x[:, :self.query_tokens]
    if not fuse_qkv(self.fused_qkv):
      dense = lambda name: nn.DenseGeneral((self.num_heads, d // self.num_heads), kernel_init=kernel_init,
                                           dtype=self.dtype, param_dtype=jnp.float32, name=name)
      return dense('query')(queries), dense('key')(x), dense('value')(x)
    params = [_Projection(self.num_heads, d // self.num_heads, kernel_init, name=name)(d)
              for name in ('query', 'key', 'value')]
    def fused(y, ps):  # The tokens as rows against the kernels as one [d, n * h * dh] matrix.
      kernel = jnp.stack([p[0] for p in ps], axis=1).astype(self.dtype)  # [d, n, h, dh]
      out = _rows(y.astype(self.dtype)) @ kernel.reshape(d, -1)
      return out.reshape(y.shape[:-1] + kernel.shape[1:]) + jnp.stack([p[1] for p in ps]).astype(self.dtype)
    if self.query_tokens is None:
      qkv = fused(x, params)
      return qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    kv = fused(x, params[1:])
    return fused(queries, params[:1])[..., 0, :, :], kv[..., 0, :, :], kv[..., 1, :, :]

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, deterministic: bool) -> jnp.ndarray:
    d = x.shape[-1]
    if d % self.num_heads:
      raise ValueError(f'hidden size {d} is not divisible by num_heads {self.num_heads}')
    kernel_init = ATTENTION_KERNEL_INITS[self.kernel_init_method]
    q, k, v = self.project(x, kernel_init)
    rng = None
    if not deterministic and self.dropout_rate > 0.0:
      rng = self.make_rng('dropout')
    kwargs = dict(dropout_rate=self.dropout_rate, dropout_rng=rng, deterministic=deterministic,
                  implementation=self.implementation)
    if self.query_tokens is not None:
      if self.mode != 'full' or not deterministic and self.dropout_rate > 0.0:
        raise ValueError('query_tokens needs full attention without attention dropout')
      y = attn.few_query_attention(q, k, v, valid_length=self.valid_length)
    elif self.mode == 'full':
      y = attn.dot_product_attention(q, k, v, valid_length=self.valid_length, **kwargs)
    elif self.mode in _AXIS:
      y = attn.axis_attention(q, k, v, _AXIS[self.mode], **kwargs)
    elif self.mode == 'factorised':
      y = attn.factorised_dot_product_attention(q, k, v, self.temporal_dims, **kwargs)
    else:
      raise ValueError(f'unknown attention mode {self.mode!r}')
    return nn.DenseGeneral(d, axis=(-2, -1), kernel_init=kernel_init, dtype=self.dtype,
                           param_dtype=jnp.float32, name='out')(y)


def fuse_qkv(fused_qkv: Optional[bool]) -> bool:
  """Whether query, key and value are one matmul: `fused_qkv`, or where None, on the CPU only. On a GPU the
  fused output is sliced into three contiguous arrays for cuDNN's attention (a copy of all three, forward, and a
  concatenation backward): an H200 ran ViViT-B/16x2 Model 1's train step at 115.7 clips/s with three matmuls
  and 113.4 with one (`vivit-benchmark --levers`)."""
  return jax.default_backend() == 'cpu' if fused_qkv is None else fused_qkv


_MLP_KERNEL_INIT = nn.initializers.xavier_uniform()
_MLP_BIAS_INIT = nn.initializers.normal(stddev=1e-6)


class MlpBlock(nn.Module):
  """Dense - GELU - Dropout - Dense - Dropout, xavier-uniform kernels and normal(1e-6) biases.

  With `recompute_gelu` (the default on the CPU: `recompute_activation`) the GELU, its dropout and Dense_1 are
  `gelu_dense`, which keeps only Dense_0's output for the backward pass; the parameters, the dropout masks and
  the function are unchanged."""
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32
  recompute_gelu: Optional[bool] = None  # None: on the CPU only (recompute_activation).

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, deterministic: bool) -> jnp.ndarray:
    dense = lambda features, name: nn.Dense(
        features, dtype=self.dtype, param_dtype=jnp.float32, name=name,
        kernel_init=_MLP_KERNEL_INIT, bias_init=_MLP_BIAS_INIT)
    h = dense(self.mlp_dim, 'Dense_0')(_rows(x)).reshape(x.shape[:-1] + (self.mlp_dim,))
    if recompute_activation(self.recompute_gelu):
      kernel, bias = _DenseParams(x.shape[-1], name='Dense_1')(self.mlp_dim)
      drop = not deterministic and self.dropout_rate > 0.0
      seed_words = _DropoutSeeds(name='Dropout_0')() if drop else None  # Dropout_0's rng, as below.
      y = gelu_dense(h, kernel.astype(self.dtype), bias.astype(self.dtype), seed_words,
                     self.dropout_rate if drop else 0.0)
    else:
      y = nn.gelu(h, approximate=True)
      y = Dropout(rate=self.dropout_rate, name='Dropout_0')(y, deterministic=deterministic)
      y = dense(x.shape[-1], 'Dense_1')(_rows(y)).reshape(x.shape)
    return Dropout(rate=self.dropout_rate, name='Dropout_1')(y, deterministic=deterministic)


class _DenseParams(nn.Module):
  """nn.Dense's `kernel` `[width, features]` and `bias`, created as MlpBlock's Dense layers create them."""
  features: int

  @nn.compact
  def __call__(self, width: int):
    kernel = self.param('kernel', _MLP_KERNEL_INIT, (width, self.features), jnp.float32)
    return kernel, self.param('bias', _MLP_BIAS_INIT, (self.features,), jnp.float32)


class _DropoutSeeds(nn.Module):
  """The seed words of the mask a `Dropout` of this name would draw (`dropout.seeds`)."""

  @nn.compact
  def __call__(self):
    return dropout_lib.seeds(self.make_rng('dropout'))


def _rows(x: jnp.ndarray) -> jnp.ndarray:
  """`x` `[..., d]` as token rows `[n, d]` (a bitcast), so that a Dense layer's weight gradient contracts one
  axis: XLA on the CPU copied a weight gradient's `[64, 50, 1536]` operand into a transposed layout to contract
  two."""
  return x.reshape(-1, x.shape[-1])


def recompute_activation(recompute_gelu: Optional[bool]) -> bool:
  """Whether MlpBlock recomputes its GELU in the backward pass: `recompute_gelu`, or where None, on the CPU,
  where each step's temporaries are fresh memory whose first write costs a page fault per 4 KiB."""
  return jax.default_backend() == 'cpu' if recompute_gelu is None else recompute_gelu


def _gelu_dense(h, kernel, bias, seed_words, rate: float):
  y = nn.gelu(h, approximate=True)
  if rate:
    y = dropout_lib.seeded_apply(y, rate, seed_words)
  out = jax.lax.dot_general(_rows(y), kernel, (((1,), (0,)), ((), ())))  # nn.Dense's own ops.
  return (out + jnp.reshape(bias, (1, -1))).reshape(y.shape[:-1] + (kernel.shape[1],))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def gelu_dense(h, kernel, bias, seed_words, rate: float):
  """Dense(kernel, bias) of dropout (`rate`, masks from `seed_words`) of GELU (tanh) of `h`, as MlpBlock's
  layers compute it, keeping only `h` for the backward pass, which recomputes the GELU and the mask."""
  return _gelu_dense(h, kernel, bias, seed_words, rate)


def _gelu_dense_fwd(h, kernel, bias, seed_words, rate):
  return _gelu_dense(h, kernel, bias, seed_words, rate), (h, kernel, bias, seed_words)


def _gelu_dense_bwd(rate, residuals, dy):
  h, kernel, bias, seed_words = residuals
  # XLA on the CPU removes optimisation barriers before common-subexpression elimination, which would merge
  # the recomputed GELU into the forward pass's and keep it alive; a zero that depends on each row of dy
  # keeps the recomputation here (a non-finite dy, which would poison the gradients anyway, makes it NaN).
  h = h + dy[..., :1].astype(h.dtype) * 0
  _, vjp = jax.vjp(lambda h, kernel, bias: _gelu_dense(h, kernel, bias, seed_words, rate), h, kernel, bias)
  return (*vjp(dy), None)


gelu_dense.defvjp(_gelu_dense_fwd, _gelu_dense_bwd)


class _ResidualBlock(nn.Module):
  """Shared fields and the stochastic-depth residual of the encoder blocks."""
  mlp_dim: int
  num_heads: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  droplayer_p: float = 0.0
  temporal_dims: Optional[int] = None
  implementation: Optional[str] = None
  fused_qkv: Optional[bool] = None  # None: one matmul on the CPU, three elsewhere (blocks.fuse_qkv).
  dtype: jnp.dtype = jnp.float32

  def residual(self, x, branch, deterministic: bool):
    """x + branch, the branch dropped per example with probability p and otherwise scaled by 1/(1-p)."""
    if deterministic or not self.droplayer_p:
      return x + branch
    keep = jax.random.bernoulli(self.make_rng('dropout'), 1.0 - self.droplayer_p,
                                (x.shape[0],) + (1,) * (x.ndim - 1))
    return x + jnp.where(keep, branch / (1.0 - self.droplayer_p), 0.0).astype(branch.dtype)

  def layer_norm(self, name: str):
    return LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name=name)

  def mlp(self, x, norm_name: str, mlp_name: str, deterministic: bool):
    y = self.layer_norm(norm_name)(x)
    y = MlpBlock(self.mlp_dim, self.dropout_rate, self.dtype, name=mlp_name)(y, deterministic=deterministic)
    return self.residual(x, y, deterministic)


class EncoderBlock(_ResidualBlock):
  """Pre-LN block: LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0.

  `factorised=True` is Model 4's block (heads split between time and space). `query_tokens=n` returns only the
  first n tokens, as the full block would compute them: they attend to every token, but only they are projected
  to queries, attended from, projected out and put through the MLP (an encoder's last block, when the head reads
  only the class token). Dropout masks of those tokens are the full block's (models/dropout.py hashes each
  element's index within its row); attention dropout is not supported there.
  """
  factorised: bool = False
  valid_length: Optional[int] = None  # Tokens from here on are the encoder's padding.
  query_tokens: Optional[int] = None

  @nn.compact
  def __call__(self, x: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
    y = self.layer_norm('LayerNorm_0')(x)
    y = MultiHeadDotProductAttention(
        self.num_heads, mode='factorised' if self.factorised else 'full', temporal_dims=self.temporal_dims,
        dropout_rate=self.attention_dropout_rate, implementation=self.implementation,
        fused_qkv=self.fused_qkv, valid_length=self.valid_length, query_tokens=self.query_tokens,
        dtype=self.dtype, name='MultiHeadDotProductAttention_0')(
            y, deterministic=deterministic)
    y = Dropout(rate=self.dropout_rate)(y, deterministic=deterministic)
    if self.query_tokens is not None:
      x = x[:, :self.query_tokens]
    x = self.residual(x, y, deterministic)
    return self.mlp(x, 'LayerNorm_1', 'MlpBlock_0', deterministic)


class FactorisedSelfAttentionBlock(_ResidualBlock):
  """Model 3: attention over time then space (or space then time), each pre-LN with its own residual, then the
  MLP. Names: LayerNorm_time, MultiHeadDotProductAttention_time, the same for space, LayerNorm_mlp, MlpBlock."""
  attention_order: str = 'time_space'
  attention_kernel_init_method: str = 'xavier'

  @nn.compact
  def __call__(self, x: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
    b, n, d = x.shape
    x = x.reshape(b, self.temporal_dims, n // self.temporal_dims, d)
    for axis in self.attention_order.split('_'):
      y = self.layer_norm(f'LayerNorm_{axis}')(x)
      y = MultiHeadDotProductAttention(
          self.num_heads, mode=axis, dropout_rate=self.attention_dropout_rate,
          kernel_init_method=self.attention_kernel_init_method, implementation=self.implementation,
          fused_qkv=self.fused_qkv, dtype=self.dtype, name=f'MultiHeadDotProductAttention_{axis}')(
              y, deterministic=deterministic)
      y = Dropout(rate=self.dropout_rate)(y, deterministic=deterministic)
      x = self.residual(x, y, deterministic)
    return self.mlp(x.reshape(b, n, d), 'LayerNorm_mlp', 'MlpBlock', deterministic)
