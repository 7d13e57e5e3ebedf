"""The picture of an ablation sweep (ablation.png, beside ablation.md), drawn with matplotlib.

One row of horizontal bar panels, one bar group per sweep entry: our accuracy (%), GFLOPs per clip and
parameters (millions), each beside the paper's number where the sweep entry has one. Every bar is labelled with
its number; the paper gets a legend entry (and bars) only in the panels where the sweep has paper numbers, so the
legend never promises what the plot does not show. Below, when runs have histories, their learning curves: the
ablation's metric (%) against the training step, one line per run.
"""

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from vivit_jax.eval.plots import COLOURS, new_figure, text_inches
from vivit_jax.experiments.ablation.spec import Ablation

Curves = Dict[str, List[Tuple[int, float]]]
Values = List[Optional[float]]
_OURS, _PAPER = COLOURS[0], COLOURS[1]


@dataclasses.dataclass(frozen=True)
class Panel:
  """One bar panel: the x-axis label (with its unit), our values and the paper's (None: none for that entry)."""
  xlabel: str
  ours_label: str
  ours: Values
  paper: Values
  fmt: str  # How a bar's label prints its value.


def number(value: Any) -> Optional[float]:
  """`value` as a float when it is a real number (not a bool), else None."""
  return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def primary_metric(ablation: Ablation, row: Dict[str, Any]) -> Optional[float]:
  """Our accuracy in %: the first of the ablation's metrics that the run reported."""
  return next((100.0 * row[m] for m in ablation.metrics if number(row.get(m)) is not None), None)


def panels(ablation: Ablation, rows: Sequence[Dict[str, Any]]) -> List[Panel]:
  """Accuracy, GFLOPs and parameters, ours beside the paper's (values read from the report's rows)."""
  used = [m for m in ablation.metrics if any(number(r.get(m)) is not None for r in rows)] or ablation.metrics[:1]
  millions = lambda v: None if number(v) is None else v / 1e6
  return [
      Panel('top-1 accuracy (%)', f"ours ({', '.join(used)})", [primary_metric(ablation, r) for r in rows],
            [number(r.get('paper_top1')) for r in rows], '{:.1f}'),
      Panel('GFLOPs per clip (multiply-adds)', 'ours (exact count)', [number(r.get('gflops')) for r in rows],
            [number(r.get('paper_gflops')) for r in rows], '{:.4g}'),
      Panel('parameters (millions)', 'ours (exact count)', [millions(r.get('params')) for r in rows],
            [millions(r.get('paper_params')) for r in rows], '{:.4g}'),
  ]


def figure(ablation: Ablation, rows: Sequence[Dict[str, Any]], curves: Optional[Curves] = None) -> Figure:
  """The bar panels and, when there are histories, the learning curves, as one figure."""
  names = [str(r['name']) for r in rows]
  bars_in = max(2.6, 0.55 * len(names) + 1.4)
  curves_in = 4.2 if curves else 0.0
  fig = new_figure(text_inches(max([len(n) for n in names] + [10])) + 11.5, bars_in + curves_in + 0.8)
  grid = fig.add_gridspec(2 if curves else 1, 3, height_ratios=[bars_in, curves_in] if curves else None)
  items = panels(ablation, rows)
  for i, panel in enumerate(items):
    _bars(fig.add_subplot(grid[0, i]), names, panel, show_names=i == 0)
  if curves:
    _curves(fig.add_subplot(grid[1, :]), ablation, curves)
  has_paper = any(v is not None for p in items for v in p.paper)
  fig.suptitle(f'Ablation {ablation.name}: ours' + (" beside the paper's numbers" if has_paper
                                                      else ' (this sweep has no paper numbers)'))
  return fig


def _bars(ax, names: Sequence[str], panel: Panel, show_names: bool) -> None:
  """Horizontal bars per entry (ours, and the paper's below it where there is one), each labelled."""
  positions = np.arange(len(names))
  with_paper = any(v is not None for v in panel.paper)
  series = [(panel.ours_label, panel.ours, _OURS)] + ([('paper', panel.paper, _PAPER)] if with_paper else [])
  height = 0.8 / len(series)
  for k, (label, values, colour) in enumerate(series):
    y = positions - 0.4 + height * (k + 0.5)
    drawn = [(yy, v) for yy, v in zip(y, values) if v is not None]
    if drawn:
      bars = ax.barh([d[0] for d in drawn], [d[1] for d in drawn], height=height * 0.9, color=colour, label=label)
      ax.bar_label(bars, labels=[panel.fmt.format(d[1]) for d in drawn], padding=3, fontsize=8)
    for yy, v in zip(y, values):
      if v is None and k == 0:
        ax.text(0, yy, ' not run', va='center', fontsize=8, color='grey')
  ax.set_yticks(positions, list(names) if show_names else [''] * len(names))
  ax.set_ylim(len(names) - 0.5, -0.5)  # The sweep's first entry on top.
  _scale(ax, panel)
  if ax.get_legend_handles_labels()[0]:  # Nothing to name when no entry has a number here yet.
    ax.legend(loc='lower center', bbox_to_anchor=(0.5, 1.0), fontsize=8, frameon=False)
  ax.grid(axis='x', color='#dddddd')
  ax.set_axisbelow(True)


def _scale(ax, panel: Panel) -> None:
  """0-100 for accuracies; a log axis where values span more than 100x (tiny models beside the paper's)."""
  values = [v for v in panel.ours + panel.paper if v is not None and v > 0]
  if panel.xlabel.startswith('top-1'):
    ax.set_xlim(0, 118)
    ax.set_xticks(range(0, 101, 20))
  elif values and max(values) / min(values) > 100:
    ax.set_xscale('log')
    ax.set_xlim(min(values) / 3, max(values) * 30)
    ax.set_xlabel(panel.xlabel + ', log scale')
    return
  elif values:
    ax.set_xlim(0, max(values) * 1.3)
  ax.set_xlabel(panel.xlabel)


def _curves(ax, ablation: Ablation, curves: Curves) -> None:
  """The primary metric (%) against the training step, one line with markers per run."""
  for i, (name, curve) in enumerate(curves.items()):
    points = [(step, 100 * v) for step, v in curve if number(v) is not None]
    if points:
      ax.plot(*zip(*points), marker='o', color=COLOURS[i % len(COLOURS)], label=name)
  ax.set_xlabel('training step')
  ax.set_ylabel(f'{ablation.metrics[0]} (%)')
  ax.set_ylim(0, 105)
  ax.set_title(f'{ablation.metrics[0]} by training step')
  ax.grid(color='#dddddd')
  if ax.lines:
    ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=8)
