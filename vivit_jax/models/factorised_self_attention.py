"""Model 3, factorised self-attention: each block attends over time, then over space, then applies the MLP."""

from vivit_jax.models import spatiotemporal


class FactorisedSelfAttentionViViT(spatiotemporal.SpatioTemporalViViT):
  """Model 1's body with `FactorisedSelfAttentionBlock`s; global pooling only (no class token)."""
  block: str = 'factorized_self_attention_block'
  classifier: str = 'gap'
