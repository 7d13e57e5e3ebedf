"""The report of an ablation sweep: `collect` writes `{workdir}/ablation.md`, `ablation.csv` and `ablation.png`
from whatever runs exist (unfinished runs leave their accuracy cells empty).

Columns: params and GFLOPs are exact (abstract); `step_time_s` is the median seconds per training step of a
short timed loop on this machine (`cost_sweep`, source 'timed'), or, where no timed loop ran, the run's wall time
divided by its steps (source 'run': compilation, evaluation and checkpoints included, so an upper bound). Every
metric of results.json whose name ends in 'accuracy' gets a column; the paper's numbers (each sweep entry's
`paper`) stand beside ours. `markdown_table` lists one row per run; `markdown_curves` the primary metric at every
evaluated step, from each run's metrics.jsonl; `plot` draws, with PIL only, bars of top-1 and GFLOPs (ours beside
the paper's) and, when runs have histories, their learning curves.
"""

import csv
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from vivit_jax.experiments.ablation.spec import Ablation, Entry, select
from vivit_jax.experiments.ablation.sweep import COST_FILE, entry_config, measure_cost, write_cost
from vivit_jax.train import reporting

Curves = Dict[str, List[Tuple[int, float]]]


def number(value: Any) -> Optional[float]:
  """`value` as a float when it is a real number (not a bool), else None."""
  return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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


def primary_metric(ablation: Ablation, row: Dict[str, Any]) -> Optional[float]:
  """Our accuracy in % for the plot: the first of the ablation's metrics that the run reported."""
  return next((100.0 * row[m] for m in ablation.metrics if number(row.get(m)) is not None), None)


def plot(ablation: Ablation, rows: List[Dict[str, Any]],
         curves: Optional[Curves] = None):
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


def _plot_curves(draw, ablation: Ablation, curves: Curves,
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
              for step, value in curve if number(value) is not None]
    if len(points) > 1:
      draw.line(points, fill=colour, width=2)
    for x, y in points:
      draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    draw.text((left, bottom + 8 + 12 * i), name, fill=colour)


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
  plot(ablation, rows, curves).save(paths['png'])
  return paths


def learning_curve(ablation: Ablation, run_dir: str) -> List[Tuple[int, float]]:
  """[(step, value)] of the first of the ablation's metrics in the run's metrics.jsonl ([] if none)."""
  history = reporting.read_history(run_dir)
  return next((history[m] for m in ablation.metrics if history.get(m)), [])
