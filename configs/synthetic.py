"""The embedded default: a small factorised-encoder ViViT (Model 2) on synthetic motion videos.

Run (what `make demo` does, on CPU):
  python -m vivit_jax.main --config=configs/synthetic.py --workdir=runs/demo

Accuracy: 0.977 valid/accuracy (0.994 test/accuracy, 3 crops) after 1000 steps (0.93 at step 500, 0.97 at 750),
under a minute of training on 2 CPU cores; tests/experiments/test_demos.py runs it and fails below 0.95 or more
than 0.02 from the README's number. The class of each clip is the direction its objects move in
(vivit_jax/data/synthetic.py), 2 pixels a frame, so no single frame tells it: the temporal encoder has to compare
frames. Nothing is downloaded; the videos are generated on the fly.

Presets (`configs/synthetic.py:PRESET`):
  tiny     a few steps of a tiny model, for smoke tests.
"""

from vivit_jax.config import defaults


def get_config(arg=None):
  """Model 2 on 8-frame 32x32 synthetic clips of 8 motion directions; `arg` 'tiny' for smoke tests."""
  config = defaults.get_config()
  config.experiment_name = 'synthetic_factorised_encoder'
  config.dataset_name = 'synthetic'
  d = config.dataset_configs
  d.num_classes = 8
  d.num_frames = 8
  d.crop_size = 32
  d.examples_per_subset.train = 96000  # Generated on the fly: the run sees each training clip once.
  d.examples_per_subset.validation = 512
  d.examples_per_subset.test = 512
  d.augmentation_params.do_flip = False  # A flip turns a leftward class into a rightward one.
  d.synthetic_speed = 2.0  # Pixels per frame: 6 pixels of motion within each 4-frame tubelet.
  d.num_test_clips = 1  # A synthetic video is one clip long: the multi-view test is its 3 spatial crops.

  m = config.model
  m.attention_config.type = 'factorized_encoder'
  m.hidden_size = 64
  m.patches.size = (8, 8, 4)  # 4-frame tubelets: each token sees 3 pixels of motion.
  for encoder, layers in ((m.spatial_transformer, 2), (m.temporal_transformer, 2)):
    encoder.num_heads = 4
    encoder.mlp_dim = 128
    encoder.num_layers = layers
  m.dropout_rate = 0.0
  m.attention_dropout_rate = 0.0

  config.optimizer = 'adamw'
  config.optimizer_configs.weight_decay = 1e-4
  config.max_grad_norm = 1.0
  config.batch_size = 64
  config.num_training_steps = 1000
  config.lr_configs.base_learning_rate = 1e-3
  config.lr_configs.warmup_steps = 100.0
  config.log_summary_steps = 100
  config.log_eval_steps = 250
  config.checkpoint_steps = 500

  if arg == 'tiny':
    d.examples_per_subset.train = 64
    d.examples_per_subset.validation = 24
    d.examples_per_subset.test = 24
    config.batch_size = 16
    config.eval_batch_size = 16
    m.hidden_size = 16
    for encoder in (m.spatial_transformer, m.temporal_transformer):
      encoder.num_heads, encoder.mlp_dim, encoder.num_layers = 2, 32, 1
    config.num_training_steps = 4
    config.lr_configs.warmup_steps = 1.0
    config.log_summary_steps = 2
    config.log_eval_steps = 2
    config.checkpoint_steps = 2
  elif arg is not None:
    raise ValueError(f"unknown preset {arg!r} for configs/synthetic.py; expected 'tiny'")
  return config
