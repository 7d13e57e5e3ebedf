"""The train state, created already sharded: shapes first (`jax.eval_shape`), then shardings from the rules in
`sharding.py`, then one jitted initialisation whose outputs land on their shards (no unsharded copy exists)."""

from typing import Any, Callable, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from vivit_jax import sharding as sharding_lib


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly: a checkpoint is this tree plus JSON metadata."""
  step: jax.Array  # int32 scalar: optimizer updates done so far.
  params: Any
  opt_state: Any
  rng: jax.Array  # uint32 [2] base key; step `s` uses fold_in(rng, s).
  ema_params: Optional[Any] = None  # Exponential moving average of params (config.ema_decay), or None.


def init_fn(model, tx: optax.GradientTransformation, input_shape: Tuple[int, ...], seed: int,
            use_ema: bool) -> Callable[[], TrainState]:
  """A function of nothing that builds the initial state (for eval_shape and for the sharded jit)."""
  def init() -> TrainState:
    params_rng, dropout_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed), 3)
    video = jnp.zeros(input_shape, jnp.float32)
    params = model.init({'params': params_rng, 'dropout': dropout_rng}, video, train=False)['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=train_rng, ema_params=params if use_ema else None)
  return init


def abstract_state(init: Callable[[], TrainState], mesh: Mesh) -> Tuple[TrainState, TrainState]:
  """(abstract state whose leaves carry their shardings, the shardings tree)."""
  shapes = jax.eval_shape(init)
  shardings = sharding_lib.state_shardings(shapes, mesh)
  abstract = jax.tree_util.tree_map(
      lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s), shapes, shardings)
  return abstract, shardings


def create_state(init: Callable[[], TrainState], shardings: TrainState) -> TrainState:
  """The initial state, each leaf created directly on its shards."""
  return jax.jit(init, out_shardings=shardings)()


def with_params(state: TrainState, params: Any, shardings: TrainState) -> TrainState:
  """`state` with new params (e.g. from `init_from`), placed on the params' shardings; EMA restarts there, in
  buffers of its own (the train step donates the state, and one buffer cannot be donated twice)."""
  params = jax.device_put(params, shardings.params)
  ema = None
  if state.ema_params is not None:  # jnp.copy: new buffers (jit would hand an input straight back as an output).
    ema = jax.jit(lambda p: jax.tree_util.tree_map(jnp.copy, p), out_shardings=shardings.ema_params)(params)
  return state.replace(params=params, ema_params=ema)
