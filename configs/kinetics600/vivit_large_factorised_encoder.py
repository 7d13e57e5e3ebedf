"""ViViT-L/16x2, Model 2 (factorised encoder, Lt = 4 temporal layers), on Kinetics-600.

Run:
  python -m vivit_jax.main --config=configs/kinetics600/vivit_large_factorised_encoder.py --workdir=runs/vivit_large_factorised_encoder_k600

Accuracy: 82.9 top-1 in the paper's state-of-the-art table; Scenic's released checkpoint: 81.6 top-1
(4x3 views).
Init: an ImageNet-21K ViT-L/16 with a class token; set `init_from.checkpoint_path` (None here: from scratch).
Dataset sizes are those of Scenic's K600 config (363213 / 27676 / 55377 videos); Kinetics shrinks over time, so
set `dataset_configs.examples_per_subset` to your copy (the schedule is derived from the training size).
"""

from vivit_jax.config import defaults, recipe


def get_config(arg=None):
  """ViViT-L/16x2 factorised encoder, K600, the paper's recipe."""
  recipe.no_presets(arg, __name__)
  config = defaults.get_config()
  config.experiment_name = 'vivit_large_factorised_encoder_k600'
  recipe.dataset(config, num_classes=600, sizes=recipe.KINETICS600_SIZES, colour_augment=True,
                 three_spatial_crops=True)
  recipe.vivit_large_fe(config)
  recipe.pretrained(config, source_classifier='token', positional_embed_size_change='tile')
  recipe.paper_schedule(config, epochs=30, base_lr=0.1)  # Paper: K600 0.1 (Scenic's K600 file uses 0.05).
  return config
