"""The speed reference: ViViT Models 1 and 2 written the way Scenic writes them, from flax's own modules.

Scenic's encoder block is flax's `nn.MultiHeadDotProductAttention` (einsum attention, xavier kernels, the
query scaled before the logits) between pre-LayerNorms, then an MLP; its tubelet embedding is an `nn.Conv` with
strides equal to the window. `ReferenceViViT` does the same, module for module, with the same parameter tree
as `vivit_jax.models` (so one set of parameters runs in both and the benchmark times the same function), and
takes `model.apply({'params': p}, video, train=...)` like ours, so it trains through our own train step and
optax update. It has none of our speed work: it is what a port of Scenic's model code runs at.

Dropout, stochastic depth and the other variants are left out: the benchmark turns the regularisers off
(`model.comparable_config`) and times Models 1 and 2.
"""

from typing import Tuple

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from vivit_jax.models import DTYPES


class _ReferenceMlp(nn.Module):
  mlp_dim: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform(),
                                     bias_init=nn.initializers.normal(stddev=1e-6), name=name)
    return dense(x.shape[-1], 'Dense_1')(nn.gelu(dense(self.mlp_dim, 'Dense_0')(x)))


class _ReferenceBlock(nn.Module):
  mlp_dim: int
  num_heads: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm(dtype=self.dtype, name='LayerNorm_0')(x)
    y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype, broadcast_dropout=False,
                                        kernel_init=nn.initializers.xavier_uniform(), deterministic=True,
                                        name='MultiHeadDotProductAttention_0')(y, y)
    x = x + y
    y = nn.LayerNorm(dtype=self.dtype, name='LayerNorm_1')(x)
    return x + _ReferenceMlp(self.mlp_dim, self.dtype, name='MlpBlock_0')(y)


class _ReferencePositions(nn.Module):

  @nn.compact
  def __call__(self, x):
    return x + self.param('pos_embedding', nn.initializers.normal(stddev=0.02), (1,) + x.shape[1:]).astype(x.dtype)


class _ReferenceEncoder(nn.Module):
  num_layers: int
  mlp_dim: int
  num_heads: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    x = _ReferencePositions(name='posembed_input')(x)
    for i in range(self.num_layers):
      x = _ReferenceBlock(self.mlp_dim, self.num_heads, self.dtype, name=f'encoderblock_{i}')(x)
    return nn.LayerNorm(name='encoder_norm')(x)


def _with_class_token(module: nn.Module, x, name: str):
  cls = module.param(name, nn.initializers.zeros, (1, 1, x.shape[-1]))
  return jnp.concatenate([jnp.tile(cls, (x.shape[0], 1, 1)).astype(x.dtype), x], axis=1)


class ReferenceViViT(nn.Module):
  """Model 1 ('spacetime') or Model 2 ('factorized_encoder') with a class token and the tubelet embedding."""
  kind: str
  num_classes: int
  hidden_size: int
  patch_size: Tuple[int, int, int]  # Scenic's order (fh, fw, ft).
  encoders: Tuple[Tuple[int, int, int], ...]  # (num_layers, mlp_dim, num_heads): one, or spatial and temporal.
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, video, *, train: bool = False):
    del train  # No dropout: the benchmark compares models with their regularisers off.
    fh, fw, ft = self.patch_size
    x = nn.Conv(self.hidden_size, (ft, fh, fw), strides=(ft, fh, fw), padding='VALID', dtype=self.dtype,
                name='embedding')(video)
    b, t, h, w, d = x.shape
    if self.kind == 'spacetime':
      x = _with_class_token(self, x.reshape(b, t * h * w, d), 'cls')
      x = _ReferenceEncoder(*self.encoders[0], self.dtype, name='Transformer')(x)[:, 0]
    else:
      x = _with_class_token(self, x.reshape(b * t, h * w, d), 'cls_SpatialTransformer')
      x = _ReferenceEncoder(*self.encoders[0], self.dtype, name='SpatialTransformer')(x)[:, 0]
      x = _with_class_token(self, x.reshape(b, t, d), 'cls_TemporalTransformer')
      x = _ReferenceEncoder(*self.encoders[1], self.dtype, name='TemporalTransformer')(x)[:, 0]
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name='output_projection')(
        x.astype(jnp.float32))


REFERENCE_VARIANTS = ('spacetime', 'factorized_encoder')


def reference_model(config: ml_collections.ConfigDict) -> ReferenceViViT:
  """The reference for `config` (Model 1 or 2, class token, tubelet embedding); ValueError for the rest."""
  m = config.model
  kind = m.attention_config.type
  if kind not in REFERENCE_VARIANTS or m.classifier != 'token' or m.temporal_encoding_config.method != '3d_conv' \
      or m.representation_size is not None:
    raise ValueError(f'the flax reference implements Models 1 and 2 with a class token, the tubelet embedding and '
                     f'no representation layer; {kind} / {m.classifier} / {m.temporal_encoding_config.method} has '
                     'no reference')
  if kind == 'spacetime':
    encoders = ((m.num_layers, m.mlp_dim, m.num_heads),)
  else:
    s, t = m.spatial_transformer, m.temporal_transformer
    encoders = ((s.num_layers, s.mlp_dim, s.num_heads), (t.num_layers, t.mlp_dim, t.num_heads))
  return ReferenceViViT(kind, config.dataset_configs.num_classes, m.hidden_size, tuple(m.patches.size), encoders,
                        DTYPES[config.model_dtype_str])
