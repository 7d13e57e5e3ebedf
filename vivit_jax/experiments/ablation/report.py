"""The report of an ablation sweep: `collect` writes `{workdir}/ablation.md`, `ablation.csv` and `ablation.png`
from whatever runs exist (unfinished runs leave their accuracy cells empty).

Columns: params and GFLOPs are exact (abstract); `step_time_s` is the median seconds per training step of a
short timed loop on this machine (`cost_sweep`, source 'timed'), or, where no timed loop ran, the run's wall time
divided by its steps (source 'run': compilation, evaluation and checkpoints included, so an upper bound). Every
metric of results.json whose name ends in 'accuracy' gets a column; the paper's numbers (each sweep entry's
`paper`) stand beside ours. `markdown_table` lists one row per run; `markdown_curves` the primary metric at every
evaluated step, from each run's metrics.jsonl; `plots.figure` draws them with matplotlib (ours beside the
paper's numbers, and the learning curves). `read_markdown` reads such a report back (at its printed precision)
and `redraw` renders its PNG again from it, which is how docs/ablations/*.png are drawn from the committed
reports without rerunning the sweeps.
"""

import csv
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from vivit_jax.eval.plots import save_figure
from vivit_jax.experiments.ablation import plots
from vivit_jax.experiments.ablation.plots import Curves, number
from vivit_jax.experiments.ablation.spec import Ablation, Entry, select
from vivit_jax.experiments.ablation.sweep import COST_FILE, entry_config, measure_cost, write_cost
from vivit_jax.train import reporting


def markdown_curves(ablation: Ablation, curves: Curves) -> str:
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
            "paper_*: the paper's numbers.", '']
  return '\n'.join(lines)


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
    write_cost(run_dir, cost)
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
  save_figure(plots.figure(ablation, rows, curves), paths['png'])
  return paths


def learning_curve(ablation: Ablation, run_dir: str) -> List[Tuple[int, float]]:
  """[(step, value)] of the first of the ablation's metrics in the run's metrics.jsonl ([] if none)."""
  history = reporting.read_history(run_dir)
  return next((history[m] for m in ablation.metrics if history.get(m)), [])


def _parse_cell(column: str, text: str) -> Any:
  """The inverse of `_cell`, at its printed precision: '' -> None, '1.5M' -> 1.5e6, '1,234' -> 1234, accuracies
  in % -> fractions; anything else that is not a number stays text."""
  text = text.strip()
  if not text:
    return None
  try:
    value = float(text[:-1]) * 1e6 if text.endswith('M') else float(text.replace(',', ''))
  except ValueError:
    return text
  if column.endswith('accuracy'):
    return round(value / 100, 6)
  return int(value) if value.is_integer() and column in ('step', 'params', 'paper_params') else value


def _table(lines: List[str]) -> List[List[str]]:
  """The cells of the Markdown table starting at `lines[0]` (its header), without the '|---|' line."""
  out = []
  for line in lines:
    if not line.startswith('|'):
      break
    if not line.startswith('|---'):
      out.append([cell.strip() for cell in line.strip().strip('|').split('|')])
  return out


def read_markdown(text: str) -> Tuple[List[Dict[str, Any]], Curves]:
  """(rows, curves) from an ablation.md that `collect` wrote: the run table and the learning-curve table."""
  lines = text.splitlines()
  first = next((i for i, line in enumerate(lines) if line.startswith('| ')), None)
  if first is None:
    raise ValueError('no Markdown table found in the ablation report')
  header, *body = _table(lines[first:])
  rows = [{c: _parse_cell(c, v) for c, v in zip(header, cells)} for cells in body]
  heading = next((i for i, line in enumerate(lines) if line.startswith('## ') and 'by training step' in line), None)
  curves: Curves = {}
  if heading is not None:
    names, *steps = _table([line for line in lines[heading + 1:] if line.strip()])
    for column, name in enumerate(names[1:], start=1):
      curve = [(int(cells[0]), _parse_cell('accuracy', cells[column])) for cells in steps]
      curves[name] = [(step, value) for step, value in curve if value is not None]
  return rows, curves


def redraw(ablation: Ablation, markdown_path: str, png_path: Optional[str] = None) -> str:
  """Draws the PNG of a committed ablation.md again (beside it by default), the paper's numbers taken from the
  ablation's sweep entries; returns the PNG's path."""
  with open(markdown_path) as f:
    rows, curves = read_markdown(f.read())
  paper = {e.name: e.paper for e in ablation.entries}
  rows = [dict(row, **{f'paper_{k}': v for k, v in paper.get(row['name'], {}).items()}) for row in rows]
  png_path = png_path or os.path.splitext(markdown_path)[0] + '.png'
  save_figure(plots.figure(ablation, rows, curves), png_path)
  return png_path
