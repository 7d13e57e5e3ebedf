"""What a run tells people and scripts: its scalars as TensorBoard events in the workdir and console lines
(`summaries`, which loads no TensorFlow), progress (`Progress`: step, steps/s, ETA and the latest loss; on a
terminal one line that updates in place, in a log one line every `log_summary_steps`), the parameter table (for a
fresh run, or any run with VIVIT_VERBOSE=1, which `--verbose` sets), where the outputs are at the end
(`format_locations`), and two JSON files in the workdir:

- `config.json`: the full validated config of the run;
- `results.json`: {'status', 'step', 'num_training_steps', 'wall_time_s', 'model', 'metrics': {name: last value}},
  where `model` is the variant, parameter count and GFLOPs per clip (with `count_flops`) and `metrics` holds the
  last value of every metric logged under its name (train/loss, valid/accuracy, valid/num_videos, test/accuracy,
  test/num_views, ...). It is rewritten after every summary and evaluation, atomically.
- `metrics.jsonl`: the history, one line `{"step": s, "metrics": {...}}` per summary and evaluation, appended
  (a restart from an older checkpoint appends the repeated steps again: `read_history` keeps the last).
"""

import collections
import glob
import json
import logging
import math
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, TextIO, Tuple

import jax
import ml_collections
import numpy as np
from clu import parameter_overview

from vivit_jax.eval.outputs import json_numbers, write_json
from vivit_jax.train import summaries

CONFIG_FILE = 'config.json'
RESULTS_FILE = 'results.json'
HISTORY_FILE = 'metrics.jsonl'
CHECKPOINT_DIR = 'checkpoints'
VERBOSE_ENV = 'VIVIT_VERBOSE'  # What `--verbose` sets (vivit_jax/cli/quiet.py): the libraries' logs and the table.


def verbose() -> bool:
  """True when the user asked for everything (--verbose, or VIVIT_VERBOSE set to anything but '', '0', 'false')."""
  return os.environ.get(VERBOSE_ENV, '').strip().lower() not in ('', '0', 'false', 'no')


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


def format_seconds(seconds: float) -> str:
  """'42 s', '1 min 52 s', '3 h 05 min': to the second below an hour."""
  seconds = max(0, int(round(seconds)))
  if seconds < 60:
    return f'{seconds} s'
  if seconds < 3600:
    return f'{seconds // 60} min {seconds % 60:02d} s'
  return f'{seconds // 3600} h {seconds % 3600 // 60:02d} min'


def _isatty(stream: TextIO) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):  # No isatty, or a closed stream.
    return False


class Progress:
  """Step, steps/s (over the last `every_steps` steps), ETA and the latest training loss.

  On a terminal (`stream.isatty()`) it is one line rewritten in place at most every `redraw_s` seconds, taken
  off the screen while another log line is written (`clear`, from the logging thread; the next redraw waits
  `redraw_s`, so that the line is not drawn again between the clearing and the writing), and written a last
  time with its newline by `close`. Elsewhere (a log file, a pipe) it is one log line every `every_steps` steps
  and at the last step, written once the loss of that step is known (`loss_logged`), or at the next step if it
  never is.
  """

  def __init__(self, num_steps: int, start_step: int, every_steps: int, stream: Optional[TextIO] = None,
               clock: Callable[[], float] = time.monotonic, redraw_s: float = 0.25):
    self.num_steps, self.every_steps, self.redraw_s = num_steps, max(1, every_steps), redraw_s
    self._stream, self._clock = stream, clock
    self.tty = _isatty(self.stream)
    self.loss: Optional[float] = None
    self.step = self.start_step = start_step
    self._window = collections.deque([(clock(), start_step)], maxlen=self.every_steps + 1)
    self._due: Optional[int] = None  # A log line owed for this step (not on a terminal).
    self._shown = False  # The terminal line is on screen, without its newline.
    self._drawn_at = -math.inf
    self._paused_until = -math.inf  # Another log line is being written: no redraw before then.
    self._lock = threading.Lock()  # `clear` runs in whichever thread logs.

  @property
  def stream(self) -> TextIO:
    return self._stream if self._stream is not None else sys.stderr  # Looked up late: tests swap sys.stderr.

  def rate(self) -> Optional[float]:
    """Steps per second over the window; None before two steps have been timed."""
    (t0, s0), (t1, s1) = self._window[0], self._window[-1]
    return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

  def line(self) -> str:
    """'step 120/1500  12.3 steps/s  ETA 1 min 52 s  loss 0.8123' (what is known so far)."""
    parts = [f'step {self.step}/{self.num_steps}']
    rate = self.rate()
    if rate:
      parts.append(f'{rate:.{3 if rate < 1 else 2 if rate < 10 else 1 if rate < 100 else 0}f} steps/s')
      parts.append(f'ETA {format_seconds((self.num_steps - self.step) / rate)}')
    if self.loss is not None:
      parts.append(f'loss {self.loss:.4f}')
    return '  '.join(parts)

  def tick(self, step: int) -> None:
    """Called after each step."""
    if self._due is not None:  # The loss of the previous report never came: report without it.
      self._log()
    self.step = step
    self._window.append((self._clock(), step))
    if self.tty:
      if step == self.num_steps or self._clock() - self._drawn_at >= self.redraw_s:
        self._draw()
    elif step % self.every_steps == 0 or step == self.num_steps:
      self._due = step

  def loss_logged(self, step: int, loss: float) -> None:
    """The mean training loss up to `step` (written with the summaries)."""
    self.loss = float(loss)
    if self.tty:
      self._draw()
    elif self._due == step:
      self._log()

  def clear(self) -> None:
    """Takes the terminal line off the screen (before another line is written there)."""
    with self._lock:
      self._paused_until = self._clock() + self.redraw_s
      if self._shown:
        self.stream.write('\r\x1b[K')
        self.stream.flush()
        self._shown = False

  def close(self) -> None:
    """Writes the terminal line a last time and ends it with a newline, or writes the log line still owed.
    Call it once the other log lines are written."""
    if self.tty and self.step > self.start_step:
      self._draw(force=True)
      self.stream.write('\n')
      self.stream.flush()
      self._shown = False
    if self._due is not None:
      self._log()

  def _draw(self, force: bool = False) -> None:
    with self._lock:
      if force or self._clock() >= self._paused_until:
        self.stream.write('\r' + self.line() + '\x1b[K')
        self.stream.flush()
        self._shown, self._drawn_at = True, self._clock()

  def _log(self) -> None:
    logging.info('%s', self.line())
    self._due = None


class _ClearProgressLine(logging.Filter):
  """On a terminal: clears the progress line before a log record is written over it."""

  def __init__(self, progress: Progress):
    super().__init__()
    self.progress = progress

  def filter(self, record: logging.LogRecord) -> bool:
    self.progress.clear()
    return True


class Reporter:
  """Writers, progress and the results file of one run (only process 0 writes files and summaries)."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, num_steps: int, start_step: int,
               previous_time_s: float = 0.0, stream: Optional[TextIO] = None):
    self.workdir = workdir
    self.num_steps = num_steps
    self.start_step = start_step
    self.is_main = jax.process_index() == 0
    self.events = None  # TensorBoard, also for steps/s (kept off the console, which has the progress line).
    if self.is_main and config.write_summary:
      self.events = summaries.open_events(workdir)
    self.progress = Progress(num_steps, start_step, config.log_summary_steps, stream)
    self._clear_filter = _ClearProgressLine(self.progress) if self.progress.tty else None
    for handler in logging.getLogger().handlers if self._clear_filter else ():
      handler.addFilter(self._clear_filter)
    self.metrics: Dict[str, float] = dict(read_results(workdir).get('metrics', {}))
    self.step = start_step
    self.status = 'running'
    self.model: Dict[str, Any] = {}
    self._start = time.time()
    self._previous = previous_time_s
    self._batch_size = config.batch_size
    self._first_step: Optional[Tuple[float, int]] = None  # (clock, step) when this process's first step returned.
    self.speed: Dict[str, Any] = {}
    if self.is_main:
      os.makedirs(workdir, exist_ok=True)
      write_json(os.path.join(workdir, CONFIG_FILE), config_to_dict(config))

  @property
  def wall_time_s(self) -> float:
    """Seconds spent in this run, summed over every restart."""
    return self._previous + time.time() - self._start

  def log_parameters(self, params: Any) -> None:
    """The parameter table (names, shapes, sizes; no values, so nothing is gathered from the devices) for a run
    that starts at step 0 or with --verbose; a resumed run gets the count in one line."""
    if self.start_step == 0 or verbose():
      logging.info('Parameters:\n%s', parameter_overview.get_parameter_overview(params, include_stats=False))
      return
    count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
    logging.info('Parameters: %s (resuming at step %d; --verbose prints their table)', f'{count:,}',
                 self.start_step)

  def log_model(self, model: Dict[str, Any]) -> None:
    """The model's size and cost ({'variant', 'params', 'gflops_per_clip'}), logged and kept in results.json."""
    self.model = dict(model)
    logging.info('Model: %s', ', '.join(f'{k} {v:,}' if isinstance(v, int) else f'{k} {v}'
                                        for k, v in self.model.items()))

  def tick(self, step: int) -> None:
    """Called after every step: the progress line, and steps/s in TensorBoard every `log_summary_steps`."""
    self.step = step
    if self._first_step is None:
      self._first_step = (time.monotonic(), step)
    self.progress.tick(step)
    rate = self.progress.rate()
    if self.events and rate and step % self.progress.every_steps == 0:
      self.events.write_scalars(step, {'steps_per_sec': rate})

  def steps_finished(self, step: int) -> None:
    """Called once `step`'s results are on the host (every step before it done): `speed` is this process's
    training rate from the end of its first step (which waited for the compilation; the loop waits for it to
    finish) to `step`, data loading, metric transfers and the checkpoints and evaluations between included ({}
    when it trained fewer than two steps)."""
    if self._first_step is None or step <= self._first_step[1]:
      return
    seconds, steps = time.monotonic() - self._first_step[0], step - self._first_step[1]
    self.speed = {'steps_per_s': round(steps / seconds, 3),
                  'clips_per_s': round(steps * self._batch_size / seconds, 2), 'steps': steps,
                  'from_step': self._first_step[1]}

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes scalars to the summaries and the results file."""
    scalars = {k: (v if isinstance(v, int) else float(v)) for k, v in scalars.items()}
    summaries.log_scalars(step, scalars)
    if self.events:
      self.events.write_scalars(step, scalars)
    self.metrics.update(scalars)
    self.step = step
    if 'train/loss' in scalars:
      self.progress.loss_logged(step, scalars['train/loss'])
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
    if self.speed:
      results['speed'] = self.speed
    if self.is_main:
      write_json(os.path.join(self.workdir, RESULTS_FILE), results)
    return results

  def close(self) -> None:
    self.progress.close()  # The progress line gets its newline.
    for handler in logging.getLogger().handlers if self._clear_filter else ():
      handler.removeFilter(self._clear_filter)
    if self.events:
      self.events.close()


def format_results(results: Mapping[str, Any]) -> str:
  """The results as a two-column table for the console."""
  rows = [('status', results['status']), ('step', f"{results['step']} / {results['num_training_steps']}"),
          ('wall time', f"{results['wall_time_s']:.1f} s")]
  if results.get('speed'):
    rows.append(('train speed', f"{results['speed']['steps_per_s']:g} steps/s, "
                                f"{results['speed']['clips_per_s']:g} clips/s"))
  rows += [(k, f'{v:.4f}' if isinstance(v, float) else str(v)) for k, v in sorted(results['metrics'].items())]
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'{k:<{width}}  {v}' for k, v in rows)


def format_locations(workdir: str) -> str:
  """Where a run's outputs are (those that exist): checkpoints (with their steps), TensorBoard events,
  metrics.jsonl, results.json and config.json, as a two-column table for the console."""
  rows = []
  checkpoints = os.path.join(workdir, CHECKPOINT_DIR)
  steps = sorted(int(n) for n in os.listdir(checkpoints) if n.isdigit()) if os.path.isdir(checkpoints) else []
  if steps:
    rows.append(('checkpoints', f"{checkpoints} (steps {', '.join(map(str, steps))})"))
  if glob.glob(os.path.join(glob.escape(workdir), 'events.out.tfevents.*')):
    rows.append(('TensorBoard', f'{workdir} (tensorboard --logdir {workdir})'))
  for name in (HISTORY_FILE, RESULTS_FILE, CONFIG_FILE):
    if os.path.isfile(os.path.join(workdir, name)):
      rows.append((name, os.path.join(workdir, name)))
  if not rows:
    return f'nothing written in {workdir}'
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'{k:<{width}}  {v}' for k, v in rows)
