"""Every vivit_jax config key, with its default and a one-line comment.

The schema is Scenic's ViViT schema plus vivit_jax's own keys. Config files start from `get_config()` and change
only what differs. A config file that builds its ConfigDict from scratch (as Scenic's published files do) is merged
onto these defaults when it is loaded (`vivit_jax.config.load_config`), and any key that is not declared here is
reported with the closest valid key.

Where Scenic's code reads a key with `config.get(key, default)`, the default here is Scenic's, so a Scenic
config file that omits the key builds the same model (for example `model.dropout_rate` is 0.1). A few Scenic keys
are accepted but not read (`IGNORED_SCENIC_KEYS`): setting one to another value than the one vivit_jax behaves as
gives a warning.

This file alone is not an experiment: it names no dataset size or class count.
"""

import ml_collections
from ml_collections import config_dict


# Scenic keys that vivit_jax accepts and does not read: path -> (the value vivit_jax behaves as, why).
IGNORED_SCENIC_KEYS = {
    'trainer_name': ('vivit_trainer', 'vivit_jax has one trainer'),
    'dataset_configs.one_hot_label': (True, 'labels are always one-hot or multi-hot vectors'),
    'multicrop_clips_per_device': (2, "the multi-view test reads 'eval_max_views_per_batch', the clips of one "
                                      'forward pass over all devices'),
    'debug_train': (False, 'vivit_jax has no debug mode'),
    'debug_eval': (False, 'vivit_jax has no debug mode'),
}


def _placeholder(kind):
  """A key whose default is None (unset) and whose values must have type `kind`."""
  return config_dict.placeholder(kind)


def get_dataset_configs():
  """`config.dataset_configs`: where the data is and how clips are sampled."""
  d = ml_collections.ConfigDict()
  d.base_dir = ''  # Directory holding the tables (DMVR TFRecords) or the prepared TFDS data.
  d.tables = ml_collections.ConfigDict()  # Table per split: 'name@N' (N shards) or a list of file names.
  d.tables.train = ''  # Training table.
  d.tables.validation = ''  # Validation table.
  d.tables.test = ''  # Test table (multi-view evaluation).
  d.examples_per_subset = ml_collections.ConfigDict()  # Number of videos per split (epochs -> steps).
  d.examples_per_subset.train = _placeholder(int)  # Training videos.
  d.examples_per_subset.validation = _placeholder(int)  # Validation videos.
  d.examples_per_subset.test = _placeholder(int)  # Test videos.
  d.num_classes = _placeholder(int)  # Number of classes; for multi-head models the sum of class_splits.
  d.class_splits = _placeholder(list)  # Multi-head models: classes per head, e.g. [300, 97] for EPIC.
  d.split_names = _placeholder(list)  # Multi-head models: a name per head, e.g. ['noun', 'verb'].
  d.label_offset = 0  # Subtracted from every stored label index (1-based label files use 1).
  d.one_hot_label = True  # Scenic's key, not read: labels are always one-hot (multi-hot) vectors.
  d.num_frames = 32  # Frames per clip.
  d.stride = 2  # Temporal stride between sampled frames.
  d.min_resize = 256  # Frames are resized so their shorter side is this many pixels.
  d.crop_size = 224  # Square crop fed to the model (height = width).
  d.zero_centering = True  # Scale pixel values to [-1, 1] (Scenic); False: [0, 1].
  d.mean_rgb = _placeholder(list)  # Per-channel mean (0-255 scale) for mean/std normalisation; None: off.
  d.std_rgb = _placeholder(list)  # Per-channel std (0-255 scale), with mean_rgb (e.g. ImageNet's).
  d.short_video_mode = 'wrap'  # Videos shorter than a clip: 'wrap' around (Scenic) or 'pad' with the last frame.
  d.synthetic_speed = 1.0  # dataset_name 'synthetic': pixels per frame of the slowest motion classes.
  d.synthetic_objects = 3  # dataset_name 'synthetic': moving squares per video.
  d.synthetic_object_size = 4  # dataset_name 'synthetic': side of each square in pixels.
  d.synthetic_background = 'texture'  # dataset_name 'synthetic': 'texture' (coarse noise) or 'plain' colour.
  d.synthetic_wrap = True  # dataset_name 'synthetic': squares wrap around the edges; False: stay inside.
  d.tfds_name = _placeholder(str)  # dataset_name 'tfds': the builder, e.g. 'kinetics400' (data in base_dir).
  d.do_multicrop_test = True  # Run the multi-view test on the 'test' split during training (skipped without one).
  d.log_test_epochs = 5  # Run the multi-view test every this many epochs, and at the end.
  d.num_test_clips = 4  # Temporal views per video in the multi-view test.
  d.test_batch_size = 8  # Videos per batch in the multi-view test.
  d.do_three_spatial_crops = True  # Three spatial crops per temporal view in the test (else one).
  d.prefetch_to_device = 2  # Batches prefetched onto the devices.
  d.augmentation_params = get_augmentation_params()  # Training-time augmentation.
  return d


def get_augmentation_params():
  """`config.dataset_configs.augmentation_params`: augmentation, consistent across a clip's frames."""
  a = ml_collections.ConfigDict()
  a.do_jitter_scale = True  # Random scale jitter before the random crop.
  a.scale_min_factor = 0.9  # Smallest scale-jitter factor.
  a.scale_max_factor = 1.33  # Largest scale-jitter factor.
  a.prob_scale_jitter = 1.0  # Probability of applying scale jitter.
  a.do_flip = True  # Random horizontal flip (turn off for left/right classes, e.g. SSv2).
  a.do_color_augment = False  # Random brightness, contrast, saturation and hue.
  a.prob_color_augment = 0.8  # Probability of the colour augmentation.
  a.prob_color_drop = 0.1  # Probability of converting the clip to grey.
  a.do_rand_augment = False  # RandAugment (the same ops and magnitude for every frame).
  a.rand_augment_num_layers = 2  # RandAugment ops per clip.
  a.rand_augment_magnitude = 15  # RandAugment magnitude (0-30).
  a.do_random_erasing = False  # Random erasing of a rectangle (the same for every frame).
  a.prob_random_erasing = 0.25  # Probability of random erasing.
  return a


def get_model_config():
  """`config.model`: the ViViT architecture."""
  m = ml_collections.ConfigDict()
  m.hidden_size = 768  # Token width d.
  m.patches = ml_collections.ConfigDict()
  m.patches.size = (16, 16, 2)  # Tubelet (height, width, time), Scenic's order; (h, w) for temporal_sampling.
  m.num_heads = 12  # Attention heads (Models 1, 3, 4).
  m.mlp_dim = 3072  # MLP hidden width (Models 1, 3, 4).
  m.num_layers = 12  # Encoder blocks (Models 1, 3, 4).
  m.spatial_transformer = ml_collections.ConfigDict()  # Model 2: the per-frame spatial encoder.
  m.spatial_transformer.num_heads = 12  # Spatial encoder heads.
  m.spatial_transformer.mlp_dim = 3072  # Spatial encoder MLP width.
  m.spatial_transformer.num_layers = 12  # Spatial encoder blocks.
  m.temporal_transformer = ml_collections.ConfigDict()  # Model 2: the temporal encoder over frames.
  m.temporal_transformer.num_heads = 12  # Temporal encoder heads.
  m.temporal_transformer.mlp_dim = 3072  # Temporal encoder MLP width.
  m.temporal_transformer.num_layers = 4  # Temporal encoder blocks (the paper's Lt).
  m.representation_size = _placeholder(int)  # Width of the tanh pre-logits layer; None: no pre-logits.
  m.classifier = 'token'  # Pooling: 'token' (class token), '0' (first token), 'gap', 'gmp', 'gsp'.
  m.dropout_rate = 0.1  # Dropout after the posemb, attention and MLP (Scenic's default when absent).
  m.attention_dropout_rate = 0.1  # Dropout on attention weights (Scenic's default when absent).
  m.stochastic_droplayer_rate = 0.0  # Stochastic depth at the last block; grows linearly from 0.
  m.return_prelogits = False  # Return the pooled representation instead of logits.
  m.return_preclassifier = False  # Return the encoder's tokens instead of logits (Models 1, 3, 4).
  m.temporal_encoding_config = ml_collections.ConfigDict()  # How the video becomes tokens.
  m.temporal_encoding_config.method = '3d_conv'  # '3d_conv' (tubelets) or 'temporal_sampling' (frames).
  m.temporal_encoding_config.kernel_init_method = _placeholder(str)  # Tubelet init: see models/embedding.py.
  m.temporal_encoding_config.n_sampled_frames = _placeholder(int)  # temporal_sampling: frames sampled.
  m.attention_config = ml_collections.ConfigDict()  # Which factorisation of space and time.
  m.attention_config.type = 'spacetime'  # spacetime | factorized_encoder | factorized_self_attention_block
  #                                        | factorized_dot_product_attention (Models 1, 2, 3, 4).
  m.attention_config.attention_order = 'time_space'  # Model 3: 'time_space' or 'space_time'.
  m.attention_config.attention_kernel_init_method = 'xavier'  # Model 3 attention kernels: xavier | zero.
  m.attention_config.spatial_only_baseline = False  # Model 2 without the temporal encoder (average pool).
  m.remat = False  # Rematerialise each encoder block in the backward pass (less memory, more compute).
  m.remat_policy = _placeholder(str)  # With remat: what each block keeps (a jax.checkpoint_policies name).
  m.fused_qkv = _placeholder(bool)  # One matmul for query, key and value (True) or three (False), same parameters
  #                                   and function; None: one on the CPU, three on GPUs and TPUs.
  m.attention_implementation = _placeholder(str)  # None: picked per backend; 'xla', 'cudnn', 'chunked' or 'einsum'.
  m.attention_padding = 'auto'  # cuDNN's padding of tokens: 'auto', 'once' (per encoder) or 'per_layer'.
  m.last_block_class_token_only = True  # With classifier 'token' or '0', each encoder's last block computes only
  #                                       the class token, the one the head reads: same logits, fewer FLOPs.
  return m


def get_init_from_config():
  """`config.init_from`: initialisation from a pretrained checkpoint."""
  i = ml_collections.ConfigDict()
  i.checkpoint_path = _placeholder(str)  # Pretrained checkpoint; None: train from scratch.
  i.checkpoint_format = 'scenic'  # scenic | big_vision | vit_npz | huggingface | vivit_jax | auto.
  i.model_config = ml_collections.ConfigDict()  # The source model's config (any Scenic model config).
  i.model_config.model = ml_collections.ConfigDict()
  i.model_config.model.classifier = 'token'  # The source model's classifier: 'token' or 'gap'.
  i.model_config.model.representation_size = _placeholder(int)  # The source model's pre-logits width.
  i.restore_positional_embedding = True  # Load (and adapt) the positional embedding.
  i.restore_input_embedding = True  # Load (and inflate) the patch embedding.
  i.positional_embed_size_change = 'tile'  # tile | resize | resize_tile.
  i.init_spatial_transformer = True  # Load the spatial encoder / spatial attention.
  i.init_temporal_transformer = True  # Load the temporal encoder / temporal attention where the source has one.
  i.restore_output_projection = False  # Load the classifier head too (same classes only).
  return i


def get_lr_configs():
  """`config.lr_configs`: the learning-rate schedule (Scenic's compound schedule)."""
  lr = ml_collections.ConfigDict()
  lr.learning_rate_schedule = 'compound'  # Product of the factors below.
  lr.factors = 'constant * cosine_decay * linear_warmup'  # '*'-separated factor names.
  lr.base_learning_rate = 0.1  # The 'constant' factor.
  lr.warmup_steps = _placeholder(float)  # Steps of linear warmup (may be fractional); None: none (or warmup_epochs).
  lr.warmup_epochs = _placeholder(float)  # Warmup in epochs of (train // batch_size) steps, resolved by the trainer.
  lr.steps_per_cycle = _placeholder(int)  # Cosine / linear decay cycle, counting the warmup; None: the whole run.
  lr.steps_per_cycle_epochs = _placeholder(float)  # The cycle in epochs (instead of steps_per_cycle).
  lr.end_learning_rate = 0.0  # linear_decay: the final learning rate.
  lr.timescale = 10_000  # rsqrt_decay: factor sqrt(timescale / (steps after warmup + timescale)).
  lr.decay_events = _placeholder(list)  # piecewise_constant: steps at which the rate changes.
  lr.decay_events_epochs = _placeholder(list)  # piecewise_constant: the same events in epochs (or decay_events).
  lr.decay_factors = _placeholder(list)  # piecewise_constant: the factor after each event.
  return lr


def get_optimizer_configs():
  """`config.optimizer_configs`: optimizer hyper-parameters."""
  o = ml_collections.ConfigDict()
  o.momentum = 0.9  # momentum / nesterov: the momentum coefficient.
  o.beta1 = 0.9  # adam / adamw: first-moment decay.
  o.beta2 = 0.999  # adam / adamw: second-moment decay.
  o.epsilon = 1e-8  # adam / adamw: denominator epsilon.
  o.weight_decay = 0.0  # Decoupled weight decay, scaled by the learning rate (adamw; any optimizer).
  o.decay_biases_and_norms = False  # Also decay biases and LayerNorm parameters (1-D leaves).
  o.layerwise_decay = _placeholder(float)  # Rate x decay^(L+1-depth): 0 embeddings, 1..L blocks, L+1 head; None: off.
  o.freeze = ()  # Regexes (re.fullmatch) over '/'-joined parameter paths: matching params are not trained.
  return o


def get_config():
  """Returns the defaults of every key."""
  config = ml_collections.ConfigDict()
  config.experiment_name = 'vivit'  # Name used in logs and results.

  # Data.
  config.dataset_name = 'video_tfrecord_dataset'  # video_tfrecord_dataset | tfds | synthetic.
  config.data_dtype_str = 'float32'  # dtype of the input batches the pipeline hands the model (bfloat16 halves them).
  config.dataset_configs = get_dataset_configs()

  # Model.
  config.model_name = 'vivit_classification'  # vivit_classification | vivit_multilabel_classification
  #                                             | vivit_multihead_classification.
  config.model = get_model_config()
  config.model_dtype_str = 'float32'  # Computation dtype: float32 | bfloat16 (params stay float32).

  # Optimisation.
  config.trainer_name = 'vivit_trainer'  # Scenic's key, not read: vivit_jax has one trainer.
  config.optimizer = 'momentum'  # momentum | sgd | nesterov | adam | adamw.
  config.optimizer_configs = get_optimizer_configs()
  config.l2_decay_factor = _placeholder(float)  # L2 penalty added to the loss; None: none.
  config.max_grad_norm = _placeholder(float)  # Clip the averaged gradient to this global norm; None: none.
  config.label_smoothing = _placeholder(float)  # Label smoothing; None: none.
  config.mixup = ml_collections.ConfigDict()
  config.mixup.alpha = 0.0  # Mixup Beta(alpha, alpha); 0: no mixup.
  config.cutmix = ml_collections.ConfigDict()
  config.cutmix.alpha = 0.0  # CutMix box area ~ Beta(alpha, alpha), the same box in every frame; 0: off.
  config.cutmix.switch_prob = 0.5  # With mixup and cutmix both on: probability of cutmix for a batch.
  config.gradient_accumulation_steps = 1  # Split each batch into this many micro-batches (same update).
  config.ema_decay = _placeholder(float)  # EMA of the params, evaluated beside them; None: no EMA.
  config.num_training_epochs = _placeholder(float)  # Training length in epochs (or set num_training_steps).
  config.num_training_steps = _placeholder(int)  # Training length in steps (or set num_training_epochs).
  config.batch_size = 64  # Global training batch size.
  config.eval_batch_size = _placeholder(int)  # Global evaluation batch size; None: batch_size.
  # Multi-view test memory bound: the most clips (videos x views) one forward pass takes over the whole mesh;
  # views are chunked evenly within it (a pass holds at least the batch, one view each; none repeated).
  config.eval_max_views_per_batch = 64  # Clips per multi-view forward pass, all devices together.
  config.rng_seed = 0  # Seed of every random choice.
  config.lr_configs = get_lr_configs()
  config.init_from = get_init_from_config()

  # Devices.
  config.mesh = ml_collections.ConfigDict()  # Device mesh; -1 takes the devices the other axes leave.
  config.mesh.data = -1  # Data parallelism (batch split, params replicated).
  config.mesh.fsdp = 1  # Fully sharded data parallelism (batch split, params and optimizer state sharded).
  config.mesh.model = 1  # Tensor parallelism (attention heads and MLP hidden units split).

  # Logging and checkpoints.
  config.write_summary = True  # Write TensorBoard summaries.
  config.checkpoint = True  # Write checkpoints.
  config.checkpoint_steps = 1000  # Steps between checkpoints (also saved at the end and on SIGTERM).
  config.max_checkpoints_to_keep = 3  # Older checkpoints are deleted.
  config.log_summary_steps = 100  # Steps between training summaries.
  config.log_eval_steps = _placeholder(int)  # Steps between validation passes; None: once an epoch.
  config.count_flops = True  # Log the model's GFLOPs per clip and its parameter count at the start of training.
  config.multicrop_clips_per_device = 2  # Scenic's key, not read: the test reads eval_max_views_per_batch.
  config.debug_train = False  # Scenic's key, not read: vivit_jax has no debug mode.
  config.debug_eval = False  # Scenic's key, not read: vivit_jax has no debug mode.
  return config
