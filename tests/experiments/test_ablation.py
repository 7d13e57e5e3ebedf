"""configs/ablations/ and the ablation runner: every sweep validates; a tiny sweep runs, skips, prints, reports."""

import csv
import glob
import json
import os
import shlex
import shutil

import pytest
from PIL import Image

from tests import paths
from vivit_jax import train
from vivit_jax.cli import ablation as ablation_cli
from vivit_jax.experiments.ablation import report as report_lib
from vivit_jax.experiments.ablation import spec as spec_lib
from vivit_jax.experiments.ablation import sweep as sweep_lib
from vivit_jax.train import reporting
from vivit_jax.config import ConfigError, load_config, split_config_overrides

ROOT = str(paths.ROOT)
ABLATION_FILES = sorted(f for f in glob.glob(os.path.join(ROOT, 'configs', 'ablations', '*.py'))
                        if not f.endswith('__init__.py'))
SPECS = [os.path.relpath(f, ROOT) for f in ABLATION_FILES] + ['configs/ablations/regularisers.py:ssv2']
TINY = os.path.join(ROOT, 'configs', 'ablations', 'synthetic_variants.py') + ':tiny'
TWO = ['model1_spatiotemporal', 'average_pool_baseline']


def test_every_paper_ablation_has_a_file():
  names = {os.path.basename(f)[:-3] for f in ABLATION_FILES}
  assert names >= {'model_variants', 'input_encoding', 'temporal_layers', 'regularisers', 'tubelet_size',
                   'frames_and_views', 'backbone_size', 'synthetic_variants'}


@pytest.mark.parametrize('spec', SPECS)
def test_every_sweep_entry_validates(spec, monkeypatch):
  monkeypatch.chdir(ROOT)
  sweep = spec_lib.load_ablation(spec)
  assert sweep.entries
  base = load_config(spec)
  with open(spec.partition(':')[0]) as f:
    assert 'python scripts/run_ablation.py --config=configs/ablations/' in f.read()
  seen = []
  for entry in sweep.entries:
    config = sweep_lib.entry_config(sweep, entry)
    assert config.to_dict() not in seen, f'{entry.name} repeats an earlier entry'
    seen.append(config.to_dict())
    assert config.experiment_name == base.experiment_name
    assert sweep_lib.entry_config(sweep, entry, dataset='synthetic').dataset_name == 'synthetic'
    assert set(entry.paper) <= {'top1', 'gflops', 'params', 'tpu_v3_ms'}


def test_paper_numbers_match_paper_md():
  variants = spec_lib.load_ablation(os.path.join(ROOT, 'configs/ablations/model_variants.py'))
  rows = {e.name: e.paper for e in variants.entries}
  assert rows['model1_spatiotemporal'] == dict(top1=80.0, gflops=455.2, params=88_954_000, tpu_v3_ms=58.9)
  lt = spec_lib.load_ablation(os.path.join(ROOT, 'configs/ablations/temporal_layers.py'))
  assert [e.paper['top1'] for e in lt.entries] == [75.8, 78.6, 78.8, 78.8, 78.9]
  reg = spec_lib.load_ablation(os.path.join(ROOT, 'configs/ablations/regularisers.py'))
  assert [e.paper['top1'] for e in reg.entries] == [39.6, 40.2, 41.1, 43.1, 43.7]
  assert len(reg.entries[-1].overrides) == 5  # Cumulative: the last entry holds every regulariser.


def test_bad_sweeps_are_reported(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text("from vivit_jax.config import import_config_file\n"
                 f"synthetic = import_config_file({os.path.join(ROOT, 'configs', 'synthetic.py')!r})\n"
                 "get_config = synthetic.get_config\n"
                 "SWEEP = [dict(name='a', overrides=['model.hiden_size=8'])]\n")
  sweep = spec_lib.load_ablation(str(bad))
  with pytest.raises(ConfigError, match="sweep entry 'a'.*model.hidden_size"):
    sweep_lib.entry_config(sweep, sweep.entries[0])
  with pytest.raises(ConfigError, match="no sweep entries \\['b'\\]"):
    spec_lib.select(sweep, ['b'])
  bad.write_text("SWEEP = [dict(name='a'), dict(name='a')]\n")
  with pytest.raises(ConfigError, match='repeat'):
    spec_lib.load_ablation(str(bad))


@pytest.fixture(scope='module')
def tiny_runs(tmp_path_factory):
  """Two entries of the tiny synthetic sweep, trained for real (2 steps each)."""
  workdir = str(tmp_path_factory.mktemp('ablation'))
  assert ablation_cli.main([f'--config={TINY}', f'--workdir={workdir}', f'--only={",".join(TWO)}']) == 0
  return workdir


def test_runs_happen_and_report_is_written(tiny_runs):
  for name in TWO:
    results = reporting.read_results(os.path.join(tiny_runs, name))
    assert results['status'] == 'completed' and results['step'] == 2
  with open(os.path.join(tiny_runs, 'ablation.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [r['name'] for r in rows] == TWO
  for row in rows:
    assert row['status'] == 'completed' and int(row['params']) > 0 and float(row['gflops']) > 0
    assert row['step_time_source'] == 'run' and float(row['step_time_s']) > 0
    assert 0.0 <= float(row['valid/accuracy']) <= 1.0
  config = load_config(TINY, ['model.attention_config.spatial_only_baseline=True'])
  from vivit_jax.models import complexity  # pylint: disable=g-import-not-at-top
  assert int(rows[1]['params']) == complexity.summarize(config)['params']
  with open(os.path.join(tiny_runs, 'ablation.md')) as f:
    text = f.read()
  assert text.count('\n| model1_spatiotemporal |') == 1 and '| average_pool_baseline |' in text
  # The learning curves: valid/accuracy at steps 2 (the tiny preset evaluates every 2 steps), one column per run.
  curves = text.split('## valid/accuracy (%) by training step')[1]
  assert f'| step | {TWO[0]} | {TWO[1]} |' in curves
  accuracy = reporting.read_results(os.path.join(tiny_runs, TWO[0]))['metrics']['valid/accuracy']
  assert f'| 2 | {100 * accuracy:.1f} |' in curves
  with Image.open(os.path.join(tiny_runs, 'ablation.png')) as image:  # What it shows: test_ablation_report.py.
    assert image.format == 'PNG' and min(image.size) >= 600


def test_finished_runs_are_skipped(tiny_runs, monkeypatch):
  calls = []
  monkeypatch.setattr(sweep_lib, 'train_and_evaluate', lambda config, workdir: calls.append(workdir))
  outcome = sweep_lib.run_sweep(spec_lib.load_ablation(TINY), tiny_runs, only=TWO)
  assert outcome == {name: 'skipped' for name in TWO} and not calls


def test_unfinished_runs_resume(tiny_runs, tmp_path, monkeypatch):
  workdir = str(tmp_path)
  shutil.copytree(os.path.join(tiny_runs, TWO[0]), os.path.join(workdir, TWO[0]))
  results_path = os.path.join(workdir, TWO[0], reporting.RESULTS_FILE)
  results = reporting.read_results(os.path.join(workdir, TWO[0]))
  reporting.write_json(results_path, dict(results, status='preempted'))
  calls = []
  monkeypatch.setattr(sweep_lib, 'train_and_evaluate',
                      lambda config, wd: calls.append((wd, config.model.attention_config.type)) or
                      {'status': 'completed'})
  sweep_lib.run_sweep(spec_lib.load_ablation(TINY), workdir, only=TWO)
  assert calls == [(os.path.join(workdir, TWO[0]), 'spacetime'),
                   (os.path.join(workdir, TWO[1]), 'factorized_encoder')]


def test_collect_on_partial_results(tiny_runs, tmp_path):
  workdir = str(tmp_path)
  shutil.copytree(os.path.join(tiny_runs, TWO[0]), os.path.join(workdir, TWO[0]))
  paths = report_lib.collect(spec_lib.load_ablation(TINY), workdir)
  with open(paths['csv']) as f:
    rows = {r['name']: r for r in csv.DictReader(f)}
  assert len(rows) == 5
  assert rows[TWO[0]]['valid/accuracy'] != '' and rows[TWO[0]]['status'] == 'completed'
  not_run = rows['model3_factorised_self_attention']
  assert not_run['status'] == 'not run' and not_run['valid/accuracy'] == '' and not_run['step_time_s'] == ''
  assert int(not_run['params']) > 0 and float(not_run['gflops']) > 0  # Cost needs no run.
  assert os.path.exists(paths['png']) and '| model4_factorised_dot_product | not run |' in open(paths['md']).read()


def test_print_commands_parse_back(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(ROOT)
  spec = 'configs/ablations/tubelet_size.py'
  assert ablation_cli.main([f'--config={spec}', '--workdir=runs/x', '--print_commands', '--dataset=synthetic',
                        '--config.batch_size=32']) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  sweep = spec_lib.load_ablation(spec)
  assert len(lines) == len(sweep.entries)
  for line, entry in zip(lines, sweep.entries):
    argv = shlex.split(line)
    assert argv[:3] == ['python', '-m', 'vivit_jax.main']
    rest, overrides = split_config_overrides(argv[3:])
    assert rest == [f'--config={spec}', f'--workdir=runs/x/{entry.name}']
    config = load_config(spec, overrides)
    assert config == sweep_lib.entry_config(sweep, entry, 'synthetic', ['batch_size=32'])
    assert config.dataset_name == 'synthetic' and config.batch_size == 32
    assert config.model.patches.size[2] == int(entry.name[-1])


def test_cost_only_times_steps_without_training(tmp_path):
  workdir = str(tmp_path)
  assert ablation_cli.main([f'--config={TINY}', f'--workdir={workdir}', '--cost_only', '--time_steps=2',
                        '--only=model2_factorised_encoder']) == 0
  assert not os.path.exists(os.path.join(workdir, 'model2_factorised_encoder', reporting.RESULTS_FILE))
  with open(os.path.join(workdir, 'model2_factorised_encoder', sweep_lib.COST_FILE)) as f:
    cost = json.load(f)
  assert cost['params'] > 0 and cost['step_time_s'] > 0 and cost['timing_batch_size'] == 16
  with open(os.path.join(workdir, 'ablation.csv')) as f:
    (row,) = list(csv.DictReader(f))
  assert row['step_time_source'] == 'timed' and row['status'] == 'not run'
