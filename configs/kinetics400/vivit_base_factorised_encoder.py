"""ViViT-B/16x2, Model 2 (factorised encoder, Lt = 4 temporal layers), on Kinetics-400.

Run:
  python -m vivit_jax.main --config=configs/kinetics400/vivit_base_factorised_encoder.py --workdir=runs/vivit_base_factorised_encoder

Accuracy: 78.8 top-1 in the paper's model table; Scenic's released checkpoint: 78.4 top-1 (4x3 views).
Init: an ImageNet-21K ViT-B/16 with a class token; set `init_from.checkpoint_path` (None here: from scratch).
The ViT initialises the spatial encoder; the temporal encoder starts fresh.
"""

from vivit_jax.config import defaults, recipe


def get_config(arg=None):
  """ViViT-B/16x2 factorised encoder, K400, the paper's recipe with base LR 0.05."""
  recipe.no_presets(arg, __name__)
  config = defaults.get_config()
  config.experiment_name = 'vivit_base_factorised_encoder'
  recipe.dataset(config, num_classes=400, sizes=recipe.KINETICS400_SIZES, colour_augment=True,
                 three_spatial_crops=True)
  recipe.vivit_base(config, 'factorized_encoder')  # Lt = 4: the default temporal_transformer.num_layers.
  recipe.pretrained(config, source_classifier='token', positional_embed_size_change='tile')
  recipe.paper_schedule(config, epochs=30, base_lr=0.05)  # B-FE: half of K400's 0.1.
  return config
