"""Tubelet size: 16x16 patches over 8, 4 or 2 frames, for ViViT-B Models 1 and 2 on Kinetics-400.

The paper (its ablations; reported as a plot) finds that smaller tubelets, hence more temporal tokens, raise
accuracy at a cost that grows with the token count: quadratically for Model 1's joint attention, about linearly
for Model 2's factorised encoder. Its model table gives the 16x2 points: Model 1 80.0 top-1 at 455.2 GFLOPs,
Model 2 78.8 at 284.4. The GFLOPs and step time of the other points are exact here (`--cost_only`).

Run:
  python scripts/run_ablation.py --config=configs/ablations/tubelet_size.py
  python scripts/run_ablation.py --config=configs/ablations/tubelet_size.py --cost_only
"""

from vivit_jax.config import import_config_file

vivit_base_k400 = import_config_file('../kinetics400/vivit_base_k400.py', __file__)

METRIC = 'valid/accuracy'
_MODEL2 = ['model.attention_config.type=factorized_encoder', 'lr_configs.base_learning_rate=0.05']
_PAPER_16X2 = {1: dict(top1=80.0, gflops=455.2, params=88_954_000),
               2: dict(top1=78.8, gflops=284.4, params=115_062_928)}


def get_config(arg=None):
  """ViViT-B/16x2 Model 1 on Kinetics-400 (configs/kinetics400/vivit_base_k400.py)."""
  return vivit_base_k400.get_config(arg)


def get_sweep(arg=None):
  """Models 1 and 2 at tubelets 16x8, 16x4 and 16x2 (32 frames: 4, 8 and 16 temporal tokens)."""
  del arg
  sweep = []
  for model, extra in ((1, []), (2, _MODEL2)):
    for frames in (8, 4, 2):
      sweep.append(dict(name=f'model{model}_16x{frames}',
                        overrides=extra + [f'model.patches.size=(16,16,{frames})'],
                        paper=_PAPER_16X2[model] if frames == 2 else {}))
  return sweep
