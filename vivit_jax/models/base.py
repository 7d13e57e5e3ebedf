"""Fields and steps every ViViT variant shares: the token embedding and the classifier head."""

from typing import Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp

from vivit_jax.models import embedding, heads


class ViViTBase(nn.Module):
  """Shared fields. Video `[B, T, H, W, 3]` -> logits `[B, num_classes]`."""
  num_classes: int = 0
  hidden_size: int = 768
  patch_size: Tuple[int, ...] = (16, 16, 2)  # Scenic's order (fh, fw, ft).
  temporal_encoding: str = '3d_conv'  # '3d_conv' | 'temporal_sampling'.
  n_sampled_frames: Optional[int] = None
  kernel_init_method: Optional[str] = None
  representation_size: Optional[int] = None
  classifier: str = 'token'
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  stochastic_droplayer_rate: float = 0.0
  return_prelogits: bool = False
  remat: bool = False
  remat_policy: Optional[str] = None
  fused_qkv: Optional[bool] = None  # None: one matmul on the CPU, three elsewhere (blocks.fuse_qkv).
  attention_implementation: Optional[str] = None
  attention_padding: str = 'auto'
  last_block_class_token_only: bool = True  # See `pooled_tokens`.
  dtype: jnp.dtype = jnp.float32

  def embed(self, video: jnp.ndarray) -> jnp.ndarray:
    """Video -> token grid `[B, T', H', W', d]` (the `embedding` parameters)."""
    return embedding.TokenEmbedding(
        self.hidden_size, tuple(self.patch_size), self.temporal_encoding, self.n_sampled_frames,
        self.kernel_init_method, dtype=self.dtype, name='embedding')(video)

  def encoder_kwargs(self):
    return dict(dropout_rate=self.dropout_rate, attention_dropout_rate=self.attention_dropout_rate,
                stochastic_droplayer_rate=self.stochastic_droplayer_rate, remat=self.remat,
                remat_policy=self.remat_policy, fused_qkv=self.fused_qkv,
                implementation=self.attention_implementation, attention_padding=self.attention_padding,
                dtype=self.dtype)

  def pooled_tokens(self):
    """The encoder's `output_tokens`: 1 where the head reads only token 0 (classifier 'token' or '0') and
    `last_block_class_token_only` (so the last block computes only that token), else None (all tokens)."""
    return 1 if self.classifier in ('token', '0') and self.last_block_class_token_only else None

  def head(self, pooled: jnp.ndarray) -> jnp.ndarray:
    return heads.classify(pooled, num_classes=self.num_classes,
                          representation_size=self.representation_size,
                          return_prelogits=self.return_prelogits)
