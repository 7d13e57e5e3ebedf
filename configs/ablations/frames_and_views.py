"""Input frames and test views: ViViT-L/16x2 Model 2 on Kinetics-400 with 32, 64 and 128 frames.

The paper (its ablations; reported as a plot) finds that more test views help until together they cover
the whole video (Kinetics clips: 250 frames at 25 fps); a 32-frame clip at stride 2 spans 64 frames, so about 4
views cover a video, and a 128-frame clip needs one. More input frames raise accuracy at proportional cost: 995.3
GFLOPs per view at 32 frames, 3980.4 at 128.

Each entry trains at its frame count. Views are a test-time choice, not a training one, so they are not sweep
entries: evaluate each finished run at 1, 2, 3 or 4 temporal views (x 3 crops) with
  python scripts/evaluate.py --config=configs/ablations/frames_and_views.py --checkpoint=RUN_DIR --views=Vx3
adding the entry's `--config.KEY=VALUE` overrides (`--print_commands` lists them).

Run:
  python scripts/run_ablation.py --config=configs/ablations/frames_and_views.py
"""

from vivit_jax.config import import_config_file

vivit_large_factorised_encoder = import_config_file('../kinetics400/vivit_large_factorised_encoder.py', __file__)

METRIC = 'valid/accuracy'
_GFLOPS = {32: 995.3, 128: 3980.4}


def get_config(arg=None):
  """ViViT-L/16x2 Model 2 on Kinetics-400 (configs/kinetics400/vivit_large_factorised_encoder.py)."""
  return vivit_large_factorised_encoder.get_config(arg)


def get_sweep(arg=None):
  """32, 64 and 128 frames at stride 2, each tested with 4 temporal views (the paper's view plot)."""
  del arg
  return [dict(name=f'frames{frames}', overrides=[f'dataset_configs.num_frames={frames}'],
               paper=dict(gflops=_GFLOPS[frames]) if frames in _GFLOPS else {})
          for frames in (32, 64, 128)]
