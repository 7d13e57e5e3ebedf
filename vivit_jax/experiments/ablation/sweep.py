"""Running a paper ablation (`spec.py`): its entries one run after another, or as commands for a cluster, or only
their costs.

Entry `name` trains in `{workdir}/{name}` with `train.train_and_evaluate`; a run whose results.json says
'completed' is skipped, any other resumes from its checkpoint; the entries share what they compile
(`compiled_once`). `report.collect` then tabulates whatever runs exist. Params and GFLOPs are exact
(models/complexity.py, abstract: nothing is allocated); `--cost_only` counts them for every entry first
(`count_sweep`, `format_costs`), then times a short training loop on this machine (`time_sweep`: `step_time_s`),
at the largest batch up to the config's that fits the machine's memory, with a note saying at which batch and why
(benchmarks/fit.py).

`dataset='synthetic'` swaps any ablation's data for the generated motion videos (vivit_jax/data/synthetic.py)
at the config's own clip size, with single-head labels, a warmup rescaled to the new epoch and no multi-view test
(synthetic clips are no longer than a clip, so their views are only shifted copies).
"""

import contextlib
import logging
import os
import shlex
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import ml_collections
from jax.experimental.compilation_cache import compilation_cache

from vivit_jax import tasks
from vivit_jax.config import ConfigError, load_config
from vivit_jax.eval.outputs import write_json
from vivit_jax.experiments.ablation.spec import Ablation, Entry, select
from vivit_jax.experiments.benchmarks.fit import time_train_steps_that_fit
from vivit_jax.models import complexity, create_model
from vivit_jax.models.shapes import input_shape
from vivit_jax.train import reporting, train_and_evaluate

COST_FILE = 'cost.json'
SYNTHETIC_SIZES = {'train': 2048, 'validation': 512, 'test': 512}


def synthetic_dataset(config: ml_collections.ConfigDict) -> List[str]:
  """Overrides that train `config`'s model on synthetic motion videos at its own clip size."""
  steps_per_epoch = SYNTHETIC_SIZES['train'] / config.batch_size
  overrides = ['dataset_name=synthetic', 'dataset_configs.num_classes=8', 'dataset_configs.do_multicrop_test=False',
               f'model_name={tasks.CLASSIFICATION}', 'dataset_configs.class_splits=None',
               'dataset_configs.split_names=None', 'dataset_configs.augmentation_params.do_flip=False',
               'lr_configs.steps_per_cycle=None']
  overrides += [f'dataset_configs.examples_per_subset.{k}={v}' for k, v in SYNTHETIC_SIZES.items()]
  if config.num_training_epochs is not None and config.lr_configs.get('warmup_epochs') is None:
    overrides.append(f'lr_configs.warmup_steps={2.5 * steps_per_epoch}')  # The paper's 2.5 warmup epochs.
  return overrides


DATASETS: Dict[str, Callable[[ml_collections.ConfigDict], List[str]]] = {'synthetic': synthetic_dataset}


def entry_overrides(ablation: Ablation, entry: Entry, dataset: Optional[str] = None,
                    extra: Sequence[str] = ()) -> List[str]:
  """The entry's overrides, then the dataset's (computed from that config), then `extra` (command line)."""
  overrides = list(entry.overrides)
  if dataset:
    if dataset not in DATASETS:
      raise ConfigError(f"--dataset={dataset!r}; expected one of {sorted(DATASETS)}")
    overrides += DATASETS[dataset](load_config(ablation.spec, overrides))
  return overrides + list(extra)


def entry_config(ablation: Ablation, entry: Entry, dataset: Optional[str] = None,
                 extra: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The validated config of one entry; a problem names the ablation and the entry."""
  try:
    return load_config(ablation.spec, entry_overrides(ablation, entry, dataset, extra))
  except ConfigError as e:
    raise ConfigError(f'sweep entry {entry.name!r}: {e}') from e


def is_finished(run_dir: str) -> bool:
  return reporting.read_results(run_dir).get('status') == 'completed'


@contextlib.contextmanager
def compiled_once() -> Iterator[None]:
  """Entries of one sweep compile the same programs again (one model with other seeds, learning rates or starting
  weights): for the sweep's duration JAX's persistent compilation cache, in a temporary directory, hands a later
  entry the executables an earlier one compiled. Cached executables are the ones a cold compile makes, so only the
  time changes (configs/ablations/synthetic_init.py's random and central-frame entries: 38 -> 33 s on 2 CPU cores,
  medians of 3). A cache directory already set (JAX_COMPILATION_CACHE_DIR) is used as it is."""
  if jax.config.jax_compilation_cache_dir:
    yield
    return
  min_time = jax.config.jax_persistent_cache_min_compile_time_secs
  with tempfile.TemporaryDirectory(prefix='vivit_jax_sweep_compile_cache_') as path:
    compilation_cache.set_cache_dir(path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    try:
      yield
    finally:
      compilation_cache.set_cache_dir(None)
      jax.config.update('jax_persistent_cache_min_compile_time_secs', min_time)
      compilation_cache.reset_cache()  # Forget the directory about to be removed.


def run_sweep(ablation: Ablation, workdir: str, only: Optional[Sequence[str]] = None,
              dataset: Optional[str] = None, extra: Sequence[str] = ()) -> Dict[str, str]:
  """Trains every selected entry in turn (finished runs skipped; programs compiled once, `compiled_once`);
  returns {name: 'skipped' | status}."""
  entries = select(ablation, only)
  configs = {e.name: entry_config(ablation, e, dataset, extra) for e in entries}  # All valid before any run.
  outcome = {}
  with compiled_once():
    for i, entry in enumerate(entries):
      run_dir = os.path.join(workdir, entry.name)
      if is_finished(run_dir):
        logging.info('[%d/%d] %s: finished earlier, skipped', i + 1, len(entries), entry.name)
        outcome[entry.name] = 'skipped'
        continue
      logging.info('[%d/%d] %s: training in %s', i + 1, len(entries), entry.name, run_dir)
      outcome[entry.name] = train_and_evaluate(configs[entry.name], run_dir)['status']
  return outcome


def commands(ablation: Ablation, workdir: str, only: Optional[Sequence[str]] = None,
             dataset: Optional[str] = None, extra: Sequence[str] = ()) -> List[str]:
  """One `python -m vivit_jax.main` command line per selected entry (for a cluster's job array)."""
  lines = []
  for entry in select(ablation, only):
    entry_config(ablation, entry, dataset, extra)  # Validate before printing.
    args = ['python', '-m', 'vivit_jax.main', f'--config={ablation.spec}',
            f'--workdir={os.path.join(workdir, entry.name)}']
    args += [f'--config.{item.strip()}' for item in entry_overrides(ablation, entry, dataset, extra)]
    lines.append(' '.join(shlex.quote(a) for a in args))
  return lines


def count_cost(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """{'params', 'gflops'} of `config`'s model: exact, and abstract (nothing is allocated)."""
  model, shape = create_model(config), input_shape(config)
  params = complexity.abstract_params(model, shape)  # summarize() rounds GFLOPs; tiny models need more.
  return {'params': complexity.count_params(params), 'gflops': complexity.count_gflops(model, params, shape)}


def measure_cost(config: ml_collections.ConfigDict, time_steps: int = 3,
                 batch_size: Optional[int] = None) -> Dict[str, Any]:
  """`count_cost`, and with `time_steps` the timing of `time_train_steps_that_fit` ('step_time_s',
  'timing_batch_size', 'timing_note'; the first two None when no batch fits this machine)."""
  cost = count_cost(config)
  if time_steps:
    cost.update(time_train_steps_that_fit(config, time_steps, batch_size))
  return cost


def count_sweep(ablation: Ablation, workdir: str, only: Optional[Sequence[str]] = None,
                dataset: Optional[str] = None, extra: Sequence[str] = ()) -> Dict[str, Dict[str, Any]]:
  """{name: {'params', 'gflops'}} of every selected entry, each written to `{workdir}/{name}/cost.json` (an
  earlier timing there is dropped: it may be of another config)."""
  configs = {e.name: entry_config(ablation, e, dataset, extra) for e in select(ablation, only)}  # All valid first.
  costs = {}
  for name, config in configs.items():
    costs[name] = count_cost(config)
    write_cost(os.path.join(workdir, name), costs[name])
  return costs


def time_sweep(ablation: Ablation, workdir: str, only: Optional[Sequence[str]] = None,
               dataset: Optional[str] = None, extra: Sequence[str] = (), time_steps: int = 3,
               batch_size: Optional[int] = None) -> Iterator[Tuple[str, Dict[str, Any]]]:
  """Times every selected entry in turn, adding the timing to its cost.json; yields (name, cost) as each ends.
  Programs are compiled once (`compiled_once`)."""
  with compiled_once():
    for entry in select(ablation, only):
      config = entry_config(ablation, entry, dataset, extra)
      cost = count_cost(config)
      logging.info('%s: compiling its train step (abstract: nothing is allocated yet)', entry.name)
      cost.update(time_train_steps_that_fit(config, time_steps, batch_size))
      write_cost(os.path.join(workdir, entry.name), cost)
      yield entry.name, cost


def cost_sweep(ablation: Ablation, workdir: str, only: Optional[Sequence[str]] = None,
               dataset: Optional[str] = None, extra: Sequence[str] = (), time_steps: int = 3,
               batch_size: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
  """Writes `{workdir}/{name}/cost.json` for every selected entry without training; returns {name: cost}."""
  selection = dict(only=only, dataset=dataset, extra=extra)
  costs = count_sweep(ablation, workdir, **selection)
  if time_steps:
    costs.update(time_sweep(ablation, workdir, time_steps=time_steps, batch_size=batch_size, **selection))
  return costs


def format_costs(ablation: Ablation, costs: Dict[str, Dict[str, Any]]) -> str:
  """The entries' params and GFLOPs as a plain-text table, beside the paper's where the sweep gives them."""
  paper = {e.name: e.paper for e in ablation.entries}
  rows = [('entry', 'params', 'GFLOPs', 'paper params', 'paper GFLOPs')]
  for name, cost in costs.items():
    theirs = paper.get(name, {})
    rows.append((name, f"{cost['params']:,}", f"{cost['gflops']:.4g}",
                 f"{theirs['params']:,}" if 'params' in theirs else '',
                 f"{theirs['gflops']:.4g}" if 'gflops' in theirs else ''))
  kept = [i for i in range(len(rows[0])) if i < 3 or any(row[i] for row in rows[1:])]
  rows = [[row[i] for i in kept] for row in rows]
  widths = [max(len(row[i]) for row in rows) for i in range(len(kept))]
  return '\n'.join('  '.join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                              enumerate(zip(row, widths))).rstrip() for row in rows)


def write_cost(run_dir: str, cost: Dict[str, Any]) -> None:
  os.makedirs(run_dir, exist_ok=True)
  write_json(os.path.join(run_dir, COST_FILE), cost)
