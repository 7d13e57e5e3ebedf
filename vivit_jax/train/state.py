"""The train state, created already sharded: shapes first (`jax.eval_shape`), then shardings from the rules in
`sharding.py`, then one jitted initialisation whose outputs land on their shards (no unsharded copy exists)."""

import os
from typing import Any, Callable, Dict, Optional, Tuple

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


# Below this many bytes of state the initialisation's compile costs more than its run (see init_compiler_options).
SMALL_STATE_BYTES = 64 << 20


def init_compiler_options(state_bytes: int) -> Optional[Dict[str, Any]]:
  """XLA options for compiling the initialisation of a state of `state_bytes` bytes, which runs once: on the CPU,
  for a small state, LLVM's -O1 instead of -O2. The parameters are bitwise a default compile's
  (tests/train/test_state.py), and it compiles in two thirds of the time (configs/synthetic.py's init, 2 cores:
  3.0-3.3 -> 2.0 s; the variants demo's 2.5-3.0 -> 1.7-2.3 s). For ViViT-B the slower run (0.5 -> 1.2 s) eats the
  shorter compile (5.7 -> 4.9 s), so large states keep the default. A level set in XLA_FLAGS wins."""
  if (jax.default_backend() != 'cpu' or state_bytes >= SMALL_STATE_BYTES
      or 'xla_backend_optimization_level' in os.environ.get('XLA_FLAGS', '')):
    return None
  return {'xla_backend_optimization_level': 1}


def create_state(init: Callable[[], TrainState], shardings: TrainState) -> TrainState:
  """The initial state, each leaf created directly on its shards."""
  lowered = jax.jit(init, out_shardings=shardings).lower()
  state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(lowered.out_info))
  return lowered.compile(init_compiler_options(state_bytes))()


def with_params(state: TrainState, params: Any, shardings: TrainState) -> TrainState:
  """`state` with new params (e.g. from `init_from`), placed on the params' shardings; EMA restarts there, in
  buffers of its own (the train step donates the state, and one buffer cannot be donated twice)."""
  params = jax.device_put(params, shardings.params)
  ema = None
  if state.ema_params is not None:  # jnp.copy: new buffers (jit would hand an input straight back as an output).
    ema = jax.jit(lambda p: jax.tree_util.tree_map(jnp.copy, p), out_shardings=shardings.ema_params)(params)
  return state.replace(params=params, ema_params=ema)
