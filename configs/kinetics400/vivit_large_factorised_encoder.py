"""ViViT-L/16x2, Model 2 (factorised encoder, Lt = 4 temporal layers), on Kinetics-400.

Run:
  python -m vivit_jax.main --config=configs/kinetics400/vivit_large_factorised_encoder.py --workdir=runs/vivit_large_factorised_encoder_k400

Accuracy: 80.6 top-1 (1x1) / 81.7 (1x3) in the paper's state-of-the-art table; Scenic's released
checkpoint: 80.3 top-1 (4x3 views).
Init: an ImageNet-21K ViT-L/16 with a class token; set `init_from.checkpoint_path` (None here: from scratch).
"""

from vivit_jax.config import defaults, recipe


def get_config(arg=None):
  """ViViT-L/16x2 factorised encoder, K400, the paper's recipe."""
  recipe.no_presets(arg, __name__)
  config = defaults.get_config()
  config.experiment_name = 'vivit_large_factorised_encoder_k400'
  recipe.dataset(config, num_classes=400, sizes=recipe.KINETICS400_SIZES, colour_augment=True,
                 three_spatial_crops=True)
  recipe.vivit_large_fe(config)
  recipe.pretrained(config, source_classifier='token', positional_embed_size_change='tile')
  recipe.paper_schedule(config, epochs=30, base_lr=0.1)  # Paper: K400 0.1 (Scenic's L-FE files use 0.05).
  return config
