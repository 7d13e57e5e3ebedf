"""`--dry_run`: validate a config, build model and train state abstractly, and say what a run would cost:
parameter count (trainable and frozen), GFLOPs per clip, training length, the learning-rate schedule resolved to
steps, and the memory one device needs (the sharded state by part, plus the compiled train step's own estimate of
its arguments and temporaries)."""

from typing import Dict, List

import jax

from vivit_jax import sharding as sharding_lib
from vivit_jax.models import complexity
from vivit_jax.train import loop as train
from vivit_jax.train import param_groups


def _compiled_memory(run: train.Run) -> Dict[str, int]:
  """The compiler's memory analysis of the train step on this backend ({} if it gives none)."""
  step = train.jitted_train_step(run)
  d = run.config.dataset_configs
  batch_sharding = sharding_lib.batch_sharding(run.mesh)
  b = run.config.batch_size
  batch = {'inputs': jax.ShapeDtypeStruct((b, d.num_frames, d.crop_size, d.crop_size, 3),
                                          run.config.data_dtype_str, sharding=batch_sharding),
           'label': jax.ShapeDtypeStruct((b, d.num_classes), 'float32', sharding=batch_sharding),
           'batch_mask': jax.ShapeDtypeStruct((b,), 'float32', sharding=batch_sharding)}
  analysis = step.lower(run.abstract_state, batch).compile().memory_analysis()
  if analysis is None:
    return {}
  names = ('argument_size_in_bytes', 'output_size_in_bytes', 'temp_size_in_bytes', 'alias_size_in_bytes')
  return {n: int(getattr(analysis, n, 0) or 0) for n in names}


def _gib(n: float) -> str:
  return f'{n / 2 ** 30:.3f} GiB'


def _state_line(run: train.Run) -> str:
  """The train state one device holds, and its parts: params, optimizer state (none for frozen params), EMA."""
  state, shardings = run.abstract_state, run.shardings
  total = sharding_lib.bytes_per_device(state, shardings)
  parts = [f'params {_gib(sharding_lib.bytes_per_device(state.params, shardings.params))}',
           f'optimizer state {_gib(sharding_lib.bytes_per_device(state.opt_state, shardings.opt_state))}']
  if state.ema_params is not None:
    parts.append(f'EMA {_gib(sharding_lib.bytes_per_device(state.ema_params, shardings.ema_params))}')
  return f"state per device {_gib(total)} ({', '.join(parts)}; sharded by the mesh rules)"


def _finetune_lines(run: train.Run, params_count: int) -> List[str]:
  """What `optimizer_configs.freeze` leaves to train, and the layer-wise decay of the learning rate."""
  opt = run.config.optimizer_configs
  lines = []
  if opt.freeze:
    trainable, frozen = param_groups.split_counts(run.abstract_state.params, opt.freeze)
    lines.append(f'trainable        {trainable:,} parameters ({100 * trainable / params_count:.2f}%); {frozen:,} '
                 f'frozen by optimizer_configs.freeze (no update, no optimizer state)')
  if opt.layerwise_decay is not None:
    scales = jax.tree_util.tree_leaves(param_groups.layer_scales(run.abstract_state.params, run.config))
    lines.append(f'layerwise decay  {opt.layerwise_decay:g}: learning rate x{max(scales):g} (head) down to '
                 f'x{min(scales):.3g} (embeddings)')
  return lines


def describe(config, compile_step: bool = True) -> str:
  """A human-readable summary of what training `config` would need; nothing is allocated."""
  run = train.setup(config)
  summary = complexity.summarize(config)
  params_count = summary['params']
  lines = [
      f"model            {summary['variant']} (paper Model {summary['paper_model']}), "
      f"tokens {summary['tokens']}",
      f'parameters       {params_count:,}',
      *_finetune_lines(run, params_count),
      f"GFLOPs per clip  {summary['gflops']:.2f} (forward, multiply-accumulates / 1e9)",
      f'mesh             {dict(run.mesh.shape)} over {run.mesh.devices.size} {jax.default_backend()} devices',
      f'training         {run.num_steps:,} steps of {config.batch_size} clips '
      f'({run.num_steps / run.steps_per_epoch:.2f} epochs)',
      f'schedule         {run.schedule.describe()}',
      _state_line(run),
  ]
  if compile_step:
    memory = _compiled_memory(run)
    if memory:
      temp = memory['temp_size_in_bytes']
      peak = memory['argument_size_in_bytes'] + memory['output_size_in_bytes'] - memory[
          'alias_size_in_bytes'] + temp
      lines.append(f'train step       {_gib(peak)} per device: {_gib(temp)} temporaries + arguments and '
                   'outputs (compiler estimate)')
  return '\n'.join(lines)
