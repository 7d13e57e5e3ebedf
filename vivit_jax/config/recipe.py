"""The paper's recipe, shared by the shipped configs (the paper's appendix and Scenic's configs).

Not an experiment itself: every function takes a config that started from `defaults.get_config()`, changes only
what differs from the defaults, and returns nothing. Values that equal a default are set only where they are the
point (the pretrained source's classifier, for example), so that each config file states its own contract.

Dataset sizes turn epochs into steps. Kinetics shrinks as videos disappear from YouTube, so the numbers below
are those of Scenic's configs; set `dataset_configs.examples_per_subset` to the size of your copy (the schedule,
in epochs, follows it: see `paper_schedule`).
"""

# Videos per split. Datasets whose test labels are not public test on the validation split.
KINETICS400_SIZES = {'train': 214834, 'validation': 17637, 'test': 34579}  # Scenic's K400 configs.
KINETICS600_SIZES = {'train': 363213, 'validation': 27676, 'test': 55377}  # Scenic's K600 ViViT config.
SSV2_SIZES = {'train': 168913, 'validation': 24777}  # Scenic's SSv2 configs.
EPIC_KITCHENS_SIZES = {'train': 67217, 'validation': 9668}  # Scenic's EPIC-Kitchens-100 configs.
MOMENTS_IN_TIME_SIZES = {'train': 802264, 'validation': 33900}  # Moments in Time v1 (Monfort et al., 2019).

WARMUP_EPOCHS = 2.5  # Linear warmup length of every paper run.


def dataset(config, *, num_classes, sizes, colour_augment, three_spatial_crops, min_resize=256,
            crop_size=224):
  """DMVR TFRecords with Scenic's table names; `sizes` maps split -> videos ('test' optional)."""
  d = config.dataset_configs
  test = 'test' if 'test' in sizes else 'validation'  # No public test labels: test on validation.
  d.tables.train = 'train.tfrecord@1024'  # Scenic's table names; point base_dir at them.
  d.tables.validation = 'validation.tfrecord@1024'
  d.tables.test = f'{test}.tfrecord@1024'
  d.examples_per_subset.train = sizes['train']
  d.examples_per_subset.validation = sizes['validation']
  d.examples_per_subset.test = sizes[test]
  d.num_classes = num_classes
  if min_resize != d.min_resize:
    d.min_resize = min_resize
  if crop_size != d.crop_size:
    d.crop_size = crop_size
  if colour_augment:
    d.augmentation_params.do_color_augment = True  # Colour jitter with probability 0.8.
  if not three_spatial_crops:
    d.do_three_spatial_crops = False  # 4x1 views: three spatial crops are for Kinetics only.


def _common_model(config, attention_type, classifier):
  m = config.model
  m.attention_config.type = attention_type
  if classifier != m.classifier:
    m.classifier = classifier
  m.dropout_rate = 0.0  # Scenic's ViViT files set both dropouts to 0 (the default is 0.1).
  m.attention_dropout_rate = 0.0
  m.temporal_encoding_config.kernel_init_method = 'central_frame_initializer'  # The paper's best (79.2).


def vivit_base(config, attention_type, classifier='token'):
  """ViViT-B/16x2: the defaults are ViT-Base (768 wide, 12 heads, MLP 3072, 12 layers; FE Lt = 4)."""
  _common_model(config, attention_type, classifier)


def vivit_large_fe(config):
  """ViViT-L/16x2 factorised encoder: a ViT-Large spatial encoder and a 4-layer temporal encoder."""
  _common_model(config, 'factorized_encoder', 'token')
  m = config.model
  m.hidden_size = 1024
  for encoder in (m.spatial_transformer, m.temporal_transformer):
    encoder.num_heads = 16
    encoder.mlp_dim = 4096
  m.spatial_transformer.num_layers = 24
  # m.temporal_transformer.num_layers stays 4 (the paper's Lt). NB Scenic's published K600 L-FE file sets 24.


def pretrained(config, *, source_classifier='token', positional_embed_size_change='tile'):
  """What the pretrained checkpoint is; `init_from.checkpoint_path` stays None for the user to set."""
  i = config.init_from
  i.model_config.model.classifier = source_classifier  # The source model's classifier.
  i.positional_embed_size_change = positional_embed_size_change


def paper_schedule(config, *, epochs, base_lr):
  """SGD momentum 0.9, batch 64, cosine decay after 2.5 warmup epochs, gradients clipped at norm 1.

  The schedule is given in epochs: the trainer resolves `lr_configs.warmup_epochs` into steps from the run it is in
  (batch size, training videos, length), so overriding any of them keeps the schedule's shape. The cosine spans the
  whole run (`steps_per_cycle=None`), as Scenic's `total_steps` did.
  """
  config.num_training_epochs = float(epochs)
  config.max_grad_norm = 1.0
  lr = config.lr_configs
  lr.base_learning_rate = base_lr
  lr.warmup_steps, lr.warmup_epochs = None, WARMUP_EPOCHS
  lr.steps_per_cycle = None


def regularise(config, *, rand_augment_magnitude, stochastic_depth, label_smoothing, mixup_alpha):
  """EPIC-Kitchens / SSv2 regularisation (the paper's ablation: each adds accuracy on the small datasets)."""
  a = config.dataset_configs.augmentation_params
  a.do_rand_augment = True  # 2 layers (the default) ...
  a.rand_augment_magnitude = rand_augment_magnitude  # ... at this magnitude.
  config.model.stochastic_droplayer_rate = stochastic_depth
  config.label_smoothing = label_smoothing
  config.mixup.alpha = mixup_alpha


def no_presets(arg, name):
  """The shipped files take no preset argument (`file.py:arg`)."""
  if arg is not None:
    raise ValueError(f"{name}: this config has no presets; got ':{arg}'")
