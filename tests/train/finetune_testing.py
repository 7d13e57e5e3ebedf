"""Shared by the fine-tuning tests (layer-wise decay, freezing): a run's train state with random params, built
without compiling the model's initialisation, and one train step of it."""

import flax
import jax
import jax.numpy as jnp
import numpy as np

from tests.tiny import randomise
from tests.train_testing import host_tree
from vivit_jax import sharding, train
from vivit_jax.models import create_model
from vivit_jax.models.shapes import input_shape
from vivit_jax.train import state as state_lib


def random_state(run, seed=1):
  """The run's state with N(0, 0.2^2) params (every weight matters: the head is not zero), placed on its shardings;
  the EMA, if any, starts equal to the params in buffers of its own."""
  params = jax.tree_util.tree_map(np.asarray, randomise(run.abstract_state.params, seed=seed))
  ema = jax.tree_util.tree_map(np.copy, params) if run.config.ema_decay is not None else None
  state = state_lib.TrainState(step=np.zeros((), np.int32), params=params, opt_state=run.tx.init(params),
                               rng=np.asarray(jax.random.PRNGKey(0)), ema_params=ema)
  return jax.device_put(state, run.shardings)


def params_and_grads(config):
  """Random params of the config's model and random gradients for them (nothing compiled)."""
  model = create_model(config)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(input_shape(config)), train=False))
  return randomise(shapes['params'], seed=1), randomise(shapes['params'], seed=2, std=0.01)


def flat(tree):
  """{'/'-joined path: numpy array}."""
  return {k: np.asarray(v) for k, v in flax.traverse_util.flatten_dict(host_tree(tree), sep='/').items()}


def train_one_step(config, state_fn=random_state):
  """(run, state before, state after, metrics) of one train step of `config` on one device."""
  run = train.setup(config, devices=jax.devices()[:1])
  before = state_fn(run)
  kept = jax.tree_util.tree_map(jnp.copy, before)  # The step donates `before`.
  after, metrics = train.jitted_train_step(run)(before, sharding.global_batch(run.pipeline.train_batch(0), run.mesh))
  return run, kept, after, metrics
