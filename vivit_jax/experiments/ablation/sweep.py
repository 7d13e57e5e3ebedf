"""Running a paper ablation (`spec.py`): its entries one run after another, or as commands for a cluster, or only
their costs.

Entry `name` trains in `{workdir}/{name}` with `train.train_and_evaluate`; a run whose results.json says
'completed' is skipped, any other resumes from its checkpoint. `report.collect` then tabulates whatever runs
exist. Params and GFLOPs are exact (models/complexity.py, abstract: nothing is allocated); `--cost_only` also
times a short training loop on this machine (`step_time_s`).

`dataset='synthetic'` swaps any ablation's data for the generated motion videos (vivit_jax/data/synthetic.py)
at the config's own clip size, with single-head labels, a warmup rescaled to the new epoch and no multi-view test
(synthetic clips are no longer than a clip, so their views are only shifted copies).
"""

import logging
import os
import shlex
from typing import Any, Callable, Dict, List, Optional, Sequence

import ml_collections

from vivit_jax import tasks
from vivit_jax.config import ConfigError, load_config
from vivit_jax.eval.outputs import write_json
from vivit_jax.experiments.ablation.spec import Ablation, Entry, select
from vivit_jax.experiments.benchmarks.model import time_train_steps
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
  if config.num_training_epochs is not None:  # The paper's 2.5 warmup epochs, at the synthetic epoch size.
    overrides.append(f'lr_configs.warmup_steps={2.5 * steps_per_epoch}')
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


def run_sweep(ablation: Ablation, workdir: str, only: Optional[Sequence[str]] = None,
              dataset: Optional[str] = None, extra: Sequence[str] = ()) -> Dict[str, str]:
  """Trains every selected entry in turn (finished runs skipped); returns {name: 'skipped' | status}."""
  entries = select(ablation, only)
  configs = {e.name: entry_config(ablation, e, dataset, extra) for e in entries}  # All valid before any run.
  outcome = {}
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


def measure_cost(config: ml_collections.ConfigDict, time_steps: int = 3,
                 batch_size: Optional[int] = None) -> Dict[str, Any]:
  """{'params', 'gflops'} (exact, abstract) and, with `time_steps`, the timed step time and its batch."""
  model, shape = create_model(config), input_shape(config)
  params = complexity.abstract_params(model, shape)  # summarize() rounds GFLOPs; tiny models need more.
  cost = {'params': complexity.count_params(params), 'gflops': complexity.count_gflops(model, params, shape)}
  if time_steps:
    cost.update(step_time_s=time_train_steps(config, time_steps, batch_size),
                timing_batch_size=batch_size or config.batch_size)
  return cost


def cost_sweep(ablation: Ablation, workdir: str, only: Optional[Sequence[str]] = None,
               dataset: Optional[str] = None, extra: Sequence[str] = (), time_steps: int = 3,
               batch_size: Optional[int] = None) -> None:
  """Writes `{workdir}/{name}/cost.json` for every selected entry without training."""
  for entry in select(ablation, only):
    cost = measure_cost(entry_config(ablation, entry, dataset, extra), time_steps, batch_size)
    logging.info('%s: %s', entry.name, cost)
    write_cost(os.path.join(workdir, entry.name), cost)


def write_cost(run_dir: str, cost: Dict[str, Any]) -> None:
  os.makedirs(run_dir, exist_ok=True)
  write_json(os.path.join(run_dir, COST_FILE), cost)
