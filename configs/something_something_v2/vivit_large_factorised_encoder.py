"""ViViT-L/16x2, Model 2 (factorised encoder, Lt = 4 temporal layers), on Something-Something v2.

Run:
  python -m vivit_jax.main --config=configs/something_something_v2/vivit_large_factorised_encoder.py --workdir=runs/vivit_large_factorised_encoder_ssv2

Accuracy: 65.9 top-1 in the paper's state-of-the-art table (its regularisation ablation: 60.4 -> 65.4).
Init: an ImageNet-21K ViT-L/16 with a class token, or (as the paper's ablation does for the small datasets) a
Kinetics-trained ViViT-L/16x2 factorised encoder; set `init_from.checkpoint_path` (None here: from scratch).
Crops are 256 pixels (16x16 patches, against 14x14 for a 224 checkpoint), so positional embeddings are resized.
No horizontal flips: SSv2 has left/right classes. Tested on the validation split (4 temporal views x 1 crop).
"""

from vivit_jax.config import defaults, recipe


def get_config(arg=None):
  """ViViT-L/16x2 factorised encoder, SSv2, the paper's recipe with its regularisation."""
  recipe.no_presets(arg, __name__)
  config = defaults.get_config()
  config.experiment_name = 'vivit_large_factorised_encoder_ssv2'
  recipe.dataset(config, num_classes=174, sizes=recipe.SSV2_SIZES, colour_augment=False,
                 three_spatial_crops=False, min_resize=288, crop_size=256)  # Scenic's SSv2 sizes.
  config.dataset_configs.augmentation_params.do_flip = False  # "Pushing left to right" != "right to left".
  recipe.vivit_large_fe(config)
  recipe.pretrained(config, source_classifier='token', positional_embed_size_change='resize')
  recipe.regularise(config, rand_augment_magnitude=20, stochastic_depth=0.3, label_smoothing=0.3,
                    mixup_alpha=0.3)
  recipe.paper_schedule(config, epochs=35, base_lr=0.5)  # Paper: 0.5 (Scenic's SSv2 file uses 0.4).
  return config
