"""Your own videos in two commands: a folder of `{split}/{class}/*` videos, prepared, then trained on.

Run from the repository's root (after `make demo` the vivit-* commands are in .venv/bin; `vivit-train` is
`python -m vivit_jax.main`):
  vivit-prepare-data --layout=folder --input=my_videos --output=data/my_videos
  python -m vivit_jax.main --config=configs/custom_folder.py --workdir=runs/my_videos \\
      --config.dataset_configs.base_dir=data/my_videos
  vivit-evaluate --checkpoint=runs/my_videos --output=runs/my_videos/eval/validation.json
  vivit-predict --checkpoint=runs/my_videos --output=runs/my_videos/predictions.jsonl my_videos/validation
From a pretrained image ViT-B/16 or ViViT-B (a GPU job; `:linear_probe` likewise):
  python -m vivit_jax.main --config=configs/custom_folder.py:finetune --workdir=runs/my_videos_finetune \\
      --config.dataset_configs.base_dir=data/my_videos --config.init_from.checkpoint_path=PATH

`my_videos` holds `train/{class}/*` and `validation/{class}/*` (`val/` and `test/` too; or `{split}.csv` files of
`path,label`). vivit-prepare-data writes DMVR records (or, with `--format=tfds`, a TFDS dataset) with `report.json`
and `label_map.json`; validation reads `num_classes`, the tables and `examples_per_subset` from them
(vivit_jax/config/prepared.py), so `base_dir` is the only key to give, and the run logs what it read (so does
`--dry_run`). A key set anyway must agree with the report. The class names in label_map.json are saved with every
checkpoint; evaluate, predict, export and convert print them. The schedule is in epochs: any number of videos works.

Presets (`configs/custom_folder.py:PRESET`):
  scratch       (default) a small ViViT (Model 1: 4 blocks 128 wide, 1.0M parameters, 8 frames of 96x96) trained
                from scratch with AdamW, for a few hundred clips on a CPU (minutes) or a GPU. From scratch it learns
                what a few hundred clips can teach; for accuracy, start from a pretrained model.
  finetune      ViViT-B/16x2 (Model 1, 16 frames of 224x224) from `init_from.checkpoint_path`, VideoMAE's way:
                AdamW, layer-wise learning-rate decay 0.75, stochastic depth 0.1, label smoothing 0.1. The
                checkpoint: an image ViT-B/16 (Scenic or big_vision .npz, a Hugging Face directory such as
                google/vit-base-patch16-224-in21k) or a ViViT-B Model 1 (vivit_jax, Scenic, Hugging Face), in any
                format load_params reads; the head starts afresh.
  linear_probe  the same backbone and checkpoint, all frozen but the classifier head (`optimizer_configs.freeze`):
                no update and no Adam moments for the backbone (--dry_run shows the counts and the memory).

Accuracy: whatever your videos allow; tests/test_custom_folder.py runs the commands above on videos it writes and
checks that every tool names the classes.
"""

from vivit_jax.config import defaults

PRESETS = ('scratch', 'finetune', 'linear_probe')
HEAD_ONLY = '(?!output_projection/).*'  # Every parameter path but the classifier head's (re.fullmatch).


def _data(config):
  """A prepared folder: everything but base_dir comes from its report.json (tables, classes, sizes)."""
  config.experiment_name = 'custom_folder'
  d = config.dataset_configs
  d.base_dir = ''  # Set it: --config.dataset_configs.base_dir=DIR, the --output of vivit-prepare-data.
  d.num_test_clips = 2  # Short clips: 2 temporal views x 3 crops in the multi-view test.


def _schedule(config, *, optimizer_lr, epochs, warmup_epochs, weight_decay, batch_size):
  """AdamW, a cosine over the whole run after a linear warmup, both in epochs: any data size keeps its shape."""
  config.optimizer = 'adamw'
  config.optimizer_configs.weight_decay = weight_decay
  config.max_grad_norm = 1.0
  config.batch_size = batch_size
  config.num_training_epochs = float(epochs)
  lr = config.lr_configs
  lr.base_learning_rate = optimizer_lr
  lr.warmup_epochs = float(warmup_epochs)
  lr.steps_per_cycle = None  # The cosine spans the run.


def _scratch(config):
  """Model 1 at ViT-Tiny's head width, 4 blocks: what a few hundred clips can train from scratch."""
  d, m = config.dataset_configs, config.model
  d.num_frames, d.stride = 8, 4  # 3.2 s at prepare_data's 10 fps.
  d.min_resize, d.crop_size = 112, 96
  m.attention_config.type = 'spacetime'  # Model 1: also what the Hugging Face conversion takes.
  m.hidden_size, m.num_heads, m.mlp_dim, m.num_layers = 128, 4, 512, 4
  m.patches.size = (16, 16, 2)  # 4 x 6 x 6 tubelets.
  m.dropout_rate = m.attention_dropout_rate = 0.0
  m.stochastic_droplayer_rate = 0.1
  config.label_smoothing = 0.1
  _schedule(config, optimizer_lr=1e-3, epochs=30, warmup_epochs=3, weight_decay=0.05, batch_size=16)


def _pretrained_backbone(config):
  """ViViT-B/16x2 Model 1 on 16 frames of 224x224, initialised from `init_from.checkpoint_path` (set it)."""
  d, m = config.dataset_configs, config.model
  d.num_frames, d.stride = 16, 2  # 3.2 s at 10 fps.
  m.attention_config.type = 'spacetime'  # ViT-Base (the defaults: 768 wide, 12 heads, MLP 3072, 12 blocks).
  m.dropout_rate = m.attention_dropout_rate = 0.0
  m.temporal_encoding_config.kernel_init_method = 'central_frame_initializer'  # The paper's best inflation.
  config.model_dtype_str = 'bfloat16'  # bfloat16 compute (float32 params): on a GPU, cuDNN's fused attention.
  i = config.init_from
  i.checkpoint_format = 'auto'  # Scenic, big_vision or ViT .npz, Hugging Face, vivit_jax: detected.
  i.model_config.model.classifier = 'token'  # ViT and ViViT-B sources pool with a class token.
  # i.checkpoint_path stays None: --config.init_from.checkpoint_path=PATH.


def _finetune(config):
  """VideoMAE's fine-tuning recipe (AdamW, layer-wise decay 0.75, drop path 0.1, smoothing 0.1), batch 16."""
  _pretrained_backbone(config)
  config.model.stochastic_droplayer_rate = 0.1
  config.label_smoothing = 0.1
  config.optimizer_configs.layerwise_decay = 0.75  # The head at the base rate, block i at 0.75^(13-i) of it.
  _schedule(config, optimizer_lr=2e-4, epochs=30, warmup_epochs=5, weight_decay=0.05, batch_size=16)


def _linear_probe(config):
  """A classifier on frozen pretrained features: only output_projection trains (no weight decay)."""
  _pretrained_backbone(config)
  config.optimizer_configs.freeze = (HEAD_ONLY,)
  _schedule(config, optimizer_lr=1e-3, epochs=30, warmup_epochs=2, weight_decay=0.0, batch_size=16)


def get_config(arg=None):
  """`arg`: 'scratch' (the default), 'finetune' or 'linear_probe' (see the module docstring)."""
  preset = arg or 'scratch'
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {arg!r} for configs/custom_folder.py; expected one of {list(PRESETS)}")
  config = defaults.get_config()
  _data(config)
  {'scratch': _scratch, 'finetune': _finetune, 'linear_probe': _linear_probe}[preset](config)
  return config
