"""`train_and_evaluate(config, workdir)`: a sequence of named setup steps, then the training loop.

Resume order (one, written down): the workdir's latest readable checkpoint, else `config.init_from`, else a
fresh initialisation. Rerunning the same command therefore continues a run by itself: step, params, optimizer
state, EMA, rng and the input position all come back, so the result is bitwise the same as an uninterrupted run.
"""

import dataclasses
import logging
import math
import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from vivit_jax import paths
from vivit_jax import sharding as sharding_lib
from vivit_jax.checkpoints import CheckpointManager, PreemptionWatcher, init_from_pretrained, load_checkpoint
from vivit_jax.config import check_schedule, prepared
from vivit_jax.config.numbers import schedule_steps_per_epoch
from vivit_jax.data import DataError, Pipeline, check_data, create_pipeline, prefetch, preprocessing_spec
from vivit_jax.eval.evaluators import TrainingEvaluators, evaluated_splits
from vivit_jax.models import complexity, create_model
from vivit_jax.models.shapes import input_shape, token_grid
from vivit_jax.train import multihost, optim, reporting
from vivit_jax.train import state as state_lib
from vivit_jax.train import step as step_lib


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


@dataclasses.dataclass
class Run:
  """Everything the loop needs, built by the setup steps of `setup`."""
  config: ml_collections.ConfigDict
  workdir: str
  mesh: Mesh
  pipeline: Pipeline
  label_names: Optional[List[str]]
  num_steps: int
  steps_per_epoch: float
  model: Any
  schedule: Any
  tx: Any
  init: Any
  abstract_state: state_lib.TrainState
  shardings: state_lib.TrainState


def training_length(config: ml_collections.ConfigDict, num_train_examples: int) -> Tuple[int, float]:
  """(total steps, steps per epoch); epochs convert with `examples_per_subset.train` and the batch size."""
  steps_per_epoch = num_train_examples / config.batch_size
  if config.num_training_steps is not None:
    return config.num_training_steps, steps_per_epoch
  if config.num_training_epochs is None:
    raise ValueError("set 'num_training_epochs' or 'num_training_steps' to say how long to train")
  return int(math.ceil(config.num_training_epochs * steps_per_epoch)), steps_per_epoch


def setup(config: ml_collections.ConfigDict, workdir: str = '', devices: Optional[List[Any]] = None) -> Run:
  """The named setup steps, all abstract: nothing here allocates the model's state. `devices` defaults to
  every device of every process. The data is checked against the config here (`check_data`), before any step."""
  mesh = sharding_lib.create_mesh(config.mesh, devices)
  _check_batch_fits_mesh(config, mesh)
  pipeline = create_pipeline(config)
  label_names = pipeline.label_names  # Cheap checks first: a label_map.json that disagrees, then the shards.
  _log_data(config, label_names)
  check_data(pipeline, ['train'] + evaluated_splits(config, pipeline))
  num_train = pipeline.num_examples('train')
  num_steps, steps_per_epoch = training_length(config, num_train)
  # Lengths in epochs (the run's, the schedule's) are steps only now that the training split is counted.
  check_schedule(config, num_steps, num_train_examples=num_train)
  model = create_model(config)
  schedule = optim.create_learning_rate_schedule(config.lr_configs, num_steps,
                                                 schedule_steps_per_epoch(num_train, config.batch_size))
  tx = optim.create_optimizer(config, schedule)
  init = state_lib.init_fn(model, tx, input_shape(config), config.rng_seed,
                           use_ema=config.ema_decay is not None)
  abstract, shardings = state_lib.abstract_state(init, mesh)
  return Run(config, workdir, mesh, pipeline, label_names, num_steps, steps_per_epoch, model, schedule,
             tx, init, abstract, shardings)


def _log_data(config: ml_collections.ConfigDict, label_names: Optional[List[str]]) -> None:
  """Says what the run reads (with what validation took from a prepared folder's report.json: the --dry_run shows
  it too), and warns when real data names no classes: the checkpoints would then say class_<i>."""
  logging.info('Data: %s', prepared.describe(config, label_names))
  if label_names is None and config.dataset_name != 'synthetic':
    logging.warning("The data names no classes (no label_map.json in 'dataset_configs.base_dir' %r): checkpoints "
                    'will carry no class names, and evaluate, predict and export will say class_<i> unless given '
                    '--label_map', config.dataset_configs.base_dir)


def _check_batch_fits_mesh(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
  ways = sharding_lib.batch_parallelism(mesh)
  micro = config.batch_size // config.gradient_accumulation_steps
  for name, size in (('batch_size / gradient_accumulation_steps', micro),
                     ('eval_batch_size', config.eval_batch_size or config.batch_size)):
    if size % ways:
      raise sharding_lib.MeshError(f'{name} is {size}, which the mesh {dict(mesh.shape)} cannot split over its '
                       f'{ways} data x fsdp devices; use a multiple of {ways}')


def state_bytes(abstract_state: Any) -> int:
  """Bytes of the whole train state (what one checkpoint holds)."""
  return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(abstract_state))


def jitted_train_step(run: Run) -> Any:
  """The run's train step, jitted once with explicit shardings and a donated state."""
  train_fn = step_lib.make_train_step(run.model, run.tx, run.schedule, run.config, run.mesh)
  return step_lib.jit_train_step(train_fn, run.shardings, run.mesh)


def model_cost(run: Run) -> Dict[str, Any]:
  """The variant, exact parameter count and GFLOPs per clip (abstract: nothing is allocated)."""
  params = run.abstract_state.params
  return {'variant': complexity.variant_name(run.config), 'params': complexity.count_params(params),
          'gflops_per_clip': round(complexity.count_gflops(run.model, params, input_shape(run.config)), 4)}


def restore_or_initialise(run: Run, manager: CheckpointManager) -> Tuple[state_lib.TrainState, Dict[str, Any]]:
  """The workdir's checkpoint, else `init_from`, else fresh params (created on their shards)."""
  restored = manager.restore(run.abstract_state)
  if restored is not None:
    step, state, metadata = restored
    logging.info('Resumed from %s at step %d', manager.directory, step)
    return state, metadata
  state = state_lib.create_state(run.init, run.shardings)
  if run.config.init_from.checkpoint_path:
    state = state_lib.with_params(state, _init_from(run, state.params), run.shardings)
  return state, {}


def _init_from(run: Run, fresh: Any) -> Any:
  """`fresh` params initialised from `config.init_from.checkpoint_path` by `init_from_pretrained`.

  The checkpoint is read by `load_checkpoint` (`init_from.checkpoint_format`, 'auto' detects it), the surgery runs
  on host numpy, and the caller places the result on the params' shardings. A vivit_jax workdir of the same
  model is the simplest case: every array is copied, the head only with `init_from.restore_output_projection`.
  A vivit_jax source's token grid is read from the config saved beside it, so a positional embedding whose
  token count fits several (frames, height, width) grids is resized along the right axes.
  """
  init_from = run.config.init_from
  path = init_from.checkpoint_path
  loaded = load_checkpoint(path, init_from.checkpoint_format)  # Params and metadata of one step.
  pretrained, metadata = loaded.params, loaded.metadata
  source_grid = None
  if metadata and 'config' in metadata:
    source_grid = token_grid(ml_collections.ConfigDict(metadata['config']))
  params = init_from_pretrained(jax.device_get(fresh), pretrained, run.config, source_grid=source_grid)
  logging.info('Initialised the params from %s', path)
  return params


def metadata_for(run: Run, step: int, wall_time_s: float) -> Dict[str, Any]:
  """JSON saved beside every checkpoint: what a reader needs to use it, and where the input stands."""
  return {'config': reporting.config_to_dict(run.config),
          'preprocessing': preprocessing_spec(run.config, run.label_names),
          'data': {'next_step': step, 'global_batch_size': run.config.batch_size},
          'wall_time_s': wall_time_s}


def _mean_metrics(pending: List[Tuple[int, Dict[str, Any]]]) -> Dict[str, float]:
  """Fetches the pending per-step metrics (one host transfer) and averages them; raises on a bad loss."""
  steps = [s for s, _ in pending]
  values = jax.device_get([m for _, m in pending])
  for step, m in zip(steps, values):
    if not np.isfinite(m['train/loss']):
      raise NonFiniteLossError(f"train/loss is {float(m['train/loss'])} at step {step}; stopping (the last "
                               'checkpoint holds the last good state)')
  return {k: float(np.mean([m[k] for m in values])) for k in values[0]}


class _Loop:
  """The training loop's state between steps: pending metrics and what was last written."""

  def __init__(self, run: Run, manager: CheckpointManager, reporter: reporting.Reporter):
    self.run, self.manager, self.reporter = run, manager, reporter
    self.train_step = jitted_train_step(run)
    self.evaluators = TrainingEvaluators(run.config, run.model, run.pipeline, run.mesh, run.shardings.params,
                                         run.steps_per_epoch)
    self.pending: List[Tuple[int, Dict[str, Any]]] = []

  def flush(self) -> None:
    self.manager.check_for_errors()  # A failed background save stops the run now, not at the next save.
    if self.pending:
      step = self.pending[-1][0]
      self.reporter.write(step, _mean_metrics(self.pending))
      self.pending = []

  def evaluate(self, state: state_lib.TrainState, step: int, last: bool = False) -> None:
    """The evaluations due at `step` (all of them at the last step); one that fails saves `step` first."""
    try:
      scalars = self.evaluators(state.params, state.ema_params, step, last)
    except Exception:
      if jax.process_count() == 1:  # As for a bad batch: a save is collective.
        self.save(state, step, force=True)
      raise
    if scalars:
      self.flush()
      self.reporter.write(step, scalars)

  def save(self, state: state_lib.TrainState, step: int, force: bool = False) -> None:
    self.flush()  # Raises before saving if a loss since the last save was not finite.
    if self.run.config.checkpoint:
      self.manager.save(step, state, metadata_for(self.run, step, self.reporter.wall_time_s), force=force)

  def run_steps(self, state: state_lib.TrainState, start: int, watcher: PreemptionWatcher):
    """Trains from `start`; returns (state, status) with status 'completed' or 'preempted'.

    A step's checkpoint is saved before its evaluations run, so a failing evaluation loses no training. A batch
    that cannot be read (a DataError naming the record) stops the run after saving the last completed step.
    """
    config, num_steps = self.run.config, self.run.num_steps
    batches = prefetch(
        (sharding_lib.global_batch(b, self.run.mesh) for b in self.run.pipeline.train_batches(start)),
        config.dataset_configs.prefetch_to_device)
    for step in range(start + 1, num_steps + 1):
      try:
        batch = next(batches)
      except DataError:
        if step - 1 > start and jax.process_count() == 1:  # A save is collective: the other processes are
          self.save(state, step - 1, force=True)  # in the step, so only a single process saves here.
        raise
      state, step_metrics = self.train_step(state, batch)
      if step == start + 1:  # Once: results.json's speed is timed from the end of the first step, not from its
        jax.block_until_ready(step_metrics)  # dispatch, which returns while the device still computes it.
      self.pending.append((step, step_metrics))
      self.reporter.tick(step)
      if step % config.log_summary_steps == 0:
        self.flush()
      if watcher.should_stop(step):
        logging.warning('Preemption requested (SIGTERM): saving step %d and stopping', step)
        self.save(state, step, force=True)
        return state, 'preempted'
      if step != num_steps and self.manager.should_save(step):
        self.save(state, step)
      if step != num_steps:
        self.evaluate(state, step)
    self.flush()
    self.reporter.steps_finished(num_steps)
    self.save(state, num_steps, force=True)
    self.evaluate(state, num_steps, last=True)
    return state, 'completed'


def failure_reason(error: BaseException) -> str:
  """What results.json says of a run that stopped with `error` (one line)."""
  if isinstance(error, NonFiniteLossError):
    return 'non-finite loss'
  first = str(error).strip().splitlines()
  return f"{type(error).__name__}: {first[0] if first else ''}"[:1000]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Trains and evaluates `config` in `workdir` (resuming what is there); returns what results.json holds."""
  return train(config, workdir)[1]


def train(config: ml_collections.ConfigDict, workdir: str) -> Tuple[state_lib.TrainState, Dict[str, Any]]:
  """`train_and_evaluate`, also returning the final train state."""
  multihost.check_shared_workdir(workdir)  # First: every process stops together, or none does.
  paths.check_output_dir(workdir)
  run = setup(config, workdir)
  if config.checkpoint:  # Room for one more checkpoint than max_to_keep holds (the new one is written first).
    paths.check_output_dir(os.path.join(workdir, 'checkpoints'), 'checkpoint directory',
                           needed_bytes=state_bytes(run.abstract_state))
  manager = CheckpointManager(workdir, max_to_keep=config.max_checkpoints_to_keep,
                              save_interval_steps=config.checkpoint_steps)
  state, metadata = restore_or_initialise(run, manager)
  start = int(jax.device_get(state.step))
  reporter = reporting.Reporter(workdir, config, run.num_steps, start, metadata.get('wall_time_s', 0.0))
  reporter.log_parameters(run.abstract_state.params)
  if config.count_flops:
    reporter.log_model(model_cost(run))
  logging.info('Training %d steps (%.1f epochs) from step %d on mesh %s', run.num_steps,
               run.num_steps / run.steps_per_epoch, start, dict(run.mesh.shape))
  loop = _Loop(run, manager, reporter)
  status = 'completed'
  try:
    if start < run.num_steps:
      with PreemptionWatcher() as watcher:
        state, status = loop.run_steps(state, start, watcher)
    manager.wait_until_finished()  # A failed final save is a failed run (the previous step stays intact).
  except Exception as e:
    reporter.save_results(f'failed: {failure_reason(e)}')
    raise
  finally:
    manager.close()
    reporter.close()
  results = reporter.save_results(status)
  logging.info('Finished: %s at step %d; results in %s', status, results['step'],
               os.path.join(workdir, reporting.RESULTS_FILE))
  return state, results
