"""Input encoding: uniform frame sampling against tubelets, and how the tubelet kernel is initialised.

The paper (its ablations) trains ViViT-B Model 1 on Kinetics-400 from an ImageNet-21K ViT: uniform frame
sampling reaches 78.5 top-1; a 16x16x2 tubelet reaches 73.2 when its embedding starts random, 77.6 with filter
inflation (the 2D filter averaged over the tubelet's frames) and 79.2 with central-frame initialisation (the 2D
filter on the middle frame, zeros elsewhere). Frame sampling takes 16 of the 32 frames, the same 16 x 196 tokens
as the tubelets. The initialisers only differ when a 2D checkpoint is loaded: pass
`--config.init_from.checkpoint_path=...` (an ImageNet-21K ViT-B/16), as the paper did.

Run:
  python scripts/run_ablation.py --config=configs/ablations/input_encoding.py
"""

from vivit_jax.config import import_config_file

vivit_base_k400 = import_config_file('../kinetics400/vivit_base_k400.py', __file__)

METRIC = 'valid/accuracy'
_INIT = 'model.temporal_encoding_config.kernel_init_method'


def get_config(arg=None):
  """ViViT-B/16x2 Model 1 on Kinetics-400 (configs/kinetics400/vivit_base_k400.py)."""
  return vivit_base_k400.get_config(arg)


def get_sweep(arg=None):
  """Frame sampling, then tubelets with random, filter-inflation (average) and central-frame init."""
  del arg
  return [
      dict(name='uniform_frame_sampling',
           overrides=['model.temporal_encoding_config.method=temporal_sampling',
                      'model.temporal_encoding_config.n_sampled_frames=16', f'{_INIT}=None'],
           paper=dict(top1=78.5)),
      dict(name='tubelet_random_init',
           overrides=[f'{_INIT}=None', 'init_from.restore_input_embedding=False'], paper=dict(top1=73.2)),
      dict(name='tubelet_filter_inflation', overrides=[f'{_INIT}=average_frame_initializer'],
           paper=dict(top1=77.6)),
      dict(name='tubelet_central_frame', overrides=[f'{_INIT}=central_frame_initializer'],
           paper=dict(top1=79.2, gflops=455.2)),
  ]
