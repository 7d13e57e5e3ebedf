"""Model 2, factorised encoder: a spatial encoder per frame, then a temporal encoder over the frame features.

The spatial encoder is applied once to all frames folded into the batch (`[B * T', H' * W', d]`), so dropout
and stochastic-depth masks are independent per example and per frame (Scenic's `jax.vmap` shares them across
frames). `spatial_only_baseline=True` averages the frame features instead of running the temporal encoder.
"""

import flax.linen as nn
import jax.numpy as jnp

from vivit_jax.models import base, encoder, heads


class FactorisedEncoderViViT(base.ViViTBase):
  """`SpatialTransformer` (+ `cls_SpatialTransformer`) -> `TemporalTransformer` (+ `cls_TemporalTransformer`)."""
  spatial_num_heads: int = 12
  spatial_mlp_dim: int = 3072
  spatial_num_layers: int = 12
  temporal_num_heads: int = 12
  temporal_mlp_dim: int = 3072
  temporal_num_layers: int = 4
  spatial_only_baseline: bool = False

  def encode(self, x, name: str, num_heads: int, mlp_dim: int, num_layers: int, train: bool):
    if self.classifier == 'token':
      x = heads.add_class_token(self, x, f'cls_{name}')
    x = encoder.Encoder(num_layers, mlp_dim, num_heads, output_tokens=self.pooled_tokens(), name=name,
                        **self.encoder_kwargs())(x, train=train)
    return heads.pool(x, self.classifier)

  @nn.compact
  def __call__(self, video: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    x = self.embed(video)
    b, t, h, w, d = x.shape
    x = self.encode(x.reshape(b * t, h * w, d), 'SpatialTransformer', self.spatial_num_heads,
                    self.spatial_mlp_dim, self.spatial_num_layers, train)
    x = x.reshape(b, t, -1)
    if self.spatial_only_baseline:
      x = jnp.mean(x, axis=1)
    else:
      x = self.encode(x, 'TemporalTransformer', self.temporal_num_heads, self.temporal_mlp_dim,
                      self.temporal_num_layers, train)
    return self.head(x)
