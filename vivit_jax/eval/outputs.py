"""Evaluation results as files a person and a script can read: JSON (`write_json`, atomic), per-class accuracy
and confusion matrices as CSV, the confusion matrix as a PNG heat map, and a console table.

`write_outputs` writes, for an evaluation summary of single-view and multi-view passes, `<stem>.json` and beside
it, from the multi-view pass, `<stem>_per_class.csv` (class_index, name, videos, accuracy, single_view_accuracy),
`<stem>_confusion.csv` (rows: true class, columns: predicted) and `<stem>_confusion.png` (`plots.confusion_figure`:
a heat map with names, counts and a colour bar for up to 30 classes, else the most confused pairs); multi-head
tasks write one of each per head: `<stem>_<head>_per_class.csv`, ... The class names are the label map's (or the
checkpoint's), else 'class_<i>'.
"""

import csv
import json
import math
import os
from typing import Any, Dict, Mapping, Optional, Sequence

import jax
import numpy as np

from vivit_jax import tasks
from vivit_jax.eval import metrics, plots


def write_json(path: str, value: Any) -> None:
  """Writes JSON atomically (a reader never sees half a file); numpy and jax values become lists."""
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=2, sort_keys=True, default=_to_builtin)
    f.write('\n')
  os.replace(tmp, path)


def _to_builtin(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray, jax.Array)):
    return np.asarray(value).tolist()
  return str(value)


def json_numbers(scalars: Mapping[str, float]) -> Dict[str, Any]:
  """Metrics for strict JSON: NaN and infinities as the strings 'nan', 'inf', '-inf'."""
  return {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in scalars.items()}


def write_per_class_csv(path: str, names: Sequence[str], confusion: np.ndarray,
                        single_view: Optional[np.ndarray] = None) -> None:
  videos, accuracy = metrics.per_class_accuracy(confusion)
  single = metrics.per_class_accuracy(single_view)[1] if single_view is not None else None
  fmt = lambda x: '' if np.isnan(x) else f'{x:.6f}'
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['class_index', 'name', 'videos', 'accuracy', 'single_view_accuracy'])
    for c, name in enumerate(names):
      writer.writerow([c, name, int(videos[c]), fmt(accuracy[c]), '' if single is None else fmt(single[c])])


def write_confusion_csv(path: str, names: Sequence[str], confusion: np.ndarray) -> None:
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['true \\ predicted'] + list(names))
    for name, row in zip(names, np.asarray(confusion)):
      writer.writerow([name] + [int(round(v)) for v in row])


def write_outputs(summary: Dict[str, Any], passes: Dict[str, Any], task: tasks.Task, output: str,
                  label_names: Optional[Sequence[str]] = None) -> Dict[str, str]:
  """The JSON, and per head the per-class CSV, confusion CSV and PNG; returns {what: path}."""
  stem = output[:-len('.json')] if output.endswith('.json') else output
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  names = task.head_label_names(label_names)
  files = {'results': output}
  multi, single = passes['multi_view'].confusion, passes['single_view'].confusion
  for head in task.head_spans:
    base = f'{stem}_{head}' if head else stem
    files[f'{head or "all"}/per_class'] = f'{base}_per_class.csv'
    files[f'{head or "all"}/confusion'] = f'{base}_confusion.csv'
    files[f'{head or "all"}/confusion_png'] = f'{base}_confusion.png'
    write_per_class_csv(f'{base}_per_class.csv', names[head], multi[head], single[head])
    write_confusion_csv(f'{base}_confusion.csv', names[head], multi[head])
    plots.save_figure(plots.confusion_figure(multi[head], names[head], plots.confusion_title(head, summary)),
                      f'{base}_confusion.png')
  summary = dict(summary, files=files)
  write_json(output, summary)
  return files


def format_table(summary: Dict[str, Any]) -> str:
  """Metric | single view | multi view, for the console."""
  by_name: Dict[str, Dict[str, Any]] = {}
  for key, value in summary['metrics'].items():
    prefix, _, name = key.partition('/')
    by_name.setdefault(name, {})[prefix] = value
  cell = lambda v: '' if v is None else (f'{v:.4f}' if isinstance(v, float) else str(v))
  rows = [('metric', 'single view', f"multi view {summary['views']} ({summary['aggregation']})")]
  rows += [(name, cell(v.get('single_view')), cell(v.get('multi_view'))) for name, v in sorted(by_name.items())]
  widths = [max(len(r[i]) for r in rows) for i in range(3)]
  lines = [f"{summary['checkpoint']} on '{summary['split']}'"]
  lines += ['  '.join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(r, widths)))
            for r in rows]
  return '\n'.join(lines)
