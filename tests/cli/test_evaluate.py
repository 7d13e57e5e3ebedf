"""vivit-evaluate (scripts/evaluate.py) end to end: a tiny synthetic run trained for two steps, then evaluated from
its workdir; and the files it writes."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import paths
from tests.train_testing import train_config
from vivit_jax import tasks, train
from vivit_jax.cli import evaluate as evaluation
from vivit_jax.eval import evaluators as evaluate
from vivit_jax.eval import outputs
from vivit_jax.checkpoints import CheckpointError
from vivit_jax.config import ConfigError
from vivit_jax.data import Views

CONFIG_FILE = '''
from tests.train_testing import train_config


def get_config():
  return train_config({kind!r})
'''


def write_config(directory, kind):
  path = os.path.join(directory, f'{kind}.py')
  with open(path, 'w') as f:
    f.write(CONFIG_FILE.format(kind=kind))
  return path


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(workdir, config file, results.json) of a tiny spacetime model trained for two steps."""
  root = tmp_path_factory.mktemp('evaluation')
  workdir = str(root / 'run')
  _, results = train.train(train_config('spacetime'), workdir)
  return workdir, write_config(str(root), 'spacetime'), results


def read_csv(path):
  with open(path) as f:
    return list(csv.reader(f))


def test_evaluates_single_and_multi_view_and_writes_every_file(trained, tmp_path, capsys):
  workdir, config_file, results = trained
  output = str(tmp_path / 'out' / 'eval.json')
  status = evaluation.main([f'--config={config_file}', f'--checkpoint={workdir}', '--split=validation',
                            '--views=2x3', '--batch_size=5', f'--output={output}',
                            '--config.eval_max_views_per_batch=16'])
  assert status == 0
  summary = json.load(open(output))
  m = summary['metrics']
  assert (m['single_view/num_videos'], m['single_view/num_views']) == (20, 20)
  assert (m['multi_view/num_videos'], m['multi_view/num_views']) == (20, 20 * 6)
  assert summary['num_videos'] == 20 and summary['views'] == '2x3'
  assert summary['batch_size'] == {'single_view': 8, 'multi_view': 8}  # 5 rounded up for the 8 devices
  assert summary['batch_size_requested'] == {'single_view': 5, 'multi_view': 5}
  assert summary['checkpoint'] == workdir and summary['config'] == config_file
  # The single-view pass agrees with the trainer's own validation pass on the same params.
  assert m['single_view/accuracy'] == pytest.approx(results['metrics']['valid/accuracy'], abs=1e-6)
  assert m['single_view/loss'] == pytest.approx(results['metrics']['valid/loss'], rel=1e-4)
  for key in ('accuracy', 'accuracy_top_5', 'loss', 'mean_per_class_accuracy', 'clips_per_s'):
    assert np.isfinite(m[f'multi_view/{key}'])
  rows = read_csv(str(tmp_path / 'out' / 'eval_per_class.csv'))
  assert rows[0] == ['class_index', 'name', 'videos', 'accuracy', 'single_view_accuracy']
  assert [r[0] for r in rows[1:]] == ['0', '1', '2', '3', '4'] and rows[1][1].startswith('direction_')
  assert sum(int(r[2]) for r in rows[1:]) == 20
  confusion_rows = read_csv(str(tmp_path / 'out' / 'eval_confusion.csv'))[1:]
  confusion = np.array([[int(v) for v in r[1:]] for r in confusion_rows])
  assert confusion.shape == (5, 5) and confusion.sum() == 20
  assert np.trace(confusion) / 20 == pytest.approx(m['multi_view/accuracy'])
  with Image.open(str(tmp_path / 'out' / 'eval_confusion.png')) as image:
    assert image.format == 'PNG' and min(image.size) >= 600
  table = capsys.readouterr().out
  assert 'mean_per_class_accuracy' in table and 'multi view 2x3 (logits)' in table


def test_saved_config_overrides_and_softmax_on_the_test_split(trained, tmp_path, capsys):
  workdir, _, _ = trained
  output = str(tmp_path / 'test.json')
  status = evaluation.main([f'--checkpoint={workdir}', '--views=1x1', '--aggregation=softmax',
                            '--config.dataset_configs.examples_per_subset.test=11', f'--output={output}'])
  assert status == 0
  # No --split: the config names test data, so the test split.
  assert "No --split given: evaluating 'test' (the config has test data)" in capsys.readouterr().out
  summary = json.load(open(output))
  assert summary['split'] == 'test'
  m = summary['metrics']
  assert (m['multi_view/num_videos'], m['multi_view/num_views']) == (11, 11)
  # One view, the centre clip: the multi-view pass is the single-view pass.
  assert m['multi_view/accuracy'] == pytest.approx(m['single_view/accuracy'])
  assert m['multi_view/loss'] == pytest.approx(m['single_view/loss'], rel=1e-4)


def test_without_test_data_the_validation_split_is_evaluated_and_label_map_names_every_output(
    trained, tmp_path, capsys, monkeypatch):
  """No --split and no test data: 'validation', said on the console and in the default output name; the
  --label_map names reach the per-class CSV, the confusion CSV and the PNG's axes."""
  workdir, _, _ = trained
  names = [f'moves {d} across the frame' for d in ('north', 'east', 'south', 'west', 'north-east')]
  label_map = tmp_path / 'label_map.json'
  label_map.write_text(json.dumps({'names': names}))
  figures = []
  save = outputs.plots.save_figure
  monkeypatch.setattr(outputs.plots, 'save_figure', lambda fig, path: figures.append(fig) or save(fig, path))
  monkeypatch.chdir(tmp_path)
  assert evaluation.main([f'--checkpoint={workdir}', '--views=1x1', f'--label_map={label_map}']) == 0
  out = capsys.readouterr().out
  assert "No --split given: evaluating 'validation' (the config names no test data)" in out
  assert 'Results in eval_validation.json' in out
  assert json.load(open(tmp_path / 'eval_validation.json'))['split'] == 'validation'
  assert [r[1] for r in read_csv(str(tmp_path / 'eval_validation_per_class.csv'))[1:]] == names
  confusion = read_csv(str(tmp_path / 'eval_validation_confusion.csv'))
  assert confusion[0][1:] == names and [r[0] for r in confusion[1:]] == names
  (fig,) = figures
  heat = fig.axes[0]
  assert [t.get_text() for t in heat.get_xticklabels()] == names
  assert [t.get_text() for t in heat.get_yticklabels()] == names
  assert heat.get_title() == "Confusion matrix: 'validation', 1x1 views (logits), 20 videos"
  assert sum(int(t.get_text()) for t in heat.texts) == 20  # The counts of every video, in the cells.
  with Image.open(tmp_path / 'eval_validation_confusion.png') as image:
    assert min(image.size) >= 600


def test_a_checkpoint_of_another_model_is_an_error_naming_the_paths(trained, tmp_path, capsys):
  workdir, _, _ = trained
  other = write_config(str(tmp_path), 'factorized_encoder')
  with pytest.raises(CheckpointError, match='do not fit the model') as error:
    evaluate.evaluate_checkpoint(workdir, other, split='validation', views=Views(2, 1))
  assert 'SpatialTransformer' in str(error.value) or 'spatial' in str(error.value).lower()
  assert evaluation.main([f'--config={other}', f'--checkpoint={workdir}', '--split=validation',
                          f'--output={tmp_path / "x.json"}']) == 2
  assert 'do not fit the model' in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'x.json')


def test_an_unknown_split_is_one_line_naming_the_closest(trained, tmp_path, capsys):
  workdir, _, _ = trained
  output = tmp_path / 'x.json'
  assert evaluation.main([f'--checkpoint={workdir}', '--split=valdation', f'--output={output}']) == 2
  err = capsys.readouterr().err
  assert "error: split 'valdation': the config names no data for it; did you mean 'validation'?" in err
  assert "(its splits: ['train', 'validation'])" in err and 'Traceback' not in err
  assert not output.exists()


def test_views_that_cannot_fit_in_memory_are_refused_before_reading(trained, tmp_path, capsys, monkeypatch):
  workdir, _, _ = trained
  monkeypatch.setattr(evaluate, 'check_data', lambda *a, **k: pytest.fail('read the data'))
  monkeypatch.setattr(evaluate, 'host_memory_bytes', lambda: 8 * 2**30)
  assert evaluation.main([f'--checkpoint={workdir}', '--views=100000x3', '--split=validation',
                          f'--output={tmp_path / "x.json"}']) == 2
  err = capsys.readouterr().err
  assert 'error: 100000x3 views (300000 clips per video) of ' in err and 'GiB of host memory as float32' in err
  assert 'more than the 8.0 GiB here; ask for fewer views or a smaller --batch_size' in err
  monkeypatch.setattr(evaluate, 'host_memory_bytes', lambda: 2**14)  # 16 KiB: even two views do not fit.
  with pytest.raises(ConfigError, match=r'2x1 views \(2 clips per video\)'):
    evaluate.evaluate_checkpoint(workdir, split='validation', views=Views(2, 1))


def test_views_flag_sets_clips_and_crops():
  assert evaluation.parse_views('4x3') == Views(4, 3) and evaluation.parse_views('4x1') == Views(4, 1)
  for bad in ('4x2', '0x3', '4', 'x3'):
    with pytest.raises(ConfigError, match='CLIPSxCROPS'):
      evaluation.parse_views(bad)


def test_the_script_runs_as_a_program():
  script = str(paths.ROOT / 'scripts' / 'evaluate.py')
  done = subprocess.run([sys.executable, script, '--help'], capture_output=True, text=True, timeout=120)
  assert done.returncode == 0 and '--checkpoint' in done.stdout and '--views' in done.stdout


def test_multi_head_models_write_files_per_head(tmp_path):
  heads = {'noun': (0, 3), 'verb': (3, 5)}
  confusion = {'noun': np.eye(3) * 2, 'verb': np.array([[1.0, 1.0], [0.0, 4.0]])}
  passes = {p: evaluate.Evaluation({f'{p}/action/accuracy': 0.5}, confusion) for p in ('single_view', 'multi_view')}
  task = tasks.Task(tasks.MULTIHEAD, tuple(tasks.Head(name, a, b) for name, (a, b) in heads.items()))
  summary = {'checkpoint': 'ckpt', 'split': 'test', 'views': '4x3', 'aggregation': 'logits',
             'metrics': {'multi_view/action/accuracy': 0.5}}
  names = ['pan', 'knife', 'cup', 'take', 'wash']
  files = outputs.write_outputs(summary, passes, task, str(tmp_path / 'epic.json'), names)
  rows = read_csv(str(tmp_path / 'epic_verb_per_class.csv'))
  assert rows[1:] == [['0', 'take', '2', '0.500000', '0.500000'], ['1', 'wash', '4', '1.000000', '1.000000']]
  assert read_csv(str(tmp_path / 'epic_noun_confusion.csv'))[0] == ['true \\ predicted', 'pan', 'knife', 'cup']
  with Image.open(str(tmp_path / 'epic_noun_confusion.png')) as image:
    assert min(image.size) >= 600
  assert json.load(open(tmp_path / 'epic.json'))['files'] == files
  assert 'action/accuracy' in outputs.format_table(summary)


TIMING = {'clips_per_s', 'wall_s'}


def _by_name(metrics, prefix):
  return {k[len(prefix) + 1:]: v for k, v in metrics.items() if k.startswith(prefix + '/')}


@pytest.mark.parametrize('model_name,overrides,expected', [
    ('vivit_classification', None, {'mean_per_class_accuracy'}),
    ('vivit_multilabel_classification', {}, {'mAP', 'mean_per_class_accuracy'}),
    ('vivit_multihead_classification', dict(dataset_configs__class_splits=(2, 3),
                                            dataset_configs__split_names=('noun', 'verb')),
     {'action/accuracy', 'action/accuracy_top_5', 'noun/accuracy', 'verb/mean_per_class_accuracy'}),
])
def test_training_validation_equals_evaluate_with_one_view(trained, model_name, overrides, expected, tmp_path):
  """The trainer's valid/... and vivit-evaluate --views=1x1 on the same checkpoint and split: one path, the same
  metric set and the same values."""
  if overrides is None:
    workdir, _, results = trained
  else:
    workdir = str(tmp_path / 'run')
    results = train.train_and_evaluate(train_config('spacetime', model_name=model_name, **overrides), workdir)
  output = str(tmp_path / 'eval.json')
  assert evaluation.main([f'--checkpoint={workdir}', '--split=validation', '--views=1x1', '--batch_size=16',
                          f'--output={output}']) == 0
  evaluated = _by_name(json.load(open(output))['metrics'], 'multi_view')
  during_training = _by_name(results['metrics'], 'valid')
  assert set(evaluated) == set(during_training) and expected <= set(evaluated)
  for name in sorted(set(evaluated) - TIMING):
    assert evaluated[name] == pytest.approx(during_training[name], rel=1e-5, abs=1e-6), name
