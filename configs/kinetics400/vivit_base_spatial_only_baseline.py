"""ViViT-B/16x2 average-pool baseline: Model 2's spatial encoder per frame, then a mean over time (Lt = 0).

Run:
  python -m vivit_jax.main --config=configs/kinetics400/vivit_base_spatial_only_baseline.py --workdir=runs/vivit_base_spatial_only_baseline

Accuracy: 75.8 top-1 on Kinetics-400 in the paper's model table and its Lt ablation.
Init: an ImageNet-21K ViT-B/16 with a class token; set `init_from.checkpoint_path` (None here: from scratch).
"""

from vivit_jax.config import defaults, recipe


def get_config(arg=None):
  """ViViT-B/16x2 factorised encoder without the temporal encoder, K400, the paper's recipe."""
  recipe.no_presets(arg, __name__)
  config = defaults.get_config()
  config.experiment_name = 'vivit_base_spatial_only_baseline'
  recipe.dataset(config, num_classes=400, sizes=recipe.KINETICS400_SIZES, colour_augment=True,
                 three_spatial_crops=True)
  recipe.vivit_base(config, 'factorized_encoder')
  config.model.attention_config.spatial_only_baseline = True  # No temporal encoder: average over time.
  recipe.pretrained(config, source_classifier='token', positional_embed_size_change='tile')
  recipe.paper_schedule(config, epochs=30, base_lr=0.05)  # As the B factorised encoder it ablates.
  return config
