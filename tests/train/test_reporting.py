"""vivit_jax/train/reporting.py: the metrics history a run appends, read back by step."""

import json
import os

from tests.train_testing import train_config
from vivit_jax import train
from vivit_jax.train import reporting


def test_a_run_appends_every_summary_and_evaluation_to_the_history(tmp_path):
  workdir = str(tmp_path)
  results = train.train_and_evaluate(train_config('spacetime', log_eval_steps=1), workdir)
  history = reporting.read_history(workdir)
  assert [step for step, _ in history['train/loss']] == [1, 2]
  assert [step for step, _ in history['valid/accuracy']] == [1, 2]
  assert history['valid/accuracy'][-1][1] == results['metrics']['valid/accuracy']
  assert history['valid/num_videos'] == [(1, 20), (2, 20)]


def test_a_repeated_step_keeps_its_last_value_and_a_torn_line_is_skipped(tmp_path):
  lines = [{'step': 1, 'metrics': {'loss': 3.0}}, {'step': 2, 'metrics': {'loss': 2.0, 'acc': 0.1}},
           {'step': 2, 'metrics': {'loss': 1.5}}, {'step': 3, 'metrics': {'loss': 1.0}}]
  with open(os.path.join(tmp_path, reporting.HISTORY_FILE), 'w') as f:
    f.write(''.join(json.dumps(line) + '\n' for line in lines) + '{"step": 4, "metr')
  history = reporting.read_history(str(tmp_path))
  assert history == {'loss': [(1, 3.0), (2, 1.5), (3, 1.0)], 'acc': [(2, 0.1)]}
  assert reporting.read_history(str(tmp_path / 'nothing')) == {}
