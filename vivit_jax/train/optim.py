"""The learning-rate schedule and the optimizer, built from the config.

`create_learning_rate_schedule(config.lr_configs, total_steps, steps_per_epoch)` gives Scenic's 'compound' schedule
(a product of factors) as a jnp-traceable function of the 0-based index of the optimizer update, with lengths
given in epochs resolved to steps. `create_optimizer(config, schedule)` gives the optax chain: L2 penalty gradient,
global-norm clipping, then the optimizer with decoupled weight decay, then layer-wise decay; frozen parameters
(`optimizer_configs.freeze`) are partitioned off and get neither updates nor optimizer state. The gradient given
to the chain is already the mean over the global batch, so clipping acts on the true gradient (Scenic clips before
the cross-device mean, one of the upstream defects vivit_jax does not copy).
"""

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from vivit_jax.config import numbers
from vivit_jax.train import param_groups

__all__ = ['LearningRateSchedule', 'create_learning_rate_schedule', 'create_optimizer', 'weight_decay_mask']

PyTree = Any
Schedule = Callable[[Any], jax.Array]
_Factor = Callable[[jax.Array], jax.Array]

SCHEDULES = ('compound',)


def _warmup_steps(lr_config: Mapping[str, Any]) -> float:
  return float(lr_config['warmup_steps'] or 0.0)


def _decay_length(lr_config: Mapping[str, Any], total_steps: int) -> float:
  """Steps over which cosine_decay / linear_decay go from 1 to their end value (one cycle).

  Scenic counts `steps_per_cycle` including the warmup and decays over `steps_per_cycle - warmup_steps`
  steps; `steps_per_cycle` None means the whole run (`total_steps`).
  """
  cycle = lr_config['steps_per_cycle']
  cycle = total_steps if cycle is None else cycle
  length = float(cycle) - _warmup_steps(lr_config)
  if length <= 0:
    raise ValueError(
        f"'lr_configs.steps_per_cycle' ({lr_config['steps_per_cycle']}; None means total_steps "
        f"{total_steps}) minus 'lr_configs.warmup_steps' ({lr_config['warmup_steps']}) is {length}; "
        'expected a positive number of decay steps')
  return length


def _constant(lr_config: Mapping[str, Any], total_steps: int) -> _Factor:
  del total_steps
  base = float(lr_config['base_learning_rate'])
  return lambda step: jnp.asarray(base, jnp.float32)


def _linear_warmup(lr_config: Mapping[str, Any], total_steps: int) -> _Factor:
  del total_steps
  warmup = _warmup_steps(lr_config)
  if warmup <= 0:
    return lambda step: jnp.ones((), jnp.float32)
  return lambda step: jnp.minimum(1.0, (step + 1.0) / warmup)


def _cosine_decay(lr_config: Mapping[str, Any], total_steps: int) -> _Factor:
  warmup, length = _warmup_steps(lr_config), _decay_length(lr_config, total_steps)

  def factor(step):
    progress = jnp.maximum(0.0, step - warmup) / length
    return 0.5 * (1.0 + jnp.cos(jnp.pi * (progress % 1.0)))

  return factor


def _linear_decay(lr_config: Mapping[str, Any], total_steps: int) -> _Factor:
  warmup, length = _warmup_steps(lr_config), _decay_length(lr_config, total_steps)
  base = float(lr_config['base_learning_rate'])
  end_ratio = float(lr_config['end_learning_rate']) / base if base else 0.0

  def factor(step):
    progress = jnp.minimum(1.0, jnp.maximum(0.0, step - warmup) / length)
    return 1.0 - (1.0 - end_ratio) * progress

  return factor


def _rsqrt_decay(lr_config: Mapping[str, Any], total_steps: int) -> _Factor:
  del total_steps
  warmup = _warmup_steps(lr_config)
  timescale = float(lr_config['timescale'])
  if timescale <= 0:
    raise ValueError(f"'lr_configs.timescale' is {lr_config['timescale']}; expected a positive number")
  return lambda step: jnp.sqrt(timescale / (jnp.maximum(0.0, step - warmup) + timescale))


def _piecewise_constant(lr_config: Mapping[str, Any], total_steps: int) -> _Factor:
  del total_steps
  events, factors = lr_config['decay_events'], lr_config['decay_factors']
  if events is None or factors is None or len(events) != len(factors):
    raise ValueError(
        "piecewise_constant needs 'lr_configs.decay_events' and 'lr_configs.decay_factors' of the same "
        f'length; got {events} and {factors}')
  if list(events) != sorted(events):
    raise ValueError(f"'lr_configs.decay_events' {list(events)} must be in increasing order")
  boundaries = jnp.asarray(list(events), jnp.float32)
  values = jnp.asarray([1.0] + [float(f) for f in factors], jnp.float32)
  return lambda step: values[jnp.sum(step >= boundaries)]


_FACTORS = {
    'constant': _constant,
    'linear_warmup': _linear_warmup,
    'cosine_decay': _cosine_decay,
    'linear_decay': _linear_decay,
    'rsqrt_decay': _rsqrt_decay,
    'piecewise_constant': _piecewise_constant,
}


@dataclasses.dataclass(frozen=True, eq=False)
class LearningRateSchedule:
  """`schedule(step) -> learning rate`, with the lengths it was built from (all in steps) for reports."""
  fn: Schedule
  lr_config: Dict[str, Any]  # lr_configs with every length in steps (epochs resolved).
  total_steps: int
  in_epochs: Dict[str, Any] = dataclasses.field(default_factory=dict)  # Epochs keys the config set -> values.
  steps_per_epoch: Optional[float] = None  # What resolved them.

  def __call__(self, step):
    return self.fn(step)

  @property
  def warmup_steps(self) -> float:
    return _warmup_steps(self.lr_config)

  @property
  def cycle_steps(self) -> float:
    """Steps of one decay cycle, counting the warmup (the whole run when steps_per_cycle is None)."""
    cycle = self.lr_config['steps_per_cycle']
    return float(self.total_steps if cycle is None else cycle)

  def describe(self) -> str:
    """One line: the factors and the resolved warmup and decay lengths."""
    c = self.lr_config
    factors = [f.strip() for f in c['factors'].split('*') if f.strip()]
    parts = [f"{c['factors']}, base {c['base_learning_rate']:g}"]
    if 'linear_warmup' in factors:
      parts.append(f'warmup {_count(self.warmup_steps)} steps{self._epochs("warmup_epochs")}')
    if set(factors) & {'cosine_decay', 'linear_decay'}:
      parts.append(f'decay {_count(self.cycle_steps - self.warmup_steps)} steps (cycle {_count(self.cycle_steps)}'
                   f'{self._epochs("steps_per_cycle_epochs")})')
    if 'piecewise_constant' in factors:
      parts.append(f"decay events at steps {list(c['decay_events'])}{self._epochs('decay_events_epochs')}")
    return '; '.join(parts) + f' of a {self.total_steps:,}-step run'

  def _epochs(self, key: str) -> str:
    if key not in self.in_epochs:
      return ''
    value = self.in_epochs[key]
    shown = list(value) if isinstance(value, (list, tuple)) else f'{value:g}'
    return f' = {shown} epochs of {_count(self.steps_per_epoch)} steps'


def _count(steps: float) -> str:
  """'8,390', or '14,187.5' for a fractional number of steps."""
  return f'{int(steps):,}' if float(steps).is_integer() else f'{steps:,.1f}'


def create_learning_rate_schedule(lr_config: ml_collections.ConfigDict, total_steps: int,
                                  steps_per_epoch: Optional[float] = None) -> LearningRateSchedule:
  """Returns `schedule(step) -> learning rate` (float32 scalar) for `config.lr_configs`.

  `step` is the 0-based index of the optimizer update being computed (a Python int or a traced int32
  scalar); `total_steps` is the number of updates in the run. Lengths given in epochs (`warmup_epochs`,
  `steps_per_cycle_epochs`, `decay_events_epochs`) become `floor(epochs * steps_per_epoch)` steps
  (`config.numbers.schedule_steps_per_epoch`: train // batch_size, as Scenic counts); they need
  `steps_per_epoch`. The schedule is the product of the '*'-separated `lr_configs.factors`, with warmup length
  `w = warmup_steps` (may be fractional) and decay length `L = (steps_per_cycle or total_steps) - w`:

  - constant: `base_learning_rate`.
  - linear_warmup: `min(1, (step + 1) / w)` (1 when w <= 0). Scenic uses `step / w`, which trains the
    first update with learning rate 0; here the first update uses `1 / w` and warmup ends at update w - 1.
  - cosine_decay: `0.5 * (1 + cos(pi * (p % 1)))` with `p = max(0, step - w) / L`. As in Scenic,
    `steps_per_cycle` counts the warmup and the cosine restarts (cycles) after each L steps; with
    `steps_per_cycle` None (or equal to total_steps, as Scenic's ViViT configs set it) the run ends before
    the first restart. Scenic truncates w to an integer here; we use it as is.
  - linear_decay: from 1 down to `end_learning_rate / base_learning_rate` over the same L steps, then
    constant (no cycling), so that with 'constant' the rate ends at `end_learning_rate`. Scenic decays
    over `total_steps - w` and makes the result depend on the factor order; with `steps_per_cycle` None
    the two agree whenever 'constant' comes first.
  - rsqrt_decay: Scenic's definition, `sqrt(timescale / (max(0, step - w) + timescale))`: 1 until warmup
    ends, then inverse-square-root decay whose time scale is `lr_configs.timescale` (the rate halves
    3 * timescale steps after the warmup).
  - piecewise_constant: `decay_factors[i]` for the last i with `step >= decay_events[i]` (1 before the
    first event). The factors are absolute, not cumulative, as in Scenic; Scenic switches one update
    later (`step > decay_events[i]`), while its docstring (and this) switches after `decay_events[i]`
    updates.

  Raises:
    ValueError: an unknown schedule or factor, missing / inconsistent keys for a factor used, a length given both
      in steps and in epochs, or in epochs without `steps_per_epoch`.
  """
  in_epochs = {key: lr_config[key] for key in numbers.EPOCH_FORMS.values() if lr_config.get(key) is not None}
  lr_config = numbers.lr_in_steps(lr_config, steps_per_epoch)
  schedule = lr_config['learning_rate_schedule']
  if schedule not in SCHEDULES:
    raise ValueError(f"'lr_configs.learning_rate_schedule' is {schedule!r}; expected one of "
                     f'{list(SCHEDULES)}')
  names = [name.strip() for name in lr_config['factors'].split('*') if name.strip()]
  fns = []
  for name in names:
    if name not in _FACTORS:
      raise ValueError(f"'lr_configs.factors' has unknown factor {name!r}; expected factors from "
                       f'{list(_FACTORS)}')
    fns.append(_FACTORS[name](lr_config, total_steps))

  def learning_rate(step):
    step = jnp.asarray(step, jnp.float32)
    lr = jnp.ones((), jnp.float32)
    for fn in fns:
      lr = lr * fn(step)
    return lr.astype(jnp.float32)

  return LearningRateSchedule(learning_rate, lr_config, int(total_steps), in_epochs, steps_per_epoch)


def weight_decay_mask(params: PyTree, decay_biases_and_norms: bool = False) -> PyTree:
  """Which leaves get weight decay: a pytree of bools shaped like `params`.

  By default only leaves with two or more dimensions (kernels, embeddings) are decayed; 1-D leaves
  (biases, LayerNorm scales and biases) and scalars are not. `decay_biases_and_norms=True` decays all.
  """
  return jax.tree_util.tree_map(lambda p: bool(decay_biases_and_norms or jnp.ndim(p) >= 2), params)


def _direction(name: str, opt: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The update direction of `config.optimizer`, before the learning rate (and decay) are applied."""
  if name == 'sgd':
    return optax.identity()
  if name in ('momentum', 'nesterov'):
    return optax.trace(decay=opt.momentum, nesterov=name == 'nesterov', accumulator_dtype=jnp.float32)
  if name == 'adam':
    return optax.scale_by_adam(b1=opt.beta1, b2=opt.beta2, eps=opt.epsilon, mu_dtype=jnp.float32)
  raise ValueError(f"'optimizer' is {name!r}; expected one of ['momentum', 'sgd', 'nesterov', 'adam', "
                   "'adamw']")


def scale_by_layer_depth(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Multiplies each update by `layerwise_decay`^(L+1-depth) (`param_groups.layer_depth`); stateless."""
  def init(params):
    param_groups.layer_scales(params, config)  # Every parameter has a depth, or an error names it now.
    return optax.EmptyState()

  def update(updates, state, params=None):
    del params
    return jax.tree_util.tree_map(lambda u, s: u * s, updates, param_groups.layer_scales(updates, config)), state

  return optax.GradientTransformation(init, update)


def create_optimizer(config: ml_collections.ConfigDict, schedule: Schedule) -> optax.GradientTransformation:
  """The optax chain for a validated `config`, driven by `schedule` (see create_learning_rate_schedule).

  In order, applied to the batch-mean gradient g:

  1. `l2_decay_factor` (if set): g += l2_decay_factor * param for every parameter, i.e. the gradient of
     Scenic's `0.5 * l2_decay_factor * sum(param ** 2)` loss term; before clipping, as in Scenic.
  2. `max_grad_norm` (if set): clip g to that global norm.
  3. `optimizer`: 'sgd' (u = g), 'momentum' (heavy ball: trace = g + momentum * trace, u = trace),
     'nesterov' (u = g + momentum * trace with the new trace), 'adam' / 'adamw' (bias-corrected Adam with
     `optimizer_configs.beta1`, `beta2`, `epsilon`). Momentum and first moments are kept in float32.
  4. `optimizer_configs.weight_decay` wd > 0: decoupled decay u += wd * param on the leaves chosen by
     `weight_decay_mask` (`decay_biases_and_norms`), for every optimizer ('adamw' uses optax.adamw's own).
  5. param -= schedule(step) * u, so the decay is scaled by the learning rate as in AdamW.
  6. `optimizer_configs.layerwise_decay` (if set and below 1): the update of a parameter at depth i (0
     embeddings, 1..L blocks, L+1 head; `param_groups`) is multiplied by decay^(L+1-i), as a per-layer learning
     rate (its weight decay included, as in BEiT).

  `optimizer_configs.freeze` (regexes over '/'-joined parameter paths) partitions the parameters with
  optax.partition: the matching ones get a zero update and no optimizer state (no momentum, no Adam moments),
  and steps 1-6 see only the others (the clipping norm included). Without these two options the chain and its
  state are exactly those of earlier versions, so existing checkpoints resume.

  Scenic's sgd instead adds the weight decay to the gradient before the momentum; ours is decoupled.
  """
  opt = config.optimizer_configs
  ops = []
  if config.l2_decay_factor is not None:
    ops.append(optax.add_decayed_weights(float(config.l2_decay_factor)))
  if config.max_grad_norm is not None:
    ops.append(optax.clip_by_global_norm(float(config.max_grad_norm)))
  weight_decay = float(opt.weight_decay or 0.0)
  mask = None if opt.decay_biases_and_norms else functools.partial(weight_decay_mask,
                                                                    decay_biases_and_norms=False)
  if config.optimizer == 'adamw':
    ops.append(optax.adamw(schedule, b1=opt.beta1, b2=opt.beta2, eps=opt.epsilon, mu_dtype=jnp.float32,
                           weight_decay=weight_decay, mask=mask))
  else:
    ops.append(_direction(config.optimizer, opt))
    if weight_decay > 0:
      ops.append(optax.add_decayed_weights(weight_decay, mask))
    ops.append(optax.scale_by_learning_rate(schedule))
  if opt.layerwise_decay is not None and opt.layerwise_decay != 1.0:
    ops.append(scale_by_layer_depth(config))
  tx = optax.chain(*ops)
  if not opt.freeze:
    return tx
  return optax.partition({param_groups.TRAINABLE: tx, param_groups.FROZEN: optax.set_to_zero()},
                         functools.partial(param_groups.labels, patterns=tuple(opt.freeze)))
