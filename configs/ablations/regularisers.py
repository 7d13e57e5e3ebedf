"""Cumulative regularisation of ViViT-B Model 2 on the small datasets: EPIC-Kitchens-100 (default) or SSv2.

The paper (its ablations) adds one regulariser at a time to a B factorised encoder initialised from
Kinetics-400 and reports EPIC action top-1: crop + flip + colour 38.4 (from ImageNet), + K400 init 39.6,
+ stochastic depth 40.2, + RandAugment 41.1, + label smoothing 43.1, + mixup 43.7; on SSv2 the whole stack takes
60.4 to 65.4. Every entry keeps the ones before it. The K400 initialisation is a checkpoint you supply:
`--config.init_from.checkpoint_path=...` (a ViViT-B/16x2 FE trained on Kinetics-400), applied to every entry, as
in the paper's rows after "+K400 init". Strengths are the paper's: EPIC stochastic depth 0.2, RandAugment
magnitude 15, label smoothing 0.2, mixup 0.1; SSv2 0.3, 20, 0.3, 0.3.

Validation reports per-head accuracy (valid/noun/accuracy, valid/verb/accuracy) and EPIC's action accuracy
(valid/action/accuracy), which the report plots.

Run:
  python scripts/run_ablation.py --config=configs/ablations/regularisers.py
  python scripts/run_ablation.py --config=configs/ablations/regularisers.py:ssv2
"""

from vivit_jax.config import defaults, import_config_file

epic = import_config_file('../epic_kitchens/vivit_large_factorised_encoder.py', __file__)
ssv2 = import_config_file('../something_something_v2/vivit_large_factorised_encoder.py', __file__)

METRIC = ('valid/action/accuracy', 'valid/accuracy')
# (stochastic depth, RandAugment magnitude, label smoothing, mixup alpha) as the shipped configs set them.
_STRENGTHS = {'epic': (0.2, 15, 0.2, 0.1), 'ssv2': (0.3, 20, 0.3, 0.3)}
_PAPER = {'epic': (39.6, 40.2, 41.1, 43.1, 43.7), 'ssv2': (60.4, None, None, None, 65.4)}


def _dataset(arg):
  if arg not in (None, 'ssv2'):
    raise ValueError(f"unknown preset {arg!r} for configs/ablations/regularisers.py; expected 'ssv2' or none")
  return arg or 'epic'


def get_config(arg=None):
  """The shipped EPIC (or SSv2) L-FE config with a ViViT-B backbone and no regulariser but crop, flip, colour."""
  config = (ssv2 if _dataset(arg) == 'ssv2' else epic).get_config()
  config.experiment_name = f'ablation_regularisers_{_dataset(arg)}'
  base = defaults.get_model_config()
  m = config.model
  m.hidden_size = base.hidden_size
  for name in ('spatial_transformer', 'temporal_transformer'):
    for field in ('num_heads', 'mlp_dim', 'num_layers'):
      m[name][field] = base[name][field]
  a = config.dataset_configs.augmentation_params
  a.do_color_augment = True  # The paper's first row: crop + flip + colour.
  a.do_rand_augment = False
  m.stochastic_droplayer_rate = 0.0
  config.label_smoothing = None
  config.mixup.alpha = 0.0
  return config


def get_sweep(arg=None):
  """None, then + stochastic depth, + RandAugment, + label smoothing, + mixup (cumulative)."""
  depth, magnitude, smoothing, alpha = _STRENGTHS[_dataset(arg)]
  steps = [('none', []),
           ('stochastic_depth', [f'model.stochastic_droplayer_rate={depth}']),
           ('rand_augment', ['dataset_configs.augmentation_params.do_rand_augment=True',
                             f'dataset_configs.augmentation_params.rand_augment_magnitude={magnitude}']),
           ('label_smoothing', [f'label_smoothing={smoothing}']),
           ('mixup', [f'mixup.alpha={alpha}'])]
  sweep, overrides = [], []
  for (name, added), top1 in zip(steps, _PAPER[_dataset(arg)]):
    overrides = overrides + added
    sweep.append(dict(name=name if name == 'none' else f'plus_{name}', overrides=list(overrides),
                      paper={} if top1 is None else dict(top1=top1)))
  return sweep
