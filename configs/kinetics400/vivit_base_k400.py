"""ViViT-B/16x2, Model 1 (spatio-temporal attention, class token), on Kinetics-400.

Run:
  python -m vivit_jax.main --config=configs/kinetics400/vivit_base_k400.py --workdir=runs/vivit_base_k400

Accuracy: 80.0 top-1 in the paper's model table; Scenic's released checkpoint: 79.9 top-1 (4x3 views).
Init: an ImageNet-21K ViT-B/16 with a class token; set `init_from.checkpoint_path` (None here: from scratch).
Positional embeddings are tiled over time, the tubelet is central-frame initialised.
"""

from vivit_jax.config import defaults, recipe


def get_config(arg=None):
  """ViViT-B/16x2 Model 1, K400, the paper's recipe."""
  recipe.no_presets(arg, __name__)
  config = defaults.get_config()
  config.experiment_name = 'vivit_base_k400'
  recipe.dataset(config, num_classes=400, sizes=recipe.KINETICS400_SIZES, colour_augment=True,
                 three_spatial_crops=True)
  recipe.vivit_base(config, 'spacetime')
  recipe.pretrained(config, source_classifier='token', positional_embed_size_change='tile')
  recipe.paper_schedule(config, epochs=30, base_lr=0.1)
  return config
