"""The model-variant table: ViViT-B/16x2 Models 1-4 and the average-pool baseline on Kinetics-400.

The paper (its model-architecture table) finds the unfactorised Model 1 the most accurate (80.0 top-1) and
the most expensive (455.2 GFLOPs); Model 2 (factorised encoder) is close (78.8) at 62% of the FLOPs and the
fastest; Models 3 and 4 trail (77.4, 76.3); averaging per-frame encodings without a temporal encoder (the
spatial-only baseline) loses 3 points against Model 2 (75.8). Every entry is the shipped Kinetics-400 config of
that model (configs/kinetics400/), written as overrides of Model 1.

Run:
  python scripts/run_ablation.py --config=configs/ablations/model_variants.py

Set `--config.init_from.checkpoint_path=...` (an ImageNet-21K ViT-B/16) to train as the paper did.
"""

from vivit_jax.config import import_config_file

vivit_base_k400 = import_config_file('../kinetics400/vivit_base_k400.py', __file__)

METRIC = 'valid/accuracy'
_FE = ['model.attention_config.type=factorized_encoder', 'lr_configs.base_learning_rate=0.05']


def get_config(arg=None):
  """ViViT-B/16x2 Model 1 on Kinetics-400 (configs/kinetics400/vivit_base_k400.py)."""
  return vivit_base_k400.get_config(arg)


def get_sweep(arg=None):
  """Models 1-4 and the average-pool baseline; paper numbers: K400 top-1, GFLOPs, params, TPU-v3 ms."""
  del arg
  return [
      dict(name='model1_spatiotemporal', overrides=[],
           paper=dict(top1=80.0, gflops=455.2, params=88_954_000, tpu_v3_ms=58.9)),
      dict(name='model2_factorised_encoder', overrides=list(_FE),
           paper=dict(top1=78.8, gflops=284.4, params=115_062_928, tpu_v3_ms=17.4)),
      dict(name='model3_factorised_self_attention',
           overrides=['model.attention_config.type=factorized_self_attention_block', 'model.classifier=gap'],
           paper=dict(top1=77.4, gflops=372.3, params=117_319_312, tpu_v3_ms=31.7)),
      dict(name='model4_factorised_dot_product',
           overrides=['model.attention_config.type=factorized_dot_product_attention', 'model.classifier=gap'],
           paper=dict(top1=76.3, gflops=277.1, params=88_952_464, tpu_v3_ms=22.9)),
      dict(name='average_pool_baseline', overrides=_FE + ['model.attention_config.spatial_only_baseline=True'],
           paper=dict(top1=75.8, gflops=283.9, params=86_696_080, tpu_v3_ms=17.3)),
  ]
