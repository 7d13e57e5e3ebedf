"""Model 4, factorised dot-product attention: half of each block's heads attend over time, half over space."""

from vivit_jax.models import spatiotemporal


class FactorisedDotProductViViT(spatiotemporal.SpatioTemporalViViT):
  """Model 1's body and parameter tree with head-factorised attention; global pooling only."""
  block: str = 'factorized_dot_product_attention'
  classifier: str = 'gap'
