"""ViViT-B/16x2, Model 3 (factorised self-attention: time, then space, in every block), on Kinetics-400.

Run:
  python -m vivit_jax.main --config=configs/kinetics400/vivit_base_factorised_self_attention.py --workdir=runs/vivit_base_factorised_self_attention

Accuracy: 77.4 top-1 in the paper's model table.
Init: an ImageNet-21K ViT-B/16 with a class token; set `init_from.checkpoint_path` (None here: from scratch).
Model 3 has no class token, so it pools with 'gap' (the ViT's class-token row of the positional embedding is
dropped). The paper starts Model 3's temporal attention at zero, so that every block is a residual at
initialisation; that belongs to the initialisation from the pretrained ViT, not to
`model.attention_config.attention_kernel_init_method`, which stays 'xavier' ('zero' would zero the spatial
attention too when training from scratch).
"""

from vivit_jax.config import defaults, recipe


def get_config(arg=None):
  """ViViT-B/16x2 Model 3, K400, the paper's recipe."""
  recipe.no_presets(arg, __name__)
  config = defaults.get_config()
  config.experiment_name = 'vivit_base_factorised_self_attention'
  recipe.dataset(config, num_classes=400, sizes=recipe.KINETICS400_SIZES, colour_augment=True,
                 three_spatial_crops=True)
  recipe.vivit_base(config, 'factorized_self_attention_block', classifier='gap')  # No class token.
  recipe.pretrained(config, source_classifier='token', positional_embed_size_change='tile')
  recipe.paper_schedule(config, epochs=30, base_lr=0.1)
  return config
