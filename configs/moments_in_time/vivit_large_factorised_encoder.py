"""ViViT-L/16x2, Model 2 (factorised encoder, Lt = 4 temporal layers), on Moments in Time (339 classes).

Run:
  python -m vivit_jax.main --config=configs/moments_in_time/vivit_large_factorised_encoder.py --workdir=runs/vivit_large_factorised_encoder_mit

Accuracy: 38.5 top-1 in the paper's state-of-the-art table.
Init: an ImageNet-21K ViT-L/16 with a class token; set `init_from.checkpoint_path` (None here: from scratch).
Dataset sizes are those of Moments in Time v1 (802264 training / 33900 validation videos); set
`dataset_configs.examples_per_subset` to your copy. Tested on the validation split (4 temporal views x 1 crop).
"""

from vivit_jax.config import defaults, recipe


def get_config(arg=None):
  """ViViT-L/16x2 factorised encoder, Moments in Time, the paper's recipe."""
  recipe.no_presets(arg, __name__)
  config = defaults.get_config()
  config.experiment_name = 'vivit_large_factorised_encoder_mit'
  recipe.dataset(config, num_classes=339, sizes=recipe.MOMENTS_IN_TIME_SIZES, colour_augment=True,
                 three_spatial_crops=False)
  recipe.vivit_large_fe(config)
  recipe.pretrained(config, source_classifier='token', positional_embed_size_change='tile')
  recipe.paper_schedule(config, epochs=10, base_lr=0.25)
  return config
