"""Timing a train step at a batch that fits this machine (`vivit-ablation --cost_only`): the step is compiled from
abstract shapes first (`model.CompiledTrainStep`: nothing is allocated), and the compiler's memory estimate is
compared with the memory free here; a batch that does not fit is shrunk, down to one example per device, or
not timed, and the result says which batch was timed, or why none was.
"""

import logging
import os
from typing import Any, Dict, Optional, Tuple

import jax
import ml_collections

from vivit_jax import sharding
from vivit_jax.experiments.benchmarks.model import CompiledTrainStep, at_batch

HOST_MEMORY_FRACTION = 0.75  # Of the host memory free now: the rest is for this process's other needs and others'.


def _gib(n: float) -> str:
  return f'{n / 2**30:,.1f} GiB' if n >= 2**30 / 10 else f'{n / 2**20:,.1f} MiB'


def host_free_bytes() -> Optional[int]:
  """Memory the kernel could give this process now (MemAvailable), else free pages; None when unknown."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (AttributeError, ValueError, OSError):
    return None


def memory_budget() -> Tuple[Optional[int], str]:
  """(bytes a train step may take over this process's devices, what that is); (None, why) when unknown.
  CPU devices share the host's memory; an accelerator has its own."""
  devices = jax.local_devices()
  if devices[0].platform == 'cpu':
    free = host_free_bytes()
    if free is None:
      return None, 'the free host memory is unknown'
    return int(HOST_MEMORY_FRACTION * free), f'{HOST_MEMORY_FRACTION:.0%} of the {_gib(free)} of free host memory'
  stats = devices[0].memory_stats() or {}
  if not stats.get('bytes_limit'):
    return None, f'{devices[0].device_kind} does not report its memory'
  free = stats['bytes_limit'] - stats.get('bytes_in_use', 0)
  return free * len(devices), f'the {_gib(free)} free on each of {len(devices)} {devices[0].device_kind}'


def _smaller_batch(batch: int, needed: int, budget: int, quantum: int) -> Optional[int]:
  """A batch below `batch` that memory (taken as proportional to the batch) should fit: a multiple of `quantum`
  (the devices the batch is split over); `quantum` itself before giving up; None below that."""
  if batch <= quantum:
    return None
  estimate = int(batch * budget / needed) // quantum * quantum
  return max(quantum, min(estimate, batch - quantum))


def time_train_steps_that_fit(config: ml_collections.ConfigDict, num_steps: int = 3,
                              batch_size: Optional[int] = None,
                              budget: Optional[Tuple[Optional[int], str]] = None) -> Dict[str, Any]:
  """Times the train step at the largest batch up to `batch_size` (default: the config's) whose compiled step
  fits `budget` ((bytes, what they are); default `memory_budget()`), shrinking towards one example per device.

  Returns {'step_time_s', 'timing_batch_size', 'timing_note'}; a batch that cannot fit leaves the first two None
  and the note says why ('not timed: ...'), as does a step that fails on the device all the same.
  """
  target = batch_size or config.batch_size
  limit, where = budget or memory_budget()
  quantum = sharding.batch_parallelism(sharding.create_mesh(config.mesh))
  batch, tried = target, []
  while True:
    step = CompiledTrainStep(at_batch(config, batch))
    needed = step.bytes_needed()
    if limit is None or needed is None or needed <= limit:
      break
    tried.append(f'batch {batch} needs {_gib(needed)}')
    batch = _smaller_batch(batch, needed, limit, quantum)
    if batch is None:
      return {'step_time_s': None, 'timing_batch_size': None,
              'timing_note': f"not timed: {' and '.join(tried)}, more than {where}"}
  logging.info('Timing %d step(s) at batch %d%s', num_steps, batch, f' of {target}' if batch != target else '')
  try:  # No warm-up step: the step is compiled already, and the median leaves out a slow first run.
    seconds = step.seconds(num_steps, warmup=0)
  except jax.errors.JaxRuntimeError as e:  # The estimate was wrong for this device (out of memory, say).
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return {'step_time_s': None, 'timing_batch_size': None, 'timing_note': f'not timed: batch {batch}: {first}'}
  note = f'timed at batch {batch}'
  if tried:
    note += f" of {target}: {tried[0]}, more than {where}"
  elif limit is None or needed is None:
    note += f" (its memory was not checked: {where if limit is None else 'the compiler gives no estimate'})"
  return {'step_time_s': seconds, 'timing_batch_size': batch, 'timing_note': note}
