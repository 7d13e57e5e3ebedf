"""`train_step(state, batch) -> (state, metrics)`: a pure function, jitted once with explicit shardings; the
train state is donated. (Evaluation steps are `eval.evaluators`'.)

Per-step randomness (dropout, stochastic depth, mixup / cutmix) comes from folding the step into the state's
key, so it depends on nothing but the seed and the step: the same on any mesh, and again after a resume.
"""

from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vivit_jax import sharding as sharding_lib
from vivit_jax import tasks
from vivit_jax.eval import metrics
from vivit_jax.train import mixup, param_groups
from vivit_jax.train.state import TrainState

Batch = Dict[str, jax.Array]


def _microbatches(batch: Batch, k: int, mesh: Mesh) -> Batch:
  """[B, ...] -> [k, B/k, ...] where micro-batch j holds examples j, j+k, j+2k, ...: every device keeps
  its own rows (the split is strided, not blocked), so no example moves between devices."""
  def split(x):
    x = x.reshape((x.shape[0] // k, k) + x.shape[1:])
    x = jnp.swapaxes(x, 0, 1)
    spec = P(None, sharding_lib.BATCH_AXES, *([None] * (x.ndim - 2)))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
  return jax.tree_util.tree_map(split, batch)


def make_train_step(model, tx: optax.GradientTransformation, schedule: Callable[[Any], Any],
                    config: ml_collections.ConfigDict, mesh: Mesh) -> Callable[[TrainState, Batch], Any]:
  """The pure train step for `config` (task, mixing, accumulation and EMA read from it once, here)."""
  task = tasks.Task.from_config(config)
  k = config.gradient_accumulation_steps
  ema_decay = config.ema_decay
  frozen = tuple(config.optimizer_configs.freeze)

  def loss_and_grad(params, batch, dropout_rng):
    def compute(p):
      if frozen:  # No gradient for frozen params, nor through a frozen backbone.
        p = param_groups.stop_frozen_gradients(p, frozen)
      logits = model.apply({'params': p}, batch['inputs'], train=True, rngs={'dropout': dropout_rng})
      return task.train_loss(logits, batch['label'], batch.get('batch_mask')), logits
    (loss, logits), grads = jax.value_and_grad(compute, has_aux=True)(params)
    counts = metrics.counts_per_head(logits, batch['label'], batch.get('batch_mask'), task)
    accuracy = sum(c['correct'] / jnp.maximum(c['num_examples'], 1.0) for c in counts.values()) / len(counts)
    return loss, accuracy, grads

  def accumulated(params, batch, dropout_rng):
    micro = _microbatches(batch, k, mesh)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)

    def body(carry, inputs):
      loss_sum, acc_sum, grad_sum = carry
      j, mb = inputs
      loss, acc, grads = loss_and_grad(params, mb, jax.random.fold_in(dropout_rng, j))
      grad_sum = jax.tree_util.tree_map(jnp.add, grad_sum, grads)
      return (loss_sum + loss, acc_sum + acc, grad_sum), None

    init = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), zeros)
    (loss, acc, grads), _ = jax.lax.scan(body, init, (jnp.arange(k), micro))
    return loss / k, acc / k, jax.tree_util.tree_map(lambda g: g / k, grads)

  def train_step(state: TrainState, batch: Batch) -> Tuple[TrainState, Dict[str, jax.Array]]:
    mix_rng, dropout_rng = jax.random.split(jax.random.fold_in(state.rng, state.step))
    batch = mixup.mix_batch(batch, mix_rng, config)
    if k == 1:
      loss, accuracy, grads = loss_and_grad(state.params, batch, dropout_rng)
    else:
      loss, accuracy, grads = accumulated(state.params, batch, dropout_rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = jax.tree_util.tree_map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
    if frozen:  # Bit for bit: frozen params (and their average) keep their values.
      params = param_groups.keep_frozen(state.params, params, frozen)
      ema = None if ema is None else param_groups.keep_frozen(state.ema_params, ema, frozen)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema)
    step_metrics = {'train/loss': loss, 'train/accuracy': accuracy, 'grad_norm': optax.tree.norm(grads),
                    'learning_rate': jnp.asarray(schedule(state.step), jnp.float32)}
    return new_state, step_metrics

  return train_step


def jit_train_step(train_step, state_shardings: TrainState, mesh: Mesh):
  """Jitted once with explicit in/out shardings; the incoming state's buffers are donated."""
  batch = sharding_lib.batch_sharding(mesh)
  return jax.jit(train_step, in_shardings=(state_shardings, batch),
                 out_shardings=(state_shardings, sharding_lib.replicated(mesh)), donate_argnums=(0,))
