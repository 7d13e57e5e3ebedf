"""Paper ablations: run a sweep of config overrides one run after another, then tabulate and plot the results.

An ablation file (configs/ablations/*.py) holds the base config (`get_config(arg=None)`) and its sweep
(`get_sweep(arg=None)` or `SWEEP`): entries {'name', 'overrides': ['dotted.key=value', ...], 'paper': {...}}.
Entry `name` trains in `{workdir}/{name}` with `train.train_and_evaluate`; a run whose results.json says
'completed' is skipped, any other resumes from its checkpoint. `collect` then writes `{workdir}/ablation.md`,
`ablation.csv` and `ablation.png` from whatever runs exist (unfinished runs leave their accuracy cells empty).

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


def _number(value: Any) -> Optional[float]:
  return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
    if name.endswith('accuracy') and _number(value) is not None:
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


def markdown_curves(ablation: Ablation, curves: Dict[str, List[Tuple[int, float]]]) -> str:
  """The primary metric (%) at every evaluated step, one column per run; '' when no run has a history."""
  if not curves:
    return ''
  steps = sorted({step for curve in curves.values() for step, _ in curve})
  values = {name: dict(curve) for name, curve in curves.items()}
  lines = ['', f'## {ablation.metrics[0]} (%) by training step', '',
           '| step | ' + ' | '.join(curves) + ' |', '|' + '---|' * (len(curves) + 1)]
  for step in steps:
    cells = [_cell('accuracy', values[name].get(step)) for name in curves]
    lines.append(f'| {step} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines + [''])


def _cell(column: str, value: Any) -> str:
  if value is None or value == '':
    return ''
  if column in ('params', 'paper_params'):
    return f'{value / 1e6:.2f}M' if value >= 1e6 else f'{value:,}'
  if column in ('gflops', 'step_time_s'):
    return f'{value:.4g}'
  if isinstance(value, float):
    return f'{100 * value:.1f}' if column.endswith('accuracy') else f'{value:g}'
  return str(value)


def markdown_table(ablation: Ablation, rows: List[Dict[str, Any]], columns: Sequence[str]) -> str:
  """The rows as a Markdown table (our accuracies in %, as the paper's), with a note on the columns."""
  lines = [f'# Ablation: {ablation.name}', '', f'Config: `{ablation.spec}`', '',
           '| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(_cell(c, row.get(c)) for c in columns) + ' |' for row in rows]
  lines += ['', 'Accuracies in %. params and gflops: exact (abstract count; paper convention: multiply-adds). '
            "step_time_s: median of a timed loop ('timed') or run wall time / steps ('run', an upper bound). "
            'paper_*: PAPER.md.', '']
  return '\n'.join(lines)


def primary_metric(ablation: Ablation, row: Dict[str, Any]) -> Optional[float]:
  """Our accuracy in % for the plot: the first of the ablation's metrics that the run reported."""
  return next((100.0 * row[m] for m in ablation.metrics if _number(row.get(m)) is not None), None)


def plot(ablation: Ablation, rows: List[Dict[str, Any]],
         curves: Optional[Dict[str, List[Tuple[int, float]]]] = None):
  """Bar panels drawn with PIL: top-1 (ours vs paper) and GFLOPs (ours vs paper), one group per entry; below
  them, when runs have histories, a panel of learning curves (the primary metric against the step)."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  width, panel, margin = max(480, 140 * len(rows) + 80), 260, 40
  legend = 12 * len(curves or {})  # The curves' legend, below their panel.
  image = Image.new('RGB', (width, (3 if curves else 2) * panel + 60 + legend), 'white')
  draw = ImageDraw.Draw(image)
  draw.text((margin, 8), f'{ablation.name}: ours (blue) vs paper (orange)', fill='black')
  panels = (('top-1 %', [primary_metric(ablation, r) for r in rows], [r.get('paper_top1') for r in rows]),
            ('GFLOPs', [r.get('gflops') for r in rows], [r.get('paper_gflops') for r in rows]))
  for p, (label, ours, paper) in enumerate(panels):
    top, bottom = 40 + p * panel, 40 + (p + 1) * panel - 40
    draw.text((margin - 30, top - 12), label, fill='black')
    draw.line((margin, bottom, width - 20, bottom), fill='black')
    peak = max([v for v in ours + paper if v] or [1.0])
    for i, row in enumerate(rows):
      x = margin + 10 + i * ((width - margin - 30) // max(1, len(rows)))
      for j, (value, colour) in enumerate(((ours[i], (66, 114, 196)), (paper[i], (237, 125, 49)))):
        if value is None:
          continue
        height = (bottom - top - 14) * value / peak
        draw.rectangle((x + 30 * j, bottom - height, x + 30 * j + 26, bottom), fill=colour)
        draw.text((x + 30 * j, bottom - height - 12), f'{value:.3g}', fill='black')
      draw.text((x, bottom + 4 + 12 * (i % 2)), row['name'][:22], fill='black')
  if curves:
    _plot_curves(draw, ablation, curves, (margin, 40 + 2 * panel, width - 20, 40 + 3 * panel - 40))
  return image


_CURVE_COLOURS = ((66, 114, 196), (237, 125, 49), (112, 173, 71), (165, 42, 42), (112, 48, 160), (0, 0, 0),
                  (255, 192, 0), (91, 155, 213))


def _plot_curves(draw, ablation: Ablation, curves: Dict[str, List[Tuple[int, float]]],
                 box: Tuple[int, int, int, int]) -> None:
  """Lines of metric (%) against step in `box` (left, top, right, bottom), 0-100 on the y axis."""
  left, top, right, bottom = box
  last = max(step for curve in curves.values() for step, _ in curve) or 1
  draw.text((left - 30, top - 12), f'{ablation.metrics[0]} % by step (0-{last})', fill='black')
  draw.line((left, bottom, right, bottom), fill='black')
  draw.line((left, top, left, bottom), fill='black')
  for percent in (50, 100):
    y = bottom - (bottom - top) * percent / 100
    draw.line((left, y, right, y), fill=(210, 210, 210))
    draw.text((left - 24, y - 6), str(percent), fill='black')
  for i, (name, curve) in enumerate(curves.items()):
    colour = _CURVE_COLOURS[i % len(_CURVE_COLOURS)]
    points = [(left + (right - left) * step / last, bottom - (bottom - top) * value)
              for step, value in curve if _number(value) is not None]
    if len(points) > 1:
      draw.line(points, fill=colour, width=2)
    for x, y in points:
      draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    draw.text((left, bottom + 8 + 12 * i), name, fill=colour)


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
