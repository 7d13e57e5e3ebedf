"""Model 1, spatio-temporal attention: every token attends to every other token.

Models 3 and 4 share this body (one encoder over all `T' x H' x W'` tokens) with a different block, so they
are subclasses that only change `block`.
"""

import flax.linen as nn
import jax.numpy as jnp

from vivit_jax.models import base, encoder, heads


class SpatioTemporalViViT(base.ViViTBase):
  """Tokens (plus `cls` for the token classifier) -> `Transformer` encoder -> pool -> head."""
  num_heads: int = 12
  mlp_dim: int = 3072
  num_layers: int = 12
  block: str = 'spacetime'
  attention_order: str = 'time_space'
  attention_kernel_init_method: str = 'xavier'
  return_preclassifier: bool = False

  @nn.compact
  def __call__(self, video: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    if self.block != 'spacetime' and self.classifier in ('token', '0'):
      raise ValueError(f"classifier '{self.classifier}' is not available with block '{self.block}' "
                       "(no class token); expected 'gap', 'gmp' or 'gsp'")
    x = self.embed(video)
    b, t, h, w, d = x.shape
    x = x.reshape(b, t * h * w, d)
    if self.classifier == 'token':
      x = heads.add_class_token(self, x)
    x = encoder.Encoder(
        self.num_layers, self.mlp_dim, self.num_heads, block=self.block, temporal_dims=t,
        attention_order=self.attention_order,
        attention_kernel_init_method=self.attention_kernel_init_method,
        output_tokens=None if self.return_preclassifier else self.pooled_tokens(), name='Transformer',
        **self.encoder_kwargs())(x, train=train)
    if self.return_preclassifier:
      return x
    return self.head(heads.pool(x, self.classifier))
