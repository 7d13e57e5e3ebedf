"""`vivit-ablation --cost_only`: the params and GFLOPs table always comes first, and a step is timed only at a
batch that fits this machine's memory (vivit_jax/experiments/benchmarks/fit.py), saying which and why."""

import csv
import json
import os

import jax
import pytest

from tests import paths
from vivit_jax.cli import ablation as ablation_cli
from vivit_jax.config import load_config
from vivit_jax.experiments.ablation import spec as spec_lib
from vivit_jax.experiments.ablation import sweep as sweep_lib
from vivit_jax.experiments.benchmarks import fit

ROOT = str(paths.ROOT)
TINY = os.path.join(ROOT, 'configs', 'ablations', 'synthetic_variants.py') + ':tiny'
ENTRY = 'model2_factorised_encoder'


def _cost_only(workdir, capsys, *flags):
  assert ablation_cli.main([f'--config={TINY}', f'--workdir={workdir}', '--cost_only', f'--only={ENTRY}',
                            *flags]) == 0
  with open(os.path.join(workdir, ENTRY, sweep_lib.COST_FILE)) as f:
    return capsys.readouterr().out, json.load(f)


class FakeStep:
  """A compiled step that needs 1 GiB per clip and takes half a second (the real one: the README test below)."""

  def __init__(self, config):
    self.config = config

  def bytes_needed(self):
    return self.config.batch_size * 2**30

  def seconds(self, num_steps, warmup):
    assert (num_steps, warmup) == (1, 0)
    return 0.5


def test_a_batch_that_does_not_fit_is_shrunk_and_the_output_says_so(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(fit, 'CompiledTrainStep', FakeStep)
  monkeypatch.setattr(fit, 'memory_budget', lambda: (15 * 2**30, 'a test budget'))
  out, cost = _cost_only(tmp_path, capsys, '--time_steps=1')
  assert cost['timing_batch_size'] == 8 and cost['step_time_s'] == 0.5  # One clip on each of the 8 devices.
  assert out.index('entry') < out.index(f'{ENTRY}  ') < out.index(
      f'{ENTRY}: timed at batch 8 of 16: batch 16 needs 16.0 GiB, more than a test budget, 0.5 s per step'), out
  assert f"{cost['params']:,}" in out.split('\n')[1]


def test_no_batch_that_fits_means_no_timing_and_the_table_all_the_same(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(fit, 'CompiledTrainStep', FakeStep)
  monkeypatch.setattr(fit, 'memory_budget', lambda: (2**29, 'a test budget'))
  out, cost = _cost_only(tmp_path, capsys, '--time_steps=1')
  assert cost['step_time_s'] is None and cost['timing_batch_size'] is None and cost['params'] > 0
  assert (f'{ENTRY}: not timed: batch 16 needs 16.0 GiB and batch 8 needs 8.0 GiB, more than a test budget\n'
          in out)
  assert out.index('entry') < out.index('not timed')
  with open(os.path.join(tmp_path, 'ablation.csv')) as f:
    (row,) = list(csv.DictReader(f))
  assert row['step_time_s'] == '' and row['params'] == str(cost['params'])


def test_a_step_that_fails_on_the_device_all_the_same_is_reported_not_raised(monkeypatch):
  class OutOfMemory(FakeStep):
    def seconds(self, num_steps, warmup):
      raise jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory allocating 123 bytes.\nmore detail')

  monkeypatch.setattr(fit, 'CompiledTrainStep', OutOfMemory)
  config = load_config(TINY)
  result = fit.time_train_steps_that_fit(config, 1, budget=(2**40, 'a test budget'))
  assert result == {'step_time_s': None, 'timing_batch_size': None,
                    'timing_note': 'not timed: batch 16: RESOURCE_EXHAUSTED: Out of memory allocating 123 bytes.'}


def test_without_timed_steps_only_the_counts_are_printed(tmp_path, capsys):
  out, cost = _cost_only(tmp_path, capsys, '--time_steps=0')
  assert set(cost) == {'params', 'gflops'} and 'Timing' not in out
  assert out.splitlines()[0].split() == ['entry', 'params', 'GFLOPs']  # No paper numbers in this sweep.


def test_the_readme_s_cost_command_prints_the_table_when_vivit_b_fits_nowhere(tmp_path, capsys, monkeypatch):
  """The README's command on ViViT-B (one layer, to compile quickly): a batch of 64 needs far more than the
  machine; the table comes all the same, with the paper's numbers beside ours."""
  monkeypatch.chdir(ROOT)
  monkeypatch.setattr(fit, 'memory_budget', lambda: (2**30, '1 GiB (a test budget)'))
  assert ablation_cli.main(['--config=configs/ablations/model_variants.py', f'--workdir={tmp_path}', '--cost_only',
                            '--only=model1_spatiotemporal', '--time_steps=1', '--config.model.num_layers=1']) == 0
  out = capsys.readouterr().out
  header, row = out.splitlines()[:2]
  assert header.split() == ['entry', 'params', 'GFLOPs', 'paper', 'params', 'paper', 'GFLOPs']
  assert row.split()[0] == 'model1_spatiotemporal' and row.split()[-2:] == ['88,954,000', '455.2']
  assert 'model1_spatiotemporal: not timed: batch 64 needs ' in out and 'more than 1 GiB (a test budget)' in out


@pytest.mark.parametrize('batch, needed, budget, quantum, expected', [
    (64, 1244, 15, 1, 1), (64, 200, 100, 8, 32), (16, 100, 99, 8, 8), (8, 100, 50, 8, None), (1, 10, 5, 1, None),
    (64, 100, 99, 1, 63)])
def test_a_smaller_batch_is_a_multiple_of_the_devices_below_the_last(batch, needed, budget, quantum, expected):
  assert fit._smaller_batch(batch, needed, budget, quantum) == expected  # pylint: disable=protected-access


def test_the_budget_on_cpu_is_part_of_the_free_host_memory():
  budget, where = fit.memory_budget()
  free = fit.host_free_bytes()
  assert free > 0 and 0 < budget <= free and 'free host memory' in where
