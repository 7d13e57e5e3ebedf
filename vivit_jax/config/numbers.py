"""Numbers that cannot work: every count, size, interval, rate and learning-rate setting checked against its range.

`number_problems(config)` runs on a config already merged onto the defaults (`validation.py`), so that
`--dry_run` rejects a zero batch size or a warmup longer than the run before anything is built. Each problem
names the key, the value found and what is expected. A key whose default is None keeps None as "unset"; the mesh's
-1 ("the devices the other axes leave") is checked in `validation.py`.

`schedule_problems(config, total_steps, num_train_examples=...)` is the learning-rate part, for a caller that knows
the run's length and the training split's size (the trainer, when the split is counted from its files).
`lr_in_steps(lr_configs, steps_per_epoch)` turns the schedule lengths given in epochs (`warmup_epochs`,
`steps_per_cycle_epochs`, `decay_events_epochs`) into steps; each is exclusive with its steps form.
"""

import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import ml_collections

ConfigDict = ml_collections.ConfigDict
Rule = Tuple[Callable[[Any], bool], str]

_POSITIVE: Rule = (lambda v: v > 0, 'a positive number')
_NON_NEGATIVE: Rule = (lambda v: v >= 0, 'a number >= 0')
_PROBABILITY: Rule = (lambda v: 0.0 <= v <= 1.0, 'a probability in [0, 1]')
_DECAY: Rule = (lambda v: 0.0 <= v < 1.0, 'a coefficient in [0, 1)')


def _positive(what: str) -> Rule:
  return (lambda v: v >= 1, f'a positive number of {what}')


# Key -> (test, what is expected). None passes where the default is None (unset).
RANGES = {
    'batch_size': _positive('clips per global batch'),
    'eval_batch_size': _positive('clips per global batch, or None (batch_size)'),
    'num_training_steps': _positive('steps, or None (num_training_epochs)'),
    'num_training_epochs': (lambda v: v > 0, 'a positive number of epochs, or None (num_training_steps)'),
    'checkpoint_steps': _positive('steps between checkpoints (checkpoint=False turns them off)'),
    'log_summary_steps': _positive('steps between training summaries'),
    'log_eval_steps': _positive('steps between validation passes, or None (once an epoch)'),
    'rng_seed': (lambda v: 0 <= v < 2**31, 'an integer in [0, 2**31)'),
    'l2_decay_factor': (_NON_NEGATIVE[0], 'a factor >= 0, or None (no L2 penalty)'),
    'max_grad_norm': (_POSITIVE[0], 'a positive norm, or None (no clipping)'),
    'label_smoothing': (_DECAY[0], 'a smoothing in [0, 1), or None (none)'),
    'dataset_configs.examples_per_subset.train': _positive('videos, or None (counted from the files)'),
    'dataset_configs.examples_per_subset.validation': _positive('videos, or None (counted from the files)'),
    'dataset_configs.examples_per_subset.test': _positive('videos, or None (counted from the files)'),
    'dataset_configs.num_frames': _positive('frames per clip'),
    'dataset_configs.stride': _positive('frames between sampled frames (1: consecutive frames)'),
    'dataset_configs.min_resize': _positive('pixels (the shorter side after resizing)'),
    'dataset_configs.crop_size': _positive('pixels (the side of the square crop)'),
    'dataset_configs.log_test_epochs': _positive('epochs between multi-view tests'),
    'dataset_configs.num_test_clips': _positive('temporal views per test video'),
    'dataset_configs.test_batch_size': _positive('videos per multi-view test batch'),
    'dataset_configs.prefetch_to_device': (_NON_NEGATIVE[0], 'a number of batches >= 0 (0: no prefetch)'),
    'dataset_configs.augmentation_params.scale_min_factor': (_POSITIVE[0], 'a positive scale factor'),
    'dataset_configs.augmentation_params.scale_max_factor': (_POSITIVE[0], 'a positive scale factor'),
    'dataset_configs.augmentation_params.prob_scale_jitter': _PROBABILITY,
    'dataset_configs.augmentation_params.prob_color_augment': _PROBABILITY,
    'dataset_configs.augmentation_params.prob_color_drop': _PROBABILITY,
    'dataset_configs.augmentation_params.rand_augment_num_layers': (_NON_NEGATIVE[0], 'a number of ops >= 0'),
    'dataset_configs.augmentation_params.rand_augment_magnitude': (lambda v: 0 <= v <= 30,
                                                                   'a magnitude in [0, 30]'),
    'dataset_configs.augmentation_params.prob_random_erasing': _PROBABILITY,
    'model.hidden_size': _positive('channels (the token width)'),
    'model.representation_size': _positive('channels, or None (no pre-logits layer)'),
    'init_from.model_config.model.representation_size': _positive('channels, or None (no pre-logits layer)'),
    'optimizer_configs.momentum': _DECAY,
    'optimizer_configs.beta1': _DECAY,
    'optimizer_configs.beta2': _DECAY,
    'optimizer_configs.epsilon': _NON_NEGATIVE,
    'optimizer_configs.weight_decay': _NON_NEGATIVE,
    'lr_configs.base_learning_rate': (_NON_NEGATIVE[0], 'a learning rate >= 0'),
    'lr_configs.end_learning_rate': (_NON_NEGATIVE[0], 'a learning rate >= 0'),
    'lr_configs.warmup_steps': (_NON_NEGATIVE[0], 'a number of steps >= 0 (0: no warmup)'),
    'lr_configs.steps_per_cycle': _positive('steps, or None (the whole run)'),
    'lr_configs.warmup_epochs': (_NON_NEGATIVE[0], 'a number of epochs >= 0, or None (warmup_steps)'),
    'lr_configs.steps_per_cycle_epochs': (_POSITIVE[0], 'a positive number of epochs, or None (steps_per_cycle)'),
    'lr_configs.timescale': (_POSITIVE[0], 'a positive number of steps'),
    'optimizer_configs.layerwise_decay': (lambda v: 0.0 < v <= 1.0, 'a decay in (0, 1], or None (off)'),
}
# Schedule lengths that may be given in epochs instead of steps: steps key -> epochs key (set one of each pair).
EPOCH_FORMS = {'warmup_steps': 'warmup_epochs', 'steps_per_cycle': 'steps_per_cycle_epochs',
               'decay_events': 'decay_events_epochs'}
# Factors of the compound schedule that read `warmup_steps`, and those that decay over a cycle after it.
WARMUP_FACTORS = ('linear_warmup', 'cosine_decay', 'linear_decay', 'rsqrt_decay')
CYCLE_FACTORS = ('cosine_decay', 'linear_decay')


def _range_problems(config: ConfigDict) -> Iterable[str]:
  for path, (test, expected) in RANGES.items():
    value = config[path]  # ConfigDict reads dotted paths.
    if value is not None and not test(value):
      yield f"'{path}' is {value!r}; expected {expected}"


def _list_problems(config: ConfigDict) -> Iterable[str]:
  """Lists of numbers: class splits, per-channel normalisation, scale-jitter bounds."""
  d = config.dataset_configs
  if d.class_splits is not None and not all(_is_int(n) and n >= 1 for n in d.class_splits):
    yield f"'dataset_configs.class_splits' is {list(d.class_splits)}; expected positive numbers of classes"
  if (d.mean_rgb is None) != (d.std_rgb is None):
    yield ("'dataset_configs.mean_rgb' and 'dataset_configs.std_rgb' must be set together; got "
           f'{d.mean_rgb} and {d.std_rgb}')
  for key, low in (('mean_rgb', -math.inf), ('std_rgb', 0.0)):
    values = d[key]
    if values is not None and (len(values) != 3 or not all(_is_finite(v) and v > low for v in values)):
      what = 'positive ' if low == 0.0 else ''
      yield f"'dataset_configs.{key}' is {list(values)}; expected 3 {what}numbers (R, G, B on the 0-255 scale)"
  a = d.augmentation_params
  if 0 < a.scale_min_factor and 0 < a.scale_max_factor < a.scale_min_factor:
    yield (f"'dataset_configs.augmentation_params.scale_min_factor' ({a.scale_min_factor}) is larger than "
           f"'scale_max_factor' ({a.scale_max_factor}); expected min <= max")


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _data_problems(config: ConfigDict) -> Iterable[str]:
  """Sizes that only make sense together: the crop inside the resized frame, synthetic videos' squares."""
  d = config.dataset_configs
  if config.dataset_name == 'synthetic':
    if d.num_frames == 1:
      yield f"'dataset_configs.num_frames' is {d.num_frames}; synthetic motion videos need at least 2 frames"
    if not d.synthetic_speed > 0:
      yield (f"'dataset_configs.synthetic_speed' is {d.synthetic_speed}; expected a positive number of pixels "
             'per frame')
    if d.synthetic_objects < 1:
      yield f"'dataset_configs.synthetic_objects' is {d.synthetic_objects}; expected at least 1 square"
    if d.crop_size >= 1 and not 1 <= d.synthetic_object_size < d.crop_size:
      yield (f"'dataset_configs.synthetic_object_size' is {d.synthetic_object_size}; expected a square side from 1 "
             f"to 'dataset_configs.crop_size' - 1 ({d.crop_size - 1})")
  elif d.crop_size > d.min_resize >= 1:
    yield (f"'dataset_configs.crop_size' {d.crop_size} is larger than 'dataset_configs.min_resize' "
           f'{d.min_resize}; expected a crop that fits in the resized frame')


def configured_total_steps(config: ConfigDict) -> Tuple[Optional[int], str]:
  """(the run's length in steps, how it follows from the config); None when the training split must first be
  counted (epochs without `examples_per_subset.train`). The trainer's `training_length` does the same."""
  if config.num_training_steps is not None:
    return config.num_training_steps, f"'num_training_steps' {config.num_training_steps}"
  examples = config.dataset_configs.examples_per_subset.train
  if config.num_training_epochs is None or examples is None or config.batch_size < 1:
    return None, ''
  steps = int(math.ceil(config.num_training_epochs * examples / config.batch_size))
  return steps, (f"{config.num_training_epochs:g} 'num_training_epochs' of {examples} training videos in batches "
                 f'of {config.batch_size}')


def schedule_steps_per_epoch(num_train_examples: int, batch_size: int) -> int:
  """Steps per epoch of the learning-rate schedule: whole batches of the training split (`train // batch_size`,
  at least 1), as Scenic's configs count them, so that 2.5 warmup epochs of Kinetics-400 (214834 videos) at batch
  64 are Scenic's 2.5 * 3356 = 8390 steps."""
  return max(1, int(num_train_examples) // int(batch_size))


def _epochs_to_steps(epochs: Any, steps_per_epoch: float) -> Any:
  """Whole steps (a list for a list); the tiny margin keeps 0.3 * 10 from truncating to 2."""
  if isinstance(epochs, (list, tuple)):
    return [_epochs_to_steps(e, steps_per_epoch) for e in epochs]
  return int(math.floor(epochs * steps_per_epoch + 1e-6))


def _both_set(lr: Mapping[str, Any], steps_key: str) -> str:
  epochs_key = EPOCH_FORMS[steps_key]
  return (f"'lr_configs.{steps_key}' ({_show(lr[steps_key])}) and 'lr_configs.{epochs_key}' "
          f'({_show(lr[epochs_key])}) are both set; expected one of them (set the other to None)')


def _show(value: Any) -> str:
  if isinstance(value, (list, tuple)):
    return str(list(value))
  if not _is_finite(value):
    return repr(value)
  return str(int(value)) if float(value).is_integer() else f'{value:g}'


def lr_in_steps(lr: Mapping[str, Any], steps_per_epoch: Optional[float]) -> Dict[str, Any]:
  """`lr_configs` as a dict whose schedule lengths are all in steps: each epochs key that is set (`EPOCH_FORMS`)
  becomes its steps key, `floor(epochs * steps_per_epoch)` whole steps, and is itself set to None.

  Raises:
    ValueError: both forms of a length are set, or a length is in epochs and `steps_per_epoch` is None.
  """
  out = lr.to_dict() if isinstance(lr, ConfigDict) else dict(lr)
  for steps_key, epochs_key in EPOCH_FORMS.items():
    if out.get(epochs_key) is None:
      continue
    if out.get(steps_key) is not None:
      raise ValueError(_both_set(out, steps_key))
    if steps_per_epoch is None:
      raise ValueError(f"'lr_configs.{epochs_key}' is {_show(out[epochs_key])}: a schedule in epochs needs the "
                       "steps per epoch (the training videos // 'batch_size'), and none were given")
    out[steps_key] = _epochs_to_steps(out[epochs_key], steps_per_epoch)
    out[epochs_key] = None
  return out


def _named(lr: Mapping[str, Any], steps_key: str, steps: Mapping[str, Any], per_epoch: str) -> Tuple[str, str]:
  """("'lr_configs.KEY'", 'VALUE') as the config states the length: in epochs (with the steps they make) or in
  steps."""
  epochs_key = EPOCH_FORMS[steps_key]
  if lr[epochs_key] is None:
    return f"'lr_configs.{steps_key}'", _show(steps[steps_key])
  return f"'lr_configs.{epochs_key}'", f'{_show(lr[epochs_key])} ({_show(steps[steps_key])} steps at {per_epoch})'


def schedule_problems(config: ConfigDict, total_steps: Optional[int] = None, how: str = '',
                      num_train_examples: Optional[int] = None) -> List[str]:
  """What makes the compound learning-rate schedule impossible for a run of `total_steps` (None: unknown) over a
  training split of `num_train_examples` videos (None: unknown, so lengths in epochs are not checked yet)."""
  lr = config.lr_configs
  both = [_both_set(lr, key) for key, epochs_key in EPOCH_FORMS.items()
          if lr[key] is not None and lr[epochs_key] is not None]
  if both:
    return both
  factors = {f.strip() for f in lr.factors.split('*')}
  problems = _piecewise_problems(lr) if 'piecewise_constant' in factors else []
  events = lr.decay_events_epochs
  if events is not None and not all(_is_finite(e) for e in events):
    problems.append(f"'lr_configs.decay_events_epochs' is {list(events)}; expected numbers of epochs")
  if problems:
    return problems
  known = num_train_examples is not None and num_train_examples >= 1 and config.batch_size >= 1
  per_epoch_steps = schedule_steps_per_epoch(num_train_examples, config.batch_size) if known else None
  if per_epoch_steps is None and any(lr[key] is not None for key in EPOCH_FORMS.values()):
    return problems  # In epochs: checked once the training split is counted (the trainer's check_schedule).
  steps = lr_in_steps(lr, per_epoch_steps)
  per_epoch = (f'{per_epoch_steps} steps per epoch: {num_train_examples} training videos // '
               f"'batch_size' {config.batch_size}")
  warmup, cycle = steps['warmup_steps'] or 0.0, steps['steps_per_cycle']
  warmup_key, warmup_value = _named(lr, 'warmup_steps', steps, per_epoch)
  if factors.intersection(WARMUP_FACTORS) and warmup > 0 and total_steps is not None and 1 <= total_steps <= warmup:
    problems.append(f"{warmup_key} is {warmup_value}, but the run is {total_steps} steps "
                    f"({how or 'num_training_steps'}); expected a warmup that ends before the run does")
  if factors.intersection(CYCLE_FACTORS) and cycle is not None and 1 <= cycle <= warmup:
    cycle_key, cycle_value = _named(lr, 'steps_per_cycle', steps, per_epoch)
    problems.append(f'{cycle_key} is {cycle_value}, not more than {warmup_key} ({warmup_value}); the cycle '
                    'counts the warmup, so expected more steps than the warmup')
  return problems


def _piecewise_problems(lr: ConfigDict) -> List[str]:
  key = 'decay_events_epochs' if lr.decay_events_epochs is not None else 'decay_events'
  events, factors = lr[key], lr.decay_factors
  if events is None or factors is None or len(events) != len(factors):
    return [f"the 'piecewise_constant' factor needs 'lr_configs.{key}' and 'lr_configs.decay_factors' of "
            f'the same length; got {events} and {factors}']
  problems = []
  if not all(_is_finite(e) and e >= 0 for e in events) or list(events) != sorted(events, key=float):
    unit = 'epochs' if key.endswith('epochs') else 'steps'
    problems.append(f"'lr_configs.{key}' is {list(events)}; expected {unit} >= 0 in increasing order")
  if not all(_is_finite(f) and f >= 0 for f in factors):
    problems.append(f"'lr_configs.decay_factors' is {list(factors)}; expected factors >= 0")
  return problems


def number_problems(config: ConfigDict) -> List[str]:
  """Every number of `config` (merged onto the defaults) outside its range, and impossible schedules."""
  problems = [*_range_problems(config), *_list_problems(config), *_data_problems(config)]
  total, how = configured_total_steps(config)
  problems.extend(schedule_problems(config, total if total is not None and total >= 1 else None, how,
                                    config.dataset_configs.examples_per_subset.train))
  return problems
