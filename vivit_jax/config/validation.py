"""Validation: a config merged onto the defaults, its keys, types and combinations checked.

Whatever a config file returns, our own files or Scenic's published ones, is merged onto
`vivit_jax.config.defaults` and validated:

- a key that the defaults do not declare is an error naming the closest valid key, except Scenic's known stray
  keys, which give a `ConfigWarning` and are dropped;
- a value of the wrong type is an error saying which type was expected;
- a number that cannot work (a zero batch size or interval, a negative learning rate, a warmup longer than the
  run: `numbers.py`) and impossible combinations (a token classifier with Models 3 and 4, patches that do not
  divide the crop, ...) are errors saying what was expected. All problems are reported together;
- a Scenic key that vivit_jax accepts but does not read (`defaults.IGNORED_SCENIC_KEYS`) gives a
  `ConfigWarning` when it is set to a value vivit_jax does not honour;
- a config for real videos that names no data beside `dataset_configs.base_dir` (configs/custom_folder.py) takes
  num_classes, the tables and examples_per_subset from the report.json vivit-prepare-data wrote there
  (`prepared.py`); a key it sets anyway must agree with the report.

The result is a locked ConfigDict holding every key.
"""

import difflib
import math
import re
import warnings
from typing import Any, Iterable, List, Optional, Union

import ml_collections

from vivit_jax import tasks
from vivit_jax.config import defaults as default_config
from vivit_jax.config import numbers
from vivit_jax.config import prepared

ConfigDict = ml_collections.ConfigDict


class ConfigError(ValueError):
  """A config that cannot be used: unknown key, wrong type or impossible combination."""


class ConfigWarning(UserWarning):
  """A config key that is ignored (Scenic's known stray keys)."""


# Keys that Scenic's published ViViT configs set but that nothing reads there either.
KNOWN_STRAY_KEYS = {
    'datset_configs': "a misspelling of 'dataset_configs' in Scenic's published configs; ignored",
    'dataset_configs.one_hot_labels': "Scenic's loader reads 'dataset_configs.one_hot_label'; ignored",
}
# Subtrees that hold another model's config: only the keys declared in default.py are checked.
OPEN_SUBTREES = ('init_from.model_config',)
# Leaves that accept a string or a list of strings.
STR_OR_LIST = ('dataset_configs.tables.',)
# Lists of regexes, where one string is taken as a list of one.
REGEX_LISTS = ('optimizer_configs.freeze',)

ATTENTION_TYPES = ('spacetime', 'factorized_encoder', 'factorized_self_attention_block',
                   'factorized_dot_product_attention')
CHOICES = {
    'dataset_name': ('video_tfrecord_dataset', 'tfds', 'synthetic'),
    'data_dtype_str': ('float32', 'bfloat16'),
    'model_name': tasks.MODEL_NAMES,
    'model_dtype_str': ('float32', 'bfloat16'),
    'model.classifier': ('token', '0', 'gap', 'gmp', 'gsp'),
    'model.attention_config.type': ATTENTION_TYPES,
    'model.attention_config.attention_order': ('time_space', 'space_time'),
    'model.attention_config.attention_kernel_init_method': ('xavier', 'zero'),
    'model.temporal_encoding_config.method': ('3d_conv', 'temporal_sampling'),
    'model.temporal_encoding_config.kernel_init_method': (
        None, 'central_frame_initializer', 'average_frame_initializer', 'average_arp_frame_initializer'),
    'model.attention_implementation': (None, 'xla', 'cudnn', 'chunked', 'einsum'),
    'model.attention_padding': ('auto', 'once', 'per_layer'),
    'model.remat_policy': (None, 'nothing_saveable', 'dots_saveable', 'dots_with_no_batch_dims_saveable',
                           'everything_saveable'),
    'optimizer': ('momentum', 'sgd', 'nesterov', 'adam', 'adamw'),
    'lr_configs.learning_rate_schedule': ('compound',),
    'init_from.checkpoint_format': ('scenic', 'big_vision', 'vit_npz', 'huggingface', 'vivit_jax', 'auto'),
    'init_from.positional_embed_size_change': ('tile', 'resize', 'resize_tile'),
    'dataset_configs.short_video_mode': ('wrap', 'pad'),
    'dataset_configs.synthetic_background': ('texture', 'plain'),
}
LR_FACTORS = ('constant', 'linear_warmup', 'cosine_decay', 'rsqrt_decay', 'linear_decay',
              'piecewise_constant')
RATES = ('model.dropout_rate', 'model.attention_dropout_rate', 'model.stochastic_droplayer_rate')
MESH_AXES = ('data', 'fsdp', 'model')


def validate_config(user: Union[ConfigDict, dict], source: str = '<config>') -> ConfigDict:
  """Merges `user` onto the defaults, checks keys, types and combinations; returns a locked ConfigDict."""
  defaults = default_config.get_config()
  problems: List[str] = []
  merged = _merge(defaults, user, '', problems)
  config = ConfigDict(merged)
  _fill_derived(config)
  unread = prepared.resolve(config)  # Data keys left unset, from the report.json of a prepared base_dir.
  problems.extend(unread or check_combinations(config))  # Unread: the other checks would only add noise.
  if problems:
    raise ConfigError(_format(source, problems))
  _warn_ignored(config, source)
  config.lock()
  return config


def check_schedule(config: ConfigDict, total_steps: int, source: str = '<config>',
                   num_train_examples: Optional[int] = None) -> None:
  """Raises ConfigError when the learning-rate schedule cannot work for a run of `total_steps` over
  `num_train_examples` training videos: for the trainer, which knows both only once the training split is counted
  (epochs without `examples_per_subset.train`), and resolves lengths in epochs with them."""
  how = f"{config.num_training_epochs} 'num_training_epochs' of the training videos counted in the data"
  problems = numbers.schedule_problems(config, total_steps, how if config.num_training_steps is None else '',
                                       num_train_examples)
  if problems:
    raise ConfigError(_format(source, problems))


def _warn_ignored(config: ConfigDict, source: str) -> None:
  """A `ConfigWarning` for each Scenic key set to a value that vivit_jax does not honour."""
  for path, (honoured, reason) in default_config.IGNORED_SCENIC_KEYS.items():
    value = get_path(config, path)
    if value != honoured:
      warnings.warn(f"config key '{path}' is {value!r}, which vivit_jax ignores ({reason}); it behaves as "
                    f'{honoured!r} ({source})', ConfigWarning, stacklevel=4)
  tec, frames = config.model.temporal_encoding_config, config.dataset_configs.num_frames
  if tec.method == 'temporal_sampling' and tec.n_sampled_frames > frames:  # Scenic's rule, kept for its configs.
    warnings.warn(f"config key 'model.temporal_encoding_config.n_sampled_frames' is {tec.n_sampled_frames}, more "
                  f"than the clip's 'dataset_configs.num_frames' {frames}: all {frames} frames are used ({source})",
                  ConfigWarning, stacklevel=4)


def _format(source: str, problems: List[str]) -> str:
  if len(problems) == 1:
    return f'{source}: {problems[0]}'
  return f'{source}: {len(problems)} problems:\n' + '\n'.join(f'  - {p}' for p in problems)


def _merge(defaults: ConfigDict, user: Any, prefix: str, problems: List[str]) -> dict:
  """Returns defaults updated with user values as a plain dict, recording problems."""
  out = {k: (v.to_dict() if isinstance(v, ConfigDict) else v) for k, v in defaults.items()}
  open_subtree = prefix.rstrip('.') in OPEN_SUBTREES
  for key, value in user.items():
    path = prefix + key
    if key not in defaults:
      if path in KNOWN_STRAY_KEYS:
        warnings.warn(f"config key '{path}': {KNOWN_STRAY_KEYS[path]}", ConfigWarning, stacklevel=4)
      elif open_subtree:
        out[key] = value.to_dict() if isinstance(value, ConfigDict) else value
      else:
        problems.append(f"unknown config key '{path}'{_suggest(key, path, defaults)}")
      continue
    default = defaults[key]
    if isinstance(default, ConfigDict):
      if value is None:  # e.g. Scenic's `init_from.model_config = None`: keep the defaults.
        continue
      if not isinstance(value, (ConfigDict, dict)):
        problems.append(f"'{path}' must be a ConfigDict of keys, got {type(value).__name__} {value!r}")
        continue
      out[key] = _merge(default, value, path + '.', problems)
    else:
      out[key] = _check_leaf(path, value, defaults.get_type(key), default, problems)
  return out


def _check_leaf(path: str, value: Any, expected: type, default: Any, problems: List[str]) -> Any:
  """Returns the value coerced to the declared type, or records a problem."""
  if value is None:
    if default is None:
      return None
    problems.append(f"'{path}' cannot be None; expected {expected.__name__} (default {default!r})")
    return default
  if path in REGEX_LISTS and isinstance(value, str):
    return (value,)
  if path.startswith(STR_OR_LIST):
    if isinstance(value, str) or (isinstance(value, (list, tuple)) and
                                  all(isinstance(v, str) for v in value)):
      return tuple(value) if isinstance(value, list) else value
    problems.append(f"'{path}' must be a table name 'name@N' or a list of file names, got {value!r}")
    return default
  if expected in (list, tuple):
    if isinstance(value, (list, tuple)):
      return tuple(value)
  elif expected is float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      if math.isfinite(value):
        return float(value)
      problems.append(f"'{path}' is {value!r}; expected a finite number")
      return default
  elif expected is int:
    if isinstance(value, int) and not isinstance(value, bool):
      return value
    if isinstance(value, float) and value.is_integer():
      return int(value)
  elif isinstance(value, expected):
    return value
  problems.append(f"'{path}' must be {_type_name(expected)}, got {type(value).__name__} {value!r}")
  return default


def _type_name(t: type) -> str:
  return {list: 'a list', tuple: 'a list', float: 'a number', int: 'an integer',
          bool: 'True or False', str: 'a string'}.get(t, t.__name__)


def _all_paths(config: ConfigDict, prefix: str = '') -> List[str]:
  paths = []
  for k, v in config.items():
    paths.append(prefix + k)
    if isinstance(v, ConfigDict):
      paths.extend(_all_paths(v, prefix + k + '.'))
  return paths


def _suggest(key: str, path: str, siblings: ConfigDict) -> str:
  """'; did you mean ...?' with the closest sibling key, or the closest key anywhere."""
  sibling = _did_you_mean(key, siblings.keys(), prefix=path[:len(path) - len(key)])
  if sibling:
    return sibling
  everywhere = _all_paths(default_config.get_config())
  same_leaf = sorted((p for p in everywhere if p.split('.')[-1] == key), key=lambda p: p.count('.'))
  if same_leaf:
    return f"; did you mean '{same_leaf[0]}'?"
  return _did_you_mean(path, everywhere) or f" (valid keys here: {', '.join(sorted(siblings.keys()))})"


def _did_you_mean(word: str, candidates: Iterable[Any], prefix: str = '') -> str:
  """"; did you mean 'X'?" for the closest candidate, or '' when none is close."""
  close = difflib.get_close_matches(str(word), [str(c) for c in candidates if c is not None], n=1,
                                    cutoff=0.6)
  return f"; did you mean '{prefix}{close[0]}'?" if close else ''


def get_path(config: ConfigDict, path: str) -> Any:
  node = config
  for part in path.split('.'):
    node = node[part]
  return node


def _fill_derived(config: ConfigDict) -> None:
  """Fills keys whose default depends on other keys."""
  d = config.dataset_configs
  if d.num_classes is None and d.class_splits and _all_ints(d.class_splits):
    d.num_classes = int(sum(d.class_splits))


def _all_ints(values: Iterable[Any]) -> bool:
  return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _choice_problems(config: ConfigDict) -> Iterable[str]:
  for path, choices in CHOICES.items():
    value = get_path(config, path)
    if value not in choices:
      yield f"'{path}' is {value!r}; expected one of {list(choices)}{_did_you_mean(value, choices)}"
  for factor in (f.strip() for f in config.lr_configs.factors.split('*')):
    if factor not in LR_FACTORS:
      yield (f"'lr_configs.factors' has unknown factor '{factor}'; expected factors from {list(LR_FACTORS)}"
             f'{_did_you_mean(factor, LR_FACTORS)}')
  for path in RATES:
    rate = get_path(config, path)
    if not 0.0 <= rate < 1.0:
      yield f"'{path}' is {rate}; expected a rate in [0, 1)"


def _encoder_problems(config: ConfigDict) -> Iterable[str]:
  m = config.model
  kind = m.attention_config.type
  encoders = {'model': m}
  if kind == 'factorized_encoder':
    encoders = {'model.spatial_transformer': m.spatial_transformer,
                'model.temporal_transformer': m.temporal_transformer}
  for path, enc in encoders.items():
    for field in ('num_heads', 'mlp_dim', 'num_layers'):
      if enc[field] < (0 if field == 'num_layers' else 1):
        yield f"'{path}.{field}' is {enc[field]}; expected a positive integer"
    if enc.num_heads >= 1 and m.hidden_size % enc.num_heads:
      yield (f"'model.hidden_size' ({m.hidden_size}) must be divisible by '{path}.num_heads' "
             f'({enc.num_heads})')
  if kind in ATTENTION_TYPES[2:] and m.classifier in ('token', '0'):
    yield (f"'model.classifier' is '{m.classifier}', but attention_config.type '{kind}' (Model "
           f"{ATTENTION_TYPES.index(kind) + 1}) has no class token; expected 'gap', 'gmp' or 'gsp'")
  if kind == 'factorized_dot_product_attention' and m.num_heads % 2:
    yield (f"'model.num_heads' is {m.num_heads}; factorized_dot_product_attention splits the heads "
           'between time and space, so it must be even')
  if m.attention_config.spatial_only_baseline and kind != 'factorized_encoder':
    yield "'model.attention_config.spatial_only_baseline' applies only to type 'factorized_encoder'"


def _shape_problems(config: ConfigDict) -> Iterable[str]:
  m, d = config.model, config.dataset_configs
  size = tuple(m.patches.size)
  tec = m.temporal_encoding_config
  want = 3 if tec.method == '3d_conv' else (2, 3)
  if len(size) not in (want if isinstance(want, tuple) else (want,)) or any(
      not isinstance(s, int) or s < 1 for s in size):
    yield (f"'model.patches.size' is {size}; expected (height, width, time) positive integers"
           + ('' if tec.method == '3d_conv' else ' or (height, width)'))
    return
  fh, fw = size[:2]
  if d.crop_size % fh or d.crop_size % fw:
    yield (f"'model.patches.size' {size} does not divide 'dataset_configs.crop_size' {d.crop_size}: "
           f'expected a crop that is a multiple of {fh}x{fw}')
  if tec.method == '3d_conv' and d.num_frames % size[2]:
    yield (f"'model.patches.size' time {size[2]} does not divide 'dataset_configs.num_frames' "
           f'{d.num_frames}: expected a multiple of {size[2]} frames')
  if tec.method == 'temporal_sampling' and (tec.n_sampled_frames is None or tec.n_sampled_frames < 1):
    yield "'model.temporal_encoding_config.n_sampled_frames' must be set for method 'temporal_sampling'"


def _label_problems(config: ConfigDict) -> Iterable[str]:
  d = config.dataset_configs
  if d.num_classes is None and not d.class_splits:
    yield "'dataset_configs.num_classes' is not set; expected the number of classes (the classifier head's size)"
  elif d.num_classes is not None and d.num_classes < 1:
    yield f"'dataset_configs.num_classes' is {d.num_classes}; expected a positive integer"
  yield from tasks.config_problems(config)
  if d.class_splits and _all_ints(d.class_splits):  # Other values: numbers.py.
    if d.num_classes is not None and sum(d.class_splits) != d.num_classes:
      yield (f"'dataset_configs.class_splits' {list(d.class_splits)} sums to {sum(d.class_splits)}, "
             f"but 'dataset_configs.num_classes' is {d.num_classes}")
    if d.split_names and len(d.split_names) != len(d.class_splits):
      yield (f"'dataset_configs.split_names' has {len(d.split_names)} names for "
             f'{len(d.class_splits)} class_splits')
  if config.num_training_epochs is not None and config.num_training_steps is not None:
    yield "set 'num_training_epochs' or 'num_training_steps', not both"


def _training_problems(config: ConfigDict) -> Iterable[str]:
  sizes = [config.mesh[a] for a in MESH_AXES]
  if any(s == 0 or s < -1 for s in sizes) or sizes.count(-1) > 1:
    yield (f"'mesh' is {dict(zip(MESH_AXES, sizes))}; expected positive sizes with at most one -1 "
           '(the devices the other axes leave)')
  k = config.gradient_accumulation_steps
  if k < 1 or config.batch_size % k:
    yield (f"'gradient_accumulation_steps' is {k}; expected a positive divisor of 'batch_size' "
           f'({config.batch_size})')
  if config.ema_decay is not None and not 0.0 <= config.ema_decay < 1.0:
    yield f"'ema_decay' is {config.ema_decay}; expected a decay in [0, 1)"
  if not 0.0 <= config.cutmix.switch_prob <= 1.0:
    yield f"'cutmix.switch_prob' is {config.cutmix.switch_prob}; expected a probability in [0, 1]"
  for path in ('mixup.alpha', 'cutmix.alpha'):
    if get_path(config, path) < 0:
      yield f"'{path}' is {get_path(config, path)}; expected alpha >= 0 (0 turns it off)"
  if config.eval_max_views_per_batch < 1:
    yield (f"'eval_max_views_per_batch' is {config.eval_max_views_per_batch}; expected the most clips one "
           'multi-view forward pass takes, at least 1')
  if config.max_checkpoints_to_keep < 1:
    yield f"'max_checkpoints_to_keep' is {config.max_checkpoints_to_keep}; expected at least 1"
  yield from _regex_problems(config)


def _regex_problems(config: ConfigDict) -> Iterable[str]:
  """Each regex list holds strings that compile (whether they match a parameter is checked on the model)."""
  for path in REGEX_LISTS:
    for pattern in get_path(config, path):
      if not isinstance(pattern, str):
        yield f"'{path}' holds {pattern!r}; expected regexes (strings) over '/'-joined parameter paths"
        continue
      try:
        re.compile(pattern)
      except re.error as e:
        yield f"'{path}' holds {pattern!r}, which is not a regex: {e}"


def check_combinations(config: ConfigDict) -> List[str]:
  """Problems with values that are each valid but do not go together."""
  checks = (_choice_problems, _encoder_problems, _shape_problems, _label_problems, _training_problems,
            numbers.number_problems)
  return [problem for check in checks for problem in check(config)]
