"""Paper ablations: run a sweep of config overrides one run after another, then tabulate and plot the results.

An ablation file (configs/ablations/*.py) holds the base config (`get_config(arg=None)`) and its sweep
(`get_sweep(arg=None)` or `SWEEP`): entries {'name', 'overrides': ['dotted.key=value', ...], 'paper': {...}}.
Entry `name` trains in `{workdir}/{name}` with `train.train_and_evaluate`; a run whose results.json says
'completed' is skipped, any other resumes from its checkpoint. `collect` then writes `{workdir}/ablation.md`,
`ablation.csv` and `ablation.png` from whatever runs exist (unfinished runs leave their accuracy cells empty),
rendered by ablation_report.py.

Columns: params and GFLOPs are exact (models/complexity.py, abstract: nothing is allocated); `step_time_s` is
the median seconds per training step of a short timed loop on this machine (`--cost_only`, source 'timed'), or,
where no timed loop ran, the run's wall time divided by its steps (source 'run': compilation, evaluation and
checkpoints included, so an upper bound). Every metric of results.json whose name ends in 'accuracy' gets a
column; the paper's numbers (PAPER.md) stand beside ours.

`dataset='synthetic'` swaps any ablation's data for the generated motion videos (vivit_jax/data/sources/
synthetic.py) at the config's own clip size, with single-head labels and a warmup rescaled to the new epoch.
"""

import csv
import dataclasses
import importlib.util
import inspect
import json
import logging
import os
import re
import shlex
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import ml_collections

from vivit_jax import reporting
from vivit_jax.ablation_report import markdown_curves, markdown_table, number, plot
from vivit_jax.config import ConfigError, load_config

COST_FILE = 'cost.json'
SYNTHETIC_SIZES = {'train': 2048, 'validation': 512, 'test': 512}


@dataclasses.dataclass(frozen=True)
class Entry:
  """One run of a sweep: the overrides applied to the ablation's base config, and the paper's numbers."""
  name: str
  overrides: Tuple[str, ...]
  paper: Dict[str, float]


@dataclasses.dataclass(frozen=True)
class Ablation:
  """An ablation file: its config spec (`path.py[:arg]`), entries and the metric plotted beside 'top1'."""
  spec: str
  entries: Tuple[Entry, ...]
  metrics: Tuple[str, ...] = ('valid/accuracy',)

  @property
  def name(self) -> str:
    path, _, arg = self.spec.partition(':')
    stem = os.path.splitext(os.path.basename(path))[0]
    return f'{stem}_{arg}' if arg else stem


def _import(path: str):
  if not os.path.isfile(path):
    raise ConfigError(f'ablation file not found: {path}')
  module_name = '_vivit_ablation_' + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_ablation(spec: str) -> Ablation:
  """Reads `path.py[:arg]`'s sweep; checks names are unique and safe as directory names."""
  path, _, arg = spec.partition(':')
  module = _import(path)
  if hasattr(module, 'get_sweep'):
    takes_arg = bool(inspect.signature(module.get_sweep).parameters)
    raw = module.get_sweep(arg or None) if takes_arg else module.get_sweep()
  elif hasattr(module, 'SWEEP'):
    raw = module.SWEEP
  else:
    raise ConfigError(f'{path}: defines neither get_sweep() nor SWEEP')
  entries = []
  for item in raw:
    unknown = set(item) - {'name', 'overrides', 'paper'}
    if unknown or not re.fullmatch(r'[A-Za-z0-9_.-]+', str(item.get('name', ''))):
      raise ConfigError(f"{path}: sweep entry {item!r}: expected keys 'name' (letters, digits, _ . -), "
                        "'overrides' and 'paper'")
    entries.append(Entry(item['name'], tuple(item.get('overrides', ())), dict(item.get('paper', {}))))
  names = [e.name for e in entries]
  if len(set(names)) != len(names):
    raise ConfigError(f'{path}: sweep entry names repeat: {names}')
  metric = getattr(module, 'METRIC', 'valid/accuracy')
  return Ablation(spec, tuple(entries), (metric,) if isinstance(metric, str) else tuple(metric))


def select(ablation: Ablation, only: Optional[Sequence[str]]) -> List[Entry]:
  """The entries named in `only` (all when empty), in sweep order; an unknown name is an error."""
  if not only:
    return list(ablation.entries)
  names = [e.name for e in ablation.entries]
  unknown = [n for n in only if n not in names]
  if unknown:
    raise ConfigError(f'{ablation.spec}: no sweep entries {unknown}; the entries are {names}')
  return [e for e in ablation.entries if e.name in only]


def synthetic_dataset(config: ml_collections.ConfigDict) -> List[str]:
  """Overrides that train `config`'s model on synthetic motion videos at its own clip size."""
  steps_per_epoch = SYNTHETIC_SIZES['train'] / config.batch_size
  overrides = ['dataset_name=synthetic', 'dataset_configs.num_classes=8',
               'model_name=vivit_classification', 'dataset_configs.class_splits=None',
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
  from vivit_jax import train  # pylint: disable=g-import-not-at-top
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
    outcome[entry.name] = train.train_and_evaluate(configs[entry.name], run_dir)['status']
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
  from vivit_jax.models import complexity, create_model  # pylint: disable=g-import-not-at-top
  model, shape = create_model(config), complexity.input_shape(config)
  params = complexity.abstract_params(model, shape)  # summarize() rounds GFLOPs; tiny models need more.
  cost = {'params': complexity.count_params(params), 'gflops': complexity.count_gflops(model, params, shape)}
  if time_steps:
    from vivit_jax.model_benchmark import time_train_steps  # pylint: disable=g-import-not-at-top
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
    _write_cost(os.path.join(workdir, entry.name), cost)


def _write_cost(run_dir: str, cost: Dict[str, Any]) -> None:
  os.makedirs(run_dir, exist_ok=True)
  reporting.write_json(os.path.join(run_dir, COST_FILE), cost)


def _read_json(path: str) -> Dict[str, Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def collect_row(ablation: Ablation, entry: Entry, workdir: str, dataset: Optional[str] = None,
                extra: Sequence[str] = ()) -> Dict[str, Any]:
  """One table row: cost (cost.json, else computed abstractly and cached), results.json, paper numbers."""
  run_dir = os.path.join(workdir, entry.name)
  cost = _read_json(os.path.join(run_dir, COST_FILE))
  if 'params' not in cost:
    cost.update(measure_cost(entry_config(ablation, entry, dataset, extra), time_steps=0))
    _write_cost(run_dir, cost)
  results = reporting.read_results(run_dir)
  row = {'name': entry.name, 'status': results.get('status', 'not run'), 'step': results.get('step'),
         'params': cost['params'], 'gflops': cost['gflops'], 'step_time_s': cost.get('step_time_s'),
         'step_time_source': 'timed' if cost.get('step_time_s') is not None else None}
  if row['step_time_s'] is None and results.get('step'):
    row.update(step_time_s=results['wall_time_s'] / results['step'], step_time_source='run')
  for name, value in sorted(results.get('metrics', {}).items()):
    if name.endswith('accuracy') and number(value) is not None:
      row[name] = value
  row.update({f'paper_{k}': v for k, v in entry.paper.items()})
  return row


def collect(ablation: Ablation, workdir: str, only: Optional[Sequence[str]] = None,
            dataset: Optional[str] = None, extra: Sequence[str] = ()) -> Dict[str, str]:
  """Writes ablation.md, ablation.csv and ablation.png in `workdir` from the runs there (any may be missing)."""
  entries = select(ablation, only)
  rows = [collect_row(ablation, e, workdir, dataset, extra) for e in entries]
  curves = {e.name: curve for e in entries if (curve := learning_curve(ablation, os.path.join(workdir, e.name)))}
  columns = ['name', 'status', 'step', 'params', 'gflops', 'step_time_s', 'step_time_source']
  for row in rows:
    columns += [k for k in row if k not in columns and not k.startswith('paper_')]
  for row in rows:
    columns += [k for k in row if k not in columns]
  os.makedirs(workdir, exist_ok=True)
  paths = {kind: os.path.join(workdir, f'ablation.{kind}') for kind in ('md', 'csv', 'png')}
  with open(paths['csv'], 'w', newline='') as f:
    writer = csv.DictWriter(f, columns, restval='')
    writer.writeheader()
    writer.writerows({k: ('' if v is None else v) for k, v in row.items()} for row in rows)
  with open(paths['md'], 'w') as f:
    f.write(markdown_table(ablation, rows, columns) + markdown_curves(ablation, curves))
  plot(ablation, rows, curves).save(paths['png'])
  return paths


def learning_curve(ablation: Ablation, run_dir: str) -> List[Tuple[int, float]]:
  """[(step, value)] of the first of the ablation's metrics in the run's metrics.jsonl ([] if none)."""
  history = reporting.read_history(run_dir)
  return next((history[m] for m in ablation.metrics if history.get(m)), [])


def _parse_args(argv: Sequence[str]):
  import argparse  # pylint: disable=g-import-not-at-top
  from vivit_jax.main import split_config_overrides  # pylint: disable=g-import-not-at-top
  rest, extra = split_config_overrides(list(argv))
  parser = argparse.ArgumentParser(prog='run_ablation.py', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--config', required=True, help='ablation file[:arg], e.g. configs/ablations/x.py')
  parser.add_argument('--workdir', default=None, help='default: runs/ablations/NAME; run NAME in WORKDIR/NAME')
  parser.add_argument('--only', default='', help='comma-separated entry names (default: every entry)')
  parser.add_argument('--dataset', default=None, choices=sorted(DATASETS),
                      help="train on another dataset: 'synthetic' (generated motion videos, any machine)")
  parser.add_argument('--print_commands', action='store_true', help='print one training command per entry')
  parser.add_argument('--cost_only', action='store_true', help='params, GFLOPs and timed steps; no training')
  parser.add_argument('--collect_only', action='store_true', help='write the report from existing runs')
  parser.add_argument('--time_steps', type=int, default=3, help='--cost_only: timed steps (0: none)')
  parser.add_argument('--timing_batch_size', type=int, default=None, help='--cost_only: batch (default: config)')
  args = parser.parse_args(rest)
  args.only = [n for n in args.only.split(',') if n]
  return args, extra


def main(argv: Sequence[str]) -> int:
  """`scripts/run_ablation.py`: run (or print, or cost) a sweep, then collect its report."""
  args, extra = _parse_args(argv)
  ablation = load_ablation(args.config)
  workdir = args.workdir or os.path.join('runs', 'ablations', ablation.name)
  common = dict(only=args.only, dataset=args.dataset, extra=extra)
  try:
    if args.print_commands:
      print('\n'.join(commands(ablation, workdir, **common)))
      return 0
    if args.cost_only:
      cost_sweep(ablation, workdir, time_steps=args.time_steps, batch_size=args.timing_batch_size, **common)
    elif not args.collect_only:
      reporting.quiet_library_logs()
      run_sweep(ablation, workdir, **common)
    paths = collect(ablation, workdir, **common)
  except ConfigError as e:
    print(f'error: {e}')
    return 2
  with open(paths['md']) as f:
    print(f.read())
  print('Wrote ' + ', '.join(paths.values()))
  return 0
