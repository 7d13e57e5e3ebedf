"""ViViT models. `create_model(config)` is the one place that reads the model config.

| `model.attention_config.type`        | Paper   | Module                          |
|--------------------------------------|---------|---------------------------------|
| `spacetime`                          | Model 1 | `SpatioTemporalViViT`           |
| `factorized_encoder`                 | Model 2 | `FactorisedEncoderViViT`        |
| `factorized_self_attention_block`    | Model 3 | `FactorisedSelfAttentionViViT`  |
| `factorized_dot_product_attention`   | Model 4 | `FactorisedDotProductViViT`     |
"""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from vivit_jax.models.factorised_dot_product import FactorisedDotProductViViT
from vivit_jax.models.factorised_encoder import FactorisedEncoderViViT
from vivit_jax.models.factorised_self_attention import FactorisedSelfAttentionViViT
from vivit_jax.models.spatiotemporal import SpatioTemporalViViT

VARIANTS = {
    'spacetime': SpatioTemporalViViT,
    'factorized_encoder': FactorisedEncoderViViT,
    'factorized_self_attention_block': FactorisedSelfAttentionViViT,
    'factorized_dot_product_attention': FactorisedDotProductViViT,
}
PAPER_MODEL_NUMBER = {'spacetime': 1, 'factorized_encoder': 2, 'factorized_self_attention_block': 3,
                      'factorized_dot_product_attention': 4}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
  """Returns the flax module for `config.model.attention_config.type`.

  `config` is validated first unless it already is (validated configs are locked). For multi-head models
  (`vivit_multihead_classification`) the module returns the concatenated logits of all heads
  (`dataset_configs.class_splits` gives their sizes).
  """
  from vivit_jax.config import validate_config  # pylint: disable=g-import-not-at-top
  if not config.is_locked:
    config = validate_config(config)
  m = config.model
  num_classes = config.dataset_configs.num_classes  # Validation requires it.
  kind = m.attention_config.type
  tec = m.temporal_encoding_config
  common = dict(
      num_classes=num_classes, hidden_size=m.hidden_size, patch_size=tuple(m.patches.size),
      temporal_encoding=tec.method, n_sampled_frames=tec.n_sampled_frames,
      kernel_init_method=tec.kernel_init_method, representation_size=m.representation_size,
      classifier=m.classifier, dropout_rate=m.dropout_rate, attention_dropout_rate=m.attention_dropout_rate,
      stochastic_droplayer_rate=m.stochastic_droplayer_rate, return_prelogits=m.return_prelogits,
      remat=m.remat, remat_policy=m.remat_policy, fused_qkv=m.fused_qkv,
      attention_implementation=m.attention_implementation, attention_padding=m.attention_padding,
      last_block_class_token_only=m.last_block_class_token_only, dtype=DTYPES[config.model_dtype_str])
  if kind == 'factorized_encoder':
    s, t = m.spatial_transformer, m.temporal_transformer
    return FactorisedEncoderViViT(
        spatial_num_heads=s.num_heads, spatial_mlp_dim=s.mlp_dim, spatial_num_layers=s.num_layers,
        temporal_num_heads=t.num_heads, temporal_mlp_dim=t.mlp_dim, temporal_num_layers=t.num_layers,
        spatial_only_baseline=m.attention_config.spatial_only_baseline, **common)
  return VARIANTS[kind](
      num_heads=m.num_heads, mlp_dim=m.mlp_dim, num_layers=m.num_layers,
      attention_order=m.attention_config.attention_order,
      attention_kernel_init_method=m.attention_config.attention_kernel_init_method,
      return_preclassifier=m.return_preclassifier, **common)
