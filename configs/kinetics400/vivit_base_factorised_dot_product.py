"""ViViT-B/16x2, Model 4 (factorised dot-product attention: half the heads over time, half over space).

Run:
  python -m vivit_jax.main --config=configs/kinetics400/vivit_base_factorised_dot_product.py --workdir=runs/vivit_base_factorised_dot_product

Accuracy: 76.3 top-1 on Kinetics-400 in the paper's model table.
Init: an ImageNet-21K ViT-B/16 with a class token; set `init_from.checkpoint_path` (None here: from scratch).
Model 4 has no class token, so it pools with 'gap'.
"""

from vivit_jax.config import defaults, recipe


def get_config(arg=None):
  """ViViT-B/16x2 Model 4, K400, the paper's recipe."""
  recipe.no_presets(arg, __name__)
  config = defaults.get_config()
  config.experiment_name = 'vivit_base_factorised_dot_product'
  recipe.dataset(config, num_classes=400, sizes=recipe.KINETICS400_SIZES, colour_augment=True,
                 three_spatial_crops=True)
  recipe.vivit_base(config, 'factorized_dot_product_attention', classifier='gap')  # No class token.
  recipe.pretrained(config, source_classifier='token', positional_embed_size_change='tile')
  recipe.paper_schedule(config, epochs=30, base_lr=0.1)
  return config
