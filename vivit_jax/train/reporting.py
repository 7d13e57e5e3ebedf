"""What a run tells people and scripts: clu metric writers (TensorBoard events in the workdir and the console),
progress with steps/s and ETA, and two JSON files in the workdir:

- `config.json`: the full validated config of the run;
- `results.json`: {'status', 'step', 'num_training_steps', 'wall_time_s', 'model', 'metrics': {name: last value}},
  where `model` is the variant, parameter count and GFLOPs per clip (with `count_flops`) and `metrics` holds the
  last value of every metric logged under its name (train/loss, valid/accuracy, valid/num_videos, test/accuracy,
  test/num_views, ...). It is rewritten after every summary and evaluation, atomically.
- `metrics.jsonl`: the history, one line `{"step": s, "metrics": {...}}` per summary and evaluation, appended
  (a restart from an older checkpoint appends the repeated steps again: `read_history` keeps the last).
"""

import json
import logging
import os
import time
from typing import Any, Dict, Mapping, Optional

import jax
import ml_collections
from clu import metric_writers, parameter_overview, periodic_actions

from vivit_jax.eval.outputs import json_numbers, write_json

CONFIG_FILE = 'config.json'
RESULTS_FILE = 'results.json'
HISTORY_FILE = 'metrics.jsonl'


def config_to_dict(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  return json.loads(config.to_json_best_effort())


def read_results(workdir: str) -> Dict[str, Any]:
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def read_history(workdir: str) -> Dict[str, list]:
  """{metric: [(step, value), ...] by step} from metrics.jsonl; for a step logged twice (a restart), the
  last value. A torn last line (a killed process) is skipped."""
  path = os.path.join(workdir, HISTORY_FILE)
  if not os.path.exists(path):
    return {}
  by_step: Dict[int, Dict[str, Any]] = {}
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except ValueError:
        continue
      by_step.setdefault(int(record['step']), {}).update(record['metrics'])
  history: Dict[str, list] = {}
  for step in sorted(by_step):
    for name, value in by_step[step].items():
      history.setdefault(name, []).append((step, value))
  return history


class Reporter:
  """Writers, progress and the results file of one run (only process 0 writes files and summaries)."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, num_steps: int, start_step: int,
               previous_time_s: float = 0.0):
    self.workdir = workdir
    self.num_steps = num_steps
    self.is_main = jax.process_index() == 0
    self.writer = metric_writers.create_default_writer(
        workdir if config.write_summary else None, just_logging=not self.is_main, asynchronous=True)
    self.progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=self.writer,
                                                    every_secs=None, every_steps=config.log_summary_steps)
    self.metrics: Dict[str, float] = dict(read_results(workdir).get('metrics', {}))
    self.step = start_step
    self.status = 'running'
    self.model: Dict[str, Any] = {}
    self._start = time.time()
    self._previous = previous_time_s
    if self.is_main:
      os.makedirs(workdir, exist_ok=True)
      write_json(os.path.join(workdir, CONFIG_FILE), config_to_dict(config))

  @property
  def wall_time_s(self) -> float:
    """Seconds spent in this run, summed over every restart."""
    return self._previous + time.time() - self._start

  def log_parameters(self, params: Any) -> None:
    """The parameter table (names, shapes, sizes; no values, so nothing is gathered from the devices)."""
    logging.info('Parameters:\n%s', parameter_overview.get_parameter_overview(params, include_stats=False))

  def log_model(self, model: Dict[str, Any]) -> None:
    """The model's size and cost ({'variant', 'params', 'gflops_per_clip'}), logged and kept in results.json."""
    self.model = dict(model)
    logging.info('Model: %s', ', '.join(f'{k} {v:,}' if isinstance(v, int) else f'{k} {v}'
                                        for k, v in self.model.items()))

  def tick(self, step: int) -> None:
    """Called after every step: steps/s and ETA every `log_summary_steps`."""
    self.step = step
    self.progress(step)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes scalars to the summaries and the results file."""
    scalars = {k: (v if isinstance(v, int) else float(v)) for k, v in scalars.items()}
    self.writer.write_scalars(step, scalars)
    self.metrics.update(scalars)
    self.step = step
    if self.is_main:
      line = json.dumps({'step': int(step), 'metrics': json_numbers(scalars)})
      with open(os.path.join(self.workdir, HISTORY_FILE), 'a') as f:
        f.write(line + '\n')
    self.save_results()

  def save_results(self, status: Optional[str] = None) -> Dict[str, Any]:
    if status:
      self.status = status
    results = {'status': self.status, 'step': self.step, 'num_training_steps': self.num_steps,
               'wall_time_s': round(self.wall_time_s, 3), 'model': self.model,
               'metrics': json_numbers(self.metrics)}
    if self.is_main:
      write_json(os.path.join(self.workdir, RESULTS_FILE), results)
    return results

  def close(self) -> None:
    self.writer.flush()
    self.writer.close()


def format_results(results: Mapping[str, Any]) -> str:
  """The results as a two-column table for the console."""
  rows = [('status', results['status']), ('step', f"{results['step']} / {results['num_training_steps']}"),
          ('wall time', f"{results['wall_time_s']:.1f} s")]
  rows += [(k, f'{v:.4f}' if isinstance(v, float) else str(v)) for k, v in sorted(results['metrics'].items())]
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'{k:<{width}}  {v}' for k, v in rows)
