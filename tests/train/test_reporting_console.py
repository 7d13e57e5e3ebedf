"""vivit_jax/train/reporting.py, what a person sees: progress as one updating line on a terminal and a line per
`log_summary_steps` in a log, an ETA to the second, the parameter table only for a fresh run (or --verbose),
and where a run's outputs are."""

import io
import logging
import os

import jax
import jax.numpy as jnp
import pytest

from tests.train_testing import train_config
from vivit_jax.train import reporting


class Terminal(io.StringIO):
  """A stream that says it is a terminal."""

  def isatty(self):
    return True


class Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def _run(progress, clock, steps, seconds_per_step, losses=None):
  """Ticks `steps`, as the trainer does, logging the loss at the steps in `losses`."""
  for step in steps:
    clock.now += seconds_per_step
    progress.tick(step)
    if losses and step in losses:
      progress.loss_logged(step, losses[step])


@pytest.mark.parametrize('seconds, text', [(0.4, '0 s'), (42.4, '42 s'), (112, '1 min 52 s'), (3599, '59 min 59 s'),
                                           (3 * 3600 + 5 * 60 + 9, '3 h 05 min')])
def test_durations_are_given_to_the_second_below_an_hour(seconds, text):
  assert reporting.format_seconds(seconds) == text


def test_on_a_terminal_progress_is_one_line_rewritten_in_place_ending_with_a_newline():
  terminal, clock = Terminal(), Clock()
  progress = reporting.Progress(num_steps=1500, start_step=0, every_steps=100, stream=terminal, clock=clock)
  assert progress.tty
  _run(progress, clock, range(1, 121), 0.5, {100: 0.8123})  # 2 steps/s, one redraw per step (0.25 s apart).
  shown = terminal.getvalue()
  assert '\n' not in shown and shown.count('\r') >= 120
  last = shown.rsplit('\r', 1)[-1]
  assert last == 'step 120/1500  2.00 steps/s  ETA 11 min 30 s  loss 0.8123\x1b[K'
  progress.close()
  assert terminal.getvalue().endswith('step 120/1500  2.00 steps/s  ETA 11 min 30 s  loss 0.8123\x1b[K\n')


def test_a_terminal_line_is_cleared_before_another_log_line_and_not_redrawn_over_it():
  terminal, clock = Terminal(), Clock()
  progress = reporting.Progress(num_steps=10, start_step=0, every_steps=5, stream=terminal, clock=clock)
  _run(progress, clock, [1, 2], 1.0)
  progress.clear()  # What the logging filter does before a record is written.
  assert terminal.getvalue().endswith('\r\x1b[K')
  progress.loss_logged(2, 1.5)  # Within redraw_s of the clearing: the log line is being written, no redraw.
  assert terminal.getvalue().endswith('\r\x1b[K')
  _run(progress, clock, [3], 1.0)
  assert terminal.getvalue().endswith('step 3/10  1.00 steps/s  ETA 7 s  loss 1.5000\x1b[K')


def test_in_a_log_progress_is_a_line_per_summary_with_that_summary_s_loss(caplog):
  stream, clock = io.StringIO(), Clock()  # Not a terminal: nothing is written to the stream itself.
  progress = reporting.Progress(num_steps=25, start_step=0, every_steps=10, stream=stream, clock=clock)
  assert not progress.tty
  with caplog.at_level(logging.INFO):
    _run(progress, clock, range(1, 26), 0.125, {10: 2.5, 20: 1.25})
    progress.close()  # Step 25's loss was never logged: its line is written without it.
  lines = [r.getMessage() for r in caplog.records]
  assert lines == ['step 10/25  8.00 steps/s  ETA 2 s  loss 2.5000',
                   'step 20/25  8.00 steps/s  ETA 1 s  loss 1.2500',
                   'step 25/25  8.00 steps/s  ETA 0 s  loss 1.2500']
  assert stream.getvalue() == ''


def test_the_rate_is_over_the_last_summary_window_and_resumes_count_from_the_start_step():
  clock = Clock()
  progress = reporting.Progress(num_steps=1000, start_step=500, every_steps=10, stream=io.StringIO(), clock=clock)
  assert progress.rate() is None and progress.line() == 'step 500/1000'
  _run(progress, clock, range(501, 511), 30.0)  # A slow start (compilation) ...
  _run(progress, clock, range(511, 521), 0.5)  # ... forgotten after one window.
  assert progress.rate() == pytest.approx(2.0)
  assert progress.line() == 'step 520/1000  2.00 steps/s  ETA 4 min 00 s'


def _reporter(tmp_path, start_step, **overrides):
  config = train_config('spacetime', **overrides)
  return reporting.Reporter(str(tmp_path), config, num_steps=4, start_step=start_step, stream=io.StringIO())


PARAMS = {'dense': {'kernel': jax.ShapeDtypeStruct((3, 4), jnp.float32),
                    'bias': jax.ShapeDtypeStruct((4,), jnp.float32)}}


def test_the_parameter_table_is_for_a_fresh_run_or_verbose_only(tmp_path, caplog, monkeypatch):
  monkeypatch.delenv(reporting.VERBOSE_ENV, raising=False)
  for start, verbose, table in ((0, False, True), (2, False, False), (2, True, True)):
    if verbose:
      monkeypatch.setenv(reporting.VERBOSE_ENV, '1')
    reporter = _reporter(tmp_path, start)
    caplog.clear()
    with caplog.at_level(logging.INFO):
      reporter.log_parameters(PARAMS)
    reporter.close()
    text = '\n'.join(r.getMessage() for r in caplog.records)
    assert ('dense/kernel' in text) == table, (start, verbose)
    assert table or text == 'Parameters: 16 (resuming at step 2; --verbose prints their table)'


def test_the_end_of_a_run_says_where_its_outputs_are(tmp_path):
  workdir = str(tmp_path / 'run')
  assert reporting.format_locations(workdir) == f'nothing written in {workdir}'
  reporter = _reporter(workdir, 0)
  reporter.tick(1)
  reporter.write(1, {'train/loss': 2.0})
  reporter.close()
  for step in ('2', '4', '4.orbax-checkpoint-tmp-1'):
    os.makedirs(os.path.join(workdir, 'checkpoints', step))
  lines = reporting.format_locations(workdir).splitlines()
  assert lines == [f'checkpoints    {workdir}/checkpoints (steps 2, 4)',
                   f'TensorBoard    {workdir} (tensorboard --logdir {workdir})',
                   f'metrics.jsonl  {workdir}/metrics.jsonl',
                   f'results.json   {workdir}/results.json',
                   f'config.json    {workdir}/config.json']


def test_a_reporter_on_a_terminal_clears_its_line_for_log_records_and_ends_it_when_closed(tmp_path):
  terminal, log = Terminal(), io.StringIO()
  handler = logging.StreamHandler(log)
  logging.getLogger().addHandler(handler)
  try:
    reporter = reporting.Reporter(str(tmp_path), train_config('spacetime'), num_steps=4, start_step=0,
                                  stream=terminal)
    reporter.tick(1)
    assert terminal.getvalue().startswith('\rstep 1/4  ') and '\n' not in terminal.getvalue()
    logging.getLogger().warning('something else')
    assert terminal.getvalue().endswith('\r\x1b[K') and log.getvalue() == 'something else\n'
    reporter.close()
    assert handler.filters == [] and terminal.getvalue().endswith('\x1b[K\n')
    assert terminal.getvalue().rsplit('\r', 1)[-1].startswith('step 1/4  ')
  finally:
    logging.getLogger().removeHandler(handler)
