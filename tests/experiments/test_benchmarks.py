"""The benchmarks run (their numbers are printed by scripts/benchmark.py, never asserted)."""

import importlib.util
import json
import os
import subprocess
import sys

from tests import paths
from tests.tiny import tiny_config
from vivit_jax.experiments.benchmarks import data as benchmarks
from vivit_jax.experiments.benchmarks import gpu_check
from vivit_jax.experiments.benchmarks import model as model_benchmark

ROOT = str(paths.ROOT)
SYNTHETIC = os.path.join(ROOT, 'configs', 'synthetic.py')
_spec = importlib.util.spec_from_file_location('benchmark_script', os.path.join(ROOT, 'scripts', 'benchmark.py'))
benchmark_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark_script)


def test_data_benchmark_runs_on_tiny_videos(tmp_path):
  result = benchmarks.data_benchmark(str(tmp_path), num_videos=4, video_frames=12, height=48, width=64,
                                     batch_size=2, num_batches=1, num_frames=4, crop_size=32, min_resize=40)
  assert result['tfdata_clips_per_s'] > 0 and result['pyav_loop_clips_per_s'] > 0
  assert result['clip'] == '4x32x32'


def test_model_benchmark_times_both_implementations_of_the_same_function():
  config = tiny_config('spacetime', batch_size=8)
  result = model_benchmark.model_benchmark(config, steps=1, warmup=1)
  assert [run['implementation'].split()[0] for run in result['runs']] == ['vivit_jax', 'transformers']
  for run in result['runs']:
    assert run['forward_s'] > 0 and run['train_step_s'] > 0 and run['train_clips_per_s'] > 0
  assert result['max_abs_logit_diff_vs_hf_f32'] < 1e-4  # Same weights: the two timed models agree.
  assert result['batch_size'] == 8 and result['tokens'] == '65'
  text = model_benchmark.format_model_benchmark(result)
  assert 'train clips/s' in text and 'max |logit difference|' in text


def test_comparable_config_turns_off_what_only_we_have():
  config = tiny_config('factorized_encoder', model__stochastic_droplayer_rate=0.2, mixup__alpha=0.5,
                       ema_decay=0.99, optimizer='momentum')
  comparable = model_benchmark.comparable_config(config, batch_size=6)
  assert comparable.model.stochastic_droplayer_rate == 0.0 and comparable.mixup.alpha == 0.0
  assert comparable.ema_decay is None and comparable.optimizer == 'adamw' and comparable.batch_size == 6


def test_benchmark_script_times_other_variants_without_transformers(capsys):
  assert benchmark_script.main(['--model', f'--config={SYNTHETIC}:tiny', '--steps=1']) == 0
  captured = capsys.readouterr()
  assert 'transformers has no equivalent' in captured.err and 'vivit_jax' in captured.out
  assert 'factorized_encoder' in captured.out and 'transformers 5' not in captured.out


def test_gpu_check_compares_bfloat16_with_float32_for_every_variant(capsys):
  spec = importlib.util.spec_from_file_location('gpu_check', os.path.join(ROOT, 'scripts', 'gpu_check.py'))
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  assert script.main(['--frames=4', '--crop=32', '--layers=1', '--json']) == 0
  rows = json.loads(capsys.readouterr().out)
  assert [r['variant'] for r in rows] == list(gpu_check.VARIANTS)
  for row in rows:  # On CPU both runs use XLA attention: this checks the comparison, not cuDNN.
    assert row['attention'] == 'xla' and row['grad_cosine'] > 0.999
    assert 0 < row['max_abs_logit_diff'] < 0.05 * max(1.0, row['logit_scale'])


def test_the_model_benchmark_and_gpu_check_run_without_tensorflow():
  """GPU images often lack TensorFlow: only `--data` may import it (run in a fresh interpreter)."""
  code = ('import sys, runpy\n'
          'import vivit_jax.cli.benchmark, vivit_jax.cli.gpu_check\n'
          'assert "tensorflow" not in sys.modules, sorted(m for m in sys.modules if m.startswith("tensorflow"))\n'
          'sys.argv = ["gpu_check", "--help"]\n'
          'runpy.run_module("vivit_jax.cli.gpu_check", run_name="__main__")\n')
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0 and 'usage:' in done.stdout, done.stderr[-2000:]
