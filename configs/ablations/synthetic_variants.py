"""Models 1-4 and the spatial-only average-pool baseline on synthetic motion videos: a CPU-sized model table.

The class of a synthetic clip is the direction its square moves in (vivit_jax/data/synthetic.py), one
of 8. Tubelets here span one frame (8x8x1 patches), so no token sees motion: Models 1-4, which attend across
frames, have to relate where the square is to when, while the baseline encodes each frame alone and averages
over time, which is blind to frame order. A clip and its time reversal are equally likely videos of the opposite
direction (the square's whole path stays inside the frame, `synthetic_wrap=False`), so the baseline can at best
tell the axis of motion: its ceiling is 0.5 valid accuracy, chance is 0.125. The clips are small (4 frames of
16x16, one bright 8-pixel square on a plain dark background, 2 pixels per frame) so that the sweep runs on CPU
in a few minutes. No paper numbers: this checks the mechanism, not the paper's accuracy.

Result (2 CPU cores, one device; valid/accuracy % on 512 clips; the whole sweep takes about 2 minutes and is
deterministic on one machine; docs/ablations/synthetic_variants.md):
  step                         200     400     600
  model1_spatiotemporal       49.4    99.4   100.0
  model2_factorised_encoder   50.4    84.8   100.0
  model3_factorised_self_att  72.9   100.0   100.0
  model4_factorised_dot_prod  92.8   100.0   100.0
  average_pool_baseline       28.7    32.0    34.4
Models 1 and 2 sit near 0.5 (the axis, not yet the direction) at step 200, then learn the direction, Model 2
later than Model 1. On the
harder data of configs/synthetic.py (8x32x32, three squares of random colours on a texture, wrapping around the
edges) one-frame tubelets learn far more slowly (Model 1: 0.37 after 1200 steps, Model 2
still at chance after 600), which is why this sweep makes its own data. With multi-frame tubelets (8x8x2) the
baseline sees motion inside each token and is no longer blind (0.79 after 300 steps on that data).

Run:
  python scripts/run_ablation.py --config=configs/ablations/synthetic_variants.py

Presets (`synthetic_variants.py:PRESET`):
  tiny     2 steps of a tiny model per entry, for tests.
"""

from vivit_jax.config import import_config_file

synthetic = import_config_file('../synthetic.py', __file__)

METRIC = 'valid/accuracy'


def get_config(arg=None):
  """configs/synthetic.py's Model 2 on 4x16x16 clips of one square with one-frame tubelets, and a 4-layer joint
  encoder for Models 1, 3, 4."""
  if arg not in (None, 'tiny'):
    raise ValueError(f"unknown preset {arg!r} for configs/ablations/synthetic_variants.py; expected 'tiny'")
  config = synthetic.get_config(arg)
  config.experiment_name = 'ablation_synthetic_variants'
  d = config.dataset_configs
  d.num_frames, d.crop_size = 4, 16
  d.synthetic_objects, d.synthetic_object_size, d.synthetic_speed = 1, 8, 2.0
  d.synthetic_background, d.synthetic_wrap = 'plain', False
  m = config.model
  m.patches.size = (8, 8, 1)  # One frame per token: motion is visible only across tokens.
  m.num_heads, m.mlp_dim, m.num_layers = 4, 128, 4  # Models 1, 3, 4: as deep as Model 2's 2 + 2 layers.
  config.num_training_steps = 600
  config.lr_configs.base_learning_rate = 2e-3
  config.log_eval_steps = 200
  config.checkpoint_steps = 600
  config.write_summary = False
  config.dataset_configs.do_multicrop_test = False  # The sweep compares valid/accuracy.
  if arg == 'tiny':
    m.num_heads, m.mlp_dim, m.num_layers = 2, 32, 1
    config.num_training_steps = 2
    config.log_eval_steps = 2
    config.checkpoint_steps = 2
  return config


def get_sweep(arg=None):
  """Models 1-4 and the average-pool baseline (Model 2 without its temporal encoder)."""
  del arg
  return [
      dict(name='model1_spatiotemporal', overrides=['model.attention_config.type=spacetime'], paper={}),
      dict(name='model2_factorised_encoder', overrides=[], paper={}),
      dict(name='model3_factorised_self_attention',
           overrides=['model.attention_config.type=factorized_self_attention_block', 'model.classifier=gap'],
           paper={}),
      dict(name='model4_factorised_dot_product',
           overrides=['model.attention_config.type=factorized_dot_product_attention', 'model.classifier=gap'],
           paper={}),
      dict(name='average_pool_baseline', overrides=['model.attention_config.spatial_only_baseline=True'],
           paper={}),
  ]
