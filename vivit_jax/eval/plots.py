"""Evaluation plots, drawn with matplotlib on its Agg canvas (files only, never a display), and the helpers every
plot of the package shares (`new_figure`, `save_figure`, `text_inches`).

`confusion_figure` draws a confusion matrix for a person to read: up to `MAX_MATRIX_CLASSES` classes, a heat map
with the class names on both axes, the count of videos in every non-empty cell and a colour bar (colour: the
share of the true class's videos, so rare classes show as clearly as common ones); for more classes, where
names and counts no longer fit, the most confused pairs as horizontal bars labelled 'true -> predicted'.
Figures are sized from their content (classes, longest name) and never come out under `MIN_PIXELS` a side.
"""

from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vivit_jax.eval import metrics

DPI = 100
MIN_PIXELS = 600
MAX_MATRIX_CLASSES = 30  # Above this, the names and counts of a full matrix no longer fit: the top pairs instead.
TOP_PAIRS = 25
COLOURS = ('#4272c4', '#ed7d31', '#70ad47', '#a52a2a', '#7030a0', '#000000', '#ffc000', '#5b9bd5')


def new_figure(width_in: float, height_in: float) -> Figure:
  """A figure with the Agg canvas and constrained layout (labels are fitted, never cut), at least
  `MIN_PIXELS` a side at `DPI`."""
  side = MIN_PIXELS / DPI
  fig = Figure(figsize=(max(width_in, side), max(height_in, side)), dpi=DPI, layout='constrained')
  FigureCanvasAgg(fig)
  return fig


def save_figure(fig: Figure, path: str) -> None:
  """Writes `fig` as a PNG at `DPI`, without the matplotlib version in its metadata (re-renders stay equal)."""
  fig.savefig(path, dpi=DPI, format='png', metadata={'Software': None})


def text_inches(characters: int, fontsize: float = 9.0) -> float:
  """About how wide a label of `characters` characters is at `fontsize` points, to size a figure by."""
  return 0.6 * fontsize / 72 * characters


def confusion_figure(confusion: np.ndarray, names: Sequence[str], title: str = '',
                     top_k: int = TOP_PAIRS) -> Figure:
  """The heat map of `confusion` (rows: true class, columns: predicted) for up to `MAX_MATRIX_CLASSES` classes,
  else the `top_k` most confused pairs; `names` name the classes, `title` the evaluation."""
  confusion = np.asarray(confusion, np.float64)
  if confusion.ndim != 2 or confusion.shape != (len(names), len(names)):
    raise ValueError(f'expected a [C, C] confusion matrix for {len(names)} class names, got {confusion.shape}')
  if len(names) <= MAX_MATRIX_CLASSES:
    return _heat_map(confusion, names, title)
  return _most_confused(confusion, names, title, top_k)


def _row_shares(confusion: np.ndarray) -> np.ndarray:
  """Each cell as a % of its row (the true class's videos); 0 in rows with no video."""
  rows = confusion.sum(axis=1, keepdims=True)
  return 100 * np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)


def _heat_map(confusion: np.ndarray, names: Sequence[str], title: str) -> Figure:
  classes = len(names)
  fontsize = 10 if classes <= 10 else 8 if classes <= 20 else 6.5
  labels = text_inches(max(len(n) for n in names), 9)
  side = max(5.0, 0.4 * classes)
  fig = new_figure(side + labels + 2.5, side + labels + 1.5)
  ax = fig.add_subplot()
  share = _row_shares(confusion)
  image = ax.imshow(share, cmap='Blues', vmin=0, vmax=100, interpolation='nearest')
  ticks = np.arange(classes)
  ax.set_xticks(ticks, list(names), rotation=45, ha='right', rotation_mode='anchor', fontsize=9)
  ax.set_yticks(ticks, list(names), fontsize=9)
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  ax.set_title(title or 'Confusion matrix')
  for true, predicted in zip(*np.nonzero(confusion)):
    ax.text(predicted, true, f'{confusion[true, predicted]:.0f}', ha='center', va='center', fontsize=fontsize,
            color='white' if share[true, predicted] > 55 else 'black')
  bar = fig.colorbar(image, ax=ax, shrink=0.8)
  bar.set_label("% of the true class's videos (cells: counts of videos)")
  return fig


def _most_confused(confusion: np.ndarray, names: Sequence[str], title: str, top_k: int) -> Figure:
  pairs = metrics.most_confused_pairs(confusion, top_k)
  labels = [f'{names[t]} -> {names[p]}' for t, p, _ in pairs]
  counts = [n for _, _, n in pairs]
  videos = confusion.sum(axis=1)
  fig = new_figure(text_inches(max([len(s) for s in labels] + [20]), 9) + 7, 0.32 * len(pairs) + 2.5)
  ax = fig.add_subplot()
  heading = (f'the {len(pairs)} most confused pairs of {len(names)} classes (true -> predicted)' if pairs
             else f'{len(names)} classes: no video was misclassified')
  ax.set_title(f'{title}\n{heading}' if title else heading)
  ax.set_xlabel("videos of the true class predicted as the other (count; in brackets, % of the true class's)")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  if not pairs:
    ax.set_yticks([])
    ax.set_xlim(0, 1)
    ax.text(0.5, 0.5, 'every video is on the diagonal', transform=ax.transAxes, ha='center', va='center')
    return fig
  bars = ax.barh(np.arange(len(pairs)), counts, color=COLOURS[0])
  ax.set_yticks(np.arange(len(pairs)), labels, fontsize=9)
  ax.set_ylim(len(pairs) - 0.5, -0.5)  # The most confused pair on top.
  ax.bar_label(bars, labels=[f'{n} ({100 * n / videos[t]:.1f}%)' for t, _, n in pairs], padding=3, fontsize=8)
  ax.set_xlim(0, max(counts) * 1.2)  # Room for the bar labels.
  return fig


def confusion_title(head: str, summary: Optional[dict] = None) -> str:
  """'<head> confusion matrix: <split>, <views> views (<aggregation>), <N> videos' from an evaluation summary."""
  what = f'{head} confusion matrix' if head else 'Confusion matrix'
  summary = summary or {}
  parts = [f"'{summary['split']}'" if 'split' in summary else '',
           f"{summary['views']} views ({summary.get('aggregation', 'logits')})" if 'views' in summary else '',
           f"{summary['num_videos']} videos" if 'num_videos' in summary else '']
  details = ', '.join(p for p in parts if p)
  return f'{what}: {details}' if details else what
