"""Backbone size: ViViT-B against ViViT-L, Model 2 (factorised encoder, Lt = 4) on Kinetics-400.

The paper (reported as a plot) finds the larger backbone more accurate when it is pretrained on enough
data: B/16x2 FE 78.8 top-1 at 284.4 GFLOPs, L/16x2 FE 80.6 top-1 (its state-of-the-art table) at 995.3 GFLOPs
per view. L is the shipped configs/kinetics400/vivit_large_factorised_encoder.py written as overrides of B.

Run:
  python scripts/run_ablation.py --config=configs/ablations/backbone_size.py
"""

from vivit_jax.config import import_config_file

vivit_base_factorised_encoder = import_config_file('../kinetics400/vivit_base_factorised_encoder.py', __file__)

METRIC = 'valid/accuracy'
_LARGE = ['model.hidden_size=1024', 'model.spatial_transformer.num_layers=24',
          'lr_configs.base_learning_rate=0.1']  # The shipped L-FE recipe's LR (B-FE: 0.05).
for _encoder in ('spatial_transformer', 'temporal_transformer'):
  _LARGE += [f'model.{_encoder}.num_heads=16', f'model.{_encoder}.mlp_dim=4096']


def get_config(arg=None):
  """ViViT-B/16x2 Model 2 on Kinetics-400 (configs/kinetics400/vivit_base_factorised_encoder.py)."""
  return vivit_base_factorised_encoder.get_config(arg)


def get_sweep(arg=None):
  """ViViT-B and ViViT-L factorised encoders (the shipped K400 B and L recipes)."""
  del arg
  return [dict(name='base', overrides=[], paper=dict(top1=78.8, gflops=284.4, params=115_062_928)),
          dict(name='large', overrides=list(_LARGE), paper=dict(top1=80.6, gflops=995.3))]
