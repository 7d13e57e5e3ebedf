"""Factorised-encoder depth: the number of temporal transformer layers Lt of ViViT-B Model 2 on Kinetics-400.

The paper (its ablations) finds that a temporal encoder matters, but a shallow one suffices: Lt = 0 (the
average-pool baseline: per-frame encodings averaged over time) gives 75.8 top-1, one layer 78.6, and 4, 8 and 12
layers 78.8, 78.8 and 78.9. The shipped Model 2 config uses Lt = 4.

Run:
  python scripts/run_ablation.py --config=configs/ablations/temporal_layers.py
"""

from vivit_jax.config import import_config_file

vivit_base_factorised_encoder = import_config_file('../kinetics400/vivit_base_factorised_encoder.py', __file__)

METRIC = 'valid/accuracy'
_TOP1 = {0: 75.8, 1: 78.6, 4: 78.8, 8: 78.8, 12: 78.9}


def get_config(arg=None):
  """ViViT-B/16x2 Model 2 (Lt = 4) on Kinetics-400 (configs/kinetics400/vivit_base_factorised_encoder.py)."""
  return vivit_base_factorised_encoder.get_config(arg)


def get_sweep(arg=None):
  """Lt in (0, 1, 4, 8, 12); Lt = 0 is the spatial-only baseline (no temporal encoder)."""
  del arg
  sweep = [dict(name='lt0_average_pool', overrides=['model.attention_config.spatial_only_baseline=True'],
                paper=dict(top1=_TOP1[0], gflops=283.9, params=86_696_080))]
  for layers in (1, 4, 8, 12):
    paper = dict(top1=_TOP1[layers])
    if layers == 4:
      paper.update(gflops=284.4, params=115_062_928)
    sweep.append(dict(name=f'lt{layers}', overrides=[f'model.temporal_transformer.num_layers={layers}'],
                      paper=paper))
  return sweep
