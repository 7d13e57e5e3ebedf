"""Encoder: learned positional embedding, dropout, `num_layers` blocks, `encoder_norm`.

Scenic's names: `posembed_input/pos_embedding` `(1, N, d)` (normal(0.02)), `encoderblock_{i}`, `encoder_norm`.
Stochastic depth of block i is `i / max(L - 1, 1) * stochastic_droplayer_rate`. `remat=True` recomputes each
block's activations in the backward pass (parameter names are unchanged); `remat_policy` names what each block
keeps instead (`jax.checkpoint_policies`: 'dots_saveable' keeps the matmul outputs and recomputes the rest).
`attention_padding` (`attention.encoder_padding`): with cuDNN attention, a joint ('spacetime') encoder may pad its
tokens once, after the positional embedding, and drop the padding before `encoder_norm`, instead of padding q, k
and v in every layer. Each token's function is unchanged (attention masks the padded keys; LayerNorm and MLPs act
per token); dropout masks in the blocks are then drawn over the padded shape.
`output_tokens=n`: the caller reads only the first n tokens of the output (the class token, for the 'token'
classifier), so the last block computes only those (`blocks.EncoderBlock.query_tokens`): the same values, and
about 10/12 of that block's matmuls fewer (ViViT-S Model 2's 6-layer spatial encoder: 1/7 fewer FLOPs). Only
for the joint ('spacetime') block, and not in training with attention dropout.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vivit_jax.models import attention as attn
from vivit_jax.models import blocks
from vivit_jax.models.dropout import Dropout
from vivit_jax.models.layer_norm import LayerNorm

BLOCKS = ('spacetime', 'factorized_self_attention_block', 'factorized_dot_product_attention')


class AddPositionEmbs(nn.Module):
  """Adds a learned `(1, N, d)` positional embedding."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    posemb = self.param('pos_embedding', nn.initializers.normal(stddev=0.02), (1,) + x.shape[1:],
                        jnp.float32)
    return x + posemb.astype(x.dtype)


class Encoder(nn.Module):
  """Transformer encoder over `[B, N, d]` tokens (time-major `T' x S` tokens for the factorised blocks)."""
  num_layers: int
  mlp_dim: int
  num_heads: int
  block: str = 'spacetime'
  temporal_dims: Optional[int] = None
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  stochastic_droplayer_rate: float = 0.0
  attention_order: str = 'time_space'
  attention_kernel_init_method: str = 'xavier'
  remat: bool = False
  remat_policy: Optional[str] = None
  fused_qkv: Optional[bool] = None  # None: one matmul on the CPU, three elsewhere (blocks.fuse_qkv).
  implementation: Optional[str] = None
  attention_padding: str = 'auto'
  output_tokens: Optional[int] = None  # Where set, only the first `output_tokens` tokens are returned.
  dtype: jnp.dtype = jnp.float32

  def padding(self, x: jnp.ndarray) -> int:
    """Tokens appended once to `x` `[B, N, d]` for all the blocks (attention.encoder_padding)."""
    if self.block != 'spacetime':  # The factorised blocks reshape tokens to a time x space grid.
      return 0
    b, n, d = x.shape
    probe = jax.ShapeDtypeStruct((b, n, self.num_heads, d // self.num_heads), self.dtype)
    return attn.encoder_padding(self.attention_padding, attn.attention_backend(self.implementation, probe), n)

  def block_class(self):
    if self.block == 'factorized_self_attention_block':
      cls = blocks.FactorisedSelfAttentionBlock
      extra = dict(attention_order=self.attention_order,
                   attention_kernel_init_method=self.attention_kernel_init_method)
    elif self.block in ('spacetime', 'factorized_dot_product_attention'):
      cls = blocks.EncoderBlock
      extra = dict(factorised=self.block == 'factorized_dot_product_attention')
    else:
      raise ValueError(f'unknown encoder block {self.block!r}; expected one of {BLOCKS}')
    extra['fused_qkv'] = self.fused_qkv
    if self.remat:
      policy = getattr(jax.checkpoint_policies, self.remat_policy) if self.remat_policy else None
      cls = nn.remat(cls, static_argnums=(2,), policy=policy)
    return cls, extra

  def last_block_outputs(self, train: bool):
    """The last block's `query_tokens` argument, where it computes only the tokens the caller reads."""
    if (self.output_tokens is None or self.block != 'spacetime'
        or train and self.attention_dropout_rate > 0.0):  # Dropped attention weights: the full block's path.
      return {}
    return {'query_tokens': self.output_tokens}

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    if x.ndim != 3:
      raise ValueError(f'Encoder expects tokens [batch, tokens, width], found shape {x.shape}')
    x = AddPositionEmbs(name='posembed_input')(x)
    x = Dropout(rate=self.dropout_rate)(x, deterministic=not train)
    cls, extra = self.block_class()
    length, pad = x.shape[1], self.padding(x)
    if pad:
      x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)))
      extra['valid_length'] = length
    for i in range(self.num_layers):
      last = self.last_block_outputs(train) if i == self.num_layers - 1 else {}
      x = cls(mlp_dim=self.mlp_dim, num_heads=self.num_heads, dropout_rate=self.dropout_rate,
              attention_dropout_rate=self.attention_dropout_rate,
              droplayer_p=i / max(self.num_layers - 1, 1) * self.stochastic_droplayer_rate,
              temporal_dims=self.temporal_dims, implementation=self.implementation, dtype=self.dtype,
              name=f'encoderblock_{i}', **extra, **last)(x, not train)
    keep = length if self.output_tokens is None else self.output_tokens
    if x.shape[1] != keep:
      x = x[:, :keep]
    return LayerNorm(dtype=jnp.float32, param_dtype=jnp.float32, name='encoder_norm')(x)
