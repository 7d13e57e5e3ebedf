"""The benchmarks run (their numbers are printed by scripts/benchmark.py, never asserted)."""

import glob
import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys
import types

import numpy as np

from tests import paths
from tests.tiny import tiny_config
from vivit_jax.experiments.benchmarks import data as benchmarks
from vivit_jax.experiments.benchmarks import gpu_check
from vivit_jax.experiments.benchmarks import mfu
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
  frames = sum(os.path.getsize(p) for p in tmp_path.glob('dmvr/train-*')) / (4 * 12)
  assert result['record_kb_per_frame'] == round(frames / 1000, 1) and 0.5 < result['record_kb_per_frame'] < 10


def test_the_data_benchmark_s_frames_are_as_large_as_a_photograph_s_at_the_same_jpeg_quality(tmp_path):
  """The README's pipeline estimate rests on this: JPEG decoding time grows with the file's size, and the
  benchmark's synthetic frames (through H.264 and back, as prepared) are not smaller than a photograph's
  (matplotlib's sample portrait; 31.8 against 25.9 KB) at the same size and quality. A plain background
  would make them a tenth as large (3.0 KB)."""
  import matplotlib.cbook  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from vivit_jax.data.ingest import video_io  # pylint: disable=g-import-not-at-top
  path, = benchmarks.make_videos(str(tmp_path), num_videos=1, frames=4, height=256, width=340)
  synthetic = np.mean([len(b) for b in video_io.encode_jpeg(video_io.decode_video(path), quality=90)])
  with matplotlib.cbook.get_sample_data('grace_hopper.jpg') as f:
    photo = np.asarray(Image.open(f).convert('RGB').resize((340, 256), Image.BILINEAR))
  photograph, = [len(b) for b in video_io.encode_jpeg(photo[None], quality=90)]
  assert 0.9 * photograph < synthetic < 2.0 * photograph, (synthetic, photograph)


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


def test_gpu_check_compares_bfloat16_with_float32_for_each_variant_asked_for(capsys):
  spec = importlib.util.spec_from_file_location('gpu_check', os.path.join(ROOT, 'scripts', 'gpu_check.py'))
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  from vivit_jax.cli import gpu_check as command  # pylint: disable=g-import-not-at-top
  assert command._parser().parse_args([]).variants == ','.join(gpu_check.VARIANTS)  # pylint: disable=protected-access
  # Two variants here (the next test runs Model 1): on a CPU this checks the comparison, not a GPU kernel.
  variants = ['factorized_encoder', 'factorized_self_attention_block']
  assert script.main(['--frames=4', '--crop=32', '--layers=1', '--json', f'--variants={",".join(variants)}']) == 0
  rows = json.loads(capsys.readouterr().out)
  assert [r['variant'] for r in rows] == variants
  for row in rows:  # On CPU the bfloat16 run's scores fit one chunk: this checks the comparison, not cuDNN.
    assert row['attention'] == 'einsum' and row['grad_cosine'] > 0.999
    assert 0 < row['max_abs_logit_diff'] < 0.05 * max(1.0, row['logit_scale'])


def test_gpu_check_config_overrides_change_the_bfloat16_model_and_misspelt_keys_are_named(capsys):
  spec = importlib.util.spec_from_file_location('gpu_check', os.path.join(ROOT, 'scripts', 'gpu_check.py'))
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  argv = ['--frames=4', '--crop=32', '--layers=1', '--variants=spacetime', '--json']
  # The masked path (one padding for all layers) with XLA's attention, through the one layer's full attention.
  masked = ['--config.model.attention_padding=once', '--config.model.attention_implementation=xla',
            '--config.model.last_block_class_token_only=False']
  assert script.main(argv + masked) == 0
  row, = json.loads(capsys.readouterr().out)
  assert row['attention'] == 'xla' and row['grad_cosine'] > 0.999 and row['max_abs_logit_diff'] < 0.05
  assert script.main(argv + ['--config.model.attention_paddin=once']) != 0
  assert "did you mean 'model.attention_padding'" in capsys.readouterr().err


def test_levers_leave_the_budget_s_last_seconds_to_the_gpu_check(monkeypatch):
  from vivit_jax.experiments.benchmarks import levers  # pylint: disable=g-import-not-at-top
  from vivit_jax.experiments.benchmarks import data  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(data, 'data_benchmark', lambda tmp, num_batches: {'tfdata_clips_per_s': 40.0, 'cpu_count': 2})
  calls, clock = [], [0.0]
  monkeypatch.setattr(levers, 'time', types.SimpleNamespace(monotonic=lambda: clock[0]))

  def child(args, xla_flags, timeout_s, cache_dir):
    del cache_dir
    calls.append((args[1], timeout_s))
    clock[0] += 25.0  # Each child takes 25 s.
    if args[1] == 'vivit_jax.cli.gpu_check':  # The masked path that 'auto' takes at 224 pixels, compiled quickly.
      assert '--config.model.attention_padding=once' in args and xla_flags == '--xla_gpu_autotune_level=0'
      return [{'variant': 'spacetime', 'attention': 'cudnn', 'logit_scale': 0.8, 'max_abs_logit_diff': 0.012,
               'grad_cosine': 0.99986}]
    return {'attention': 'cudnn', 'runs': [{'train_clips_per_s': 100.0, 'forward_s': float('nan'),
                                            'peak_memory_gb': 10.0, 'device': 'cpu'}]}
  monkeypatch.setattr(levers, '_child', child)
  lines = []
  plan = (('Model 1, a', 'a.py', (), '', 8), ('Model 1, b', 'a.py', (), '', 8))
  rows = levers.run_levers(steps=1, budget_s=150, plan=plan, log=lines.append, gpu_check_s=100, end_to_end=None)
  # 50 s for the rows: the first leaves 25, too few for the second; the gpu check gets the remaining 125.
  assert calls == [('vivit_jax.cli.benchmark', 50.0), ('vivit_jax.cli.gpu_check', 125.0)]
  assert rows[1]['error'] == 'not run: out of the time budget'
  assert rows[2]['name'] == 'bfloat16 vs float32, spacetime' and 'grad cosine 0.99986' in lines[1]


def test_a_config_s_later_rows_time_the_train_step_alone_with_their_overrides_and_xla_flags(monkeypatch, tmp_path):
  from vivit_jax.experiments.benchmarks import levers  # pylint: disable=g-import-not-at-top
  calls = []
  def child(args, xla_flags, timeout_s, cache_dir):
    calls.append((args, xla_flags, cache_dir))
    return {'error': 'not run here'}
  monkeypatch.setattr(levers, '_child', child)
  monkeypatch.setattr(levers, '_pipeline_row', lambda best: {'name': 'pipeline', 'error': 'not run here'})
  plan = (('Model 1', 'a.py', (), '', 8), ('Model 1, b', 'a.py', ('model.fused_qkv=False',), '--xla_foo=1', 16),
          ('Model 2', 'configs/b.py:tiny', (), '', 8))
  levers.run_levers(steps=1, plan=plan, log=lambda _: None, end_to_end=None, cache_dir=str(tmp_path),
                    profile_dir=str(tmp_path / 'prof'))
  (first, first_flags, _), (later, later_flags, cache), (other, _, _) = calls
  assert '--train_only' not in first and first_flags == '' and cache == str(tmp_path)
  assert {'--train_only', '--no_hf', '--batch_size=16', '--config.model.fused_qkv=False'} <= set(later)
  assert later_flags == '--xla_foo=1'
  # Each config's first row is traced, into a folder of its own (Model 2's trace beside Model 1's).
  assert f"--profile_dir={tmp_path / 'prof' / 'a'}" in first and not any('profile' in a for a in later)
  assert f"--profile_dir={tmp_path / 'prof' / 'b_tiny'}" in other and '--train_only' not in other
  # The child process gets the row's XLA flags after the ones already set, and the shared compilation cache.
  code = 'import json, os; print(json.dumps([os.environ["XLA_FLAGS"], os.environ["JAX_COMPILATION_CACHE_DIR"]]))'
  monkeypatch.undo()  # The real _child again (and the XLA_FLAGS the suite set).
  flags = os.environ.get('XLA_FLAGS', '')
  assert levers._child(['-c', code], '--xla_foo=1', 60, str(tmp_path)) == [  # pylint: disable=protected-access
      f'{flags} --xla_foo=1'.strip(), str(tmp_path)]


def test_a_lever_row_with_transformers_beside_it_prints_both():
  from vivit_jax.experiments.benchmarks import levers  # pylint: disable=g-import-not-at-top
  result = {'attention': 'cudnn', 'max_abs_logit_diff_vs_hf_f32': 7e-6, 'runs': [
      {'train_clips_per_s': 100.0, 'train_mfu': 0.27, 'forward_s': 0.025, 'forward_clips_per_s': 320.0,
       'forward_mfu': 0.29, 'peak_memory_gb': 11.2, 'device': 'NVIDIA H100'},
      {'implementation': 'transformers 5', 'train_clips_per_s': 80.0, 'train_mfu': 0.22, 'forward_s': 0.03,
       'forward_clips_per_s': 250.0, 'forward_mfu': 0.23, 'peak_memory_gb': 20.9, 'device': 'NVIDIA H100'}]}
  text = levers.format_row(levers._row('Model 1, fused QKV (default)', 8, result))  # pylint: disable=protected-access
  assert 'train 100.0 clips/s, MFU 27.0%' in text and 'forward 320.0 clips/s, MFU 29.0%' in text
  assert 'transformers 5' in text and 'train 80.0 clips/s, MFU 22.0%' in text and '7e-06' in text


def test_the_model_benchmark_and_gpu_check_run_without_tensorflow():
  """GPU images often lack TensorFlow: only `--data` may import it (run in a fresh interpreter)."""
  code = ('import sys, runpy\n'
          'import vivit_jax.cli.benchmark, vivit_jax.cli.gpu_check\n'
          'assert "tensorflow" not in sys.modules, sorted(m for m in sys.modules if m.startswith("tensorflow"))\n'
          'sys.argv = ["gpu_check", "--help"]\n'
          'runpy.run_module("vivit_jax.cli.gpu_check", run_name="__main__")\n')
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0 and 'usage:' in done.stdout, done.stderr[-2000:]


def test_the_flax_reference_holds_our_parameters_and_computes_our_logits():
  from vivit_jax.experiments.benchmarks import reference  # pylint: disable=g-import-not-at-top
  from vivit_jax.models import create_model  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  for kind in ('spacetime', 'factorized_encoder'):
    config = tiny_config(kind)
    ours, ref = create_model(config), reference.reference_model(config)
    video = jax.random.uniform(jax.random.PRNGKey(0), (2, 4, 16, 16, 3))
    # Jitted (op by op, every parameter shape and layer op would compile a program of its own).
    params = jax.jit(lambda v: jax.tree_util.tree_map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape),
        ours.init(jax.random.PRNGKey(1), v)['params']))(video)
    assert (jax.tree_util.tree_structure(params)
            == jax.tree_util.tree_structure(jax.eval_shape(ref.init, jax.random.PRNGKey(1), video)['params']))
    logits = jax.jit(lambda p, v: (ours.apply({'params': p}, v), ref.apply({'params': p}, v)))(params, video)
    diff = abs(logits[0] - logits[1]).max()
    assert diff < 1e-5, (kind, diff)


def test_the_cpu_benchmark_times_ours_the_reference_and_transformers_in_turn(capsys):
  assert benchmark_script.main(['--model', '--cpu', f'--config={SYNTHETIC}:tiny',
                                '--config.model.attention_config.type=spacetime', '--config.model.num_heads=2',
                                '--config.model.mlp_dim=32', '--config.model.num_layers=1', '--steps=1']) == 0
  out = capsys.readouterr().out
  assert 'flax reference' in out and 'transformers 5' in out and '% of matmul rate' in out
  assert 'vivit_jax vs the flax reference: train step' in out and 'vivit_jax vs transformers: inference' in out
  assert re.search(r'minor page faults per step: vivit_jax \d+ MB, [\d,]+ faults; flax reference \d+ MB, '
                   r'[\d,]+ faults; transformers [^;]+ [\d,]+ faults$', out, re.MULTILINE), out


def test_cpu_benchmark_flags_are_checked():
  for argv, expected in ((['--model', '--cpu', '--sizes=huge'], 'unknown'),
                         (['--model', '--sizes=demo'], '--sizes goes with --model --cpu'),
                         (['--data', '--cpu'], '--cpu and --sizes go with --model')):
    process = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'benchmark.py'), *argv],
                             capture_output=True, text=True, check=False, timeout=120)
    assert process.returncode == 2 and expected in process.stderr, process.stderr


def test_the_sizes_the_readme_quotes():
  from vivit_jax.experiments.benchmarks import side_by_side  # pylint: disable=g-import-not-at-top
  from vivit_jax.models import complexity  # pylint: disable=g-import-not-at-top
  s1, s2, demo = (side_by_side.size_config(name) for name in ('s_model1', 's_model2', 'demo'))
  assert complexity.token_counts(s1) == '785' and s1.batch_size == 4 and s1.model.hidden_size == 384
  assert s2.model.attention_config.type == 'factorized_encoder' and s2.model.spatial_transformer.num_layers == 6
  assert demo.batch_size == 64 and s1.model_dtype_str == demo.model_dtype_str == 'float32'


def test_mfu_counts_two_flops_per_multiply_add_and_three_forwards_per_train_step():
  run = {'device': 'NVIDIA H100 80GB HBM3', 'forward_clips_per_s': 100.0, 'train_clips_per_s': 30.0,
         'implementation': 'vivit_jax', 'forward_s': 0.08, 'train_step_s': 0.27, 'peak_memory_gb': 11.0}
  result = mfu.add_mfu({'gflops_per_clip': 451.5, 'dtype': 'bfloat16', 'runs': [run],
                        'variant': 'spacetime', 'clip': '32x224x224x3', 'tokens': '3137',
                        'batch_size': 8, 'attention': 'cudnn'})
  assert abs(run['forward_mfu'] - 2 * 451.5e9 * 100 / 989.4e12) < 1e-9
  assert abs(run['train_mfu'] - 3 * 2 * 451.5e9 * 30 / 989.4e12) < 1e-9
  assert 'MFU train' in model_benchmark.format_model_benchmark(result) and '989.4 TFLOP/s' in \
      model_benchmark.format_model_benchmark(result)
  assert mfu.dense_bf16_tflops('cpu') is None


def test_levers_run_each_row_in_its_own_process_and_report_failures_and_the_budget(monkeypatch, tmp_path):
  from vivit_jax.experiments.benchmarks import data, levers  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(data, 'data_benchmark', lambda tmp, num_batches: {'tfdata_clips_per_s': 40.0, 'cpu_count': 2})
  plan = (('Model 1, tiny', 'configs/synthetic.py:tiny', (), '', 8),
          ('tiny, a key that does not exist', 'configs/synthetic.py:tiny', ('model.no_such_key=1',), '', 8))
  # The end-to-end run: vivit_jax.main on JPEG DMVR records, with the first row's config, read as video.
  end_to_end = {'name': 'tiny', 'config': 'configs/synthetic.py:tiny', 'batch_size': 8, 'steps': 3,
                'overrides': ('dataset_name=video_tfrecord_dataset', 'dataset_configs.min_resize=40',
                              'model_dtype_str=float32'),  # bfloat16 is slow on a CPU.
                'records': dict(num_videos=8, video_frames=12, height=48, width=64, short_side=40)}
  lines = []
  rows = levers.run_levers(steps=1, budget_s=600, plan=plan, log=lines.append, profile_dir=str(tmp_path / 'prof'),
                           end_to_end=end_to_end, cache_dir=str(tmp_path / 'compile_cache'))
  assert rows[0]['train_clips_per_s'] > 0 and rows[0]['batch_size'] == 8 and 'train_mfu' in rows[0]
  # A config's first row times the forward pass too, and is the one traced.
  assert rows[0]['forward_clips_per_s'] > 0 and 'forward' in lines[0]
  traced = tmp_path / 'prof' / 'synthetic_tiny'  # levers.profile_path: a folder per config.
  assert glob.glob(str(traced / 'plugins' / 'profile' / '*' / 'perfetto_trace.json.gz'))
  with gzip.open(traced / 'train_step.hlo.txt.gz', 'rt') as f:
    assert 'ENTRY' in f.read()
  with open(traced / 'profile_summary.json') as f:  # Where the step's operator time went.
    assert json.load(f)['groups'] == [list(g) for g in rows[0]['profile']['groups']]
  assert dict((g, ms) for g, ms, _ in rows[0]['profile']['groups'])['matmul'] > 0 and 'profile, ' in lines[0]
  assert 'no_such_key' in rows[1]['error']
  e2e = rows[2]  # Timed over the steps after the first, against the first row (same config and batch size).
  assert e2e['name'] == 'end to end (vivit_jax.main), tiny, JPEG DMVR records' and e2e['steps_timed'] == 2
  assert e2e['over_model_only'] == round(e2e['train_clips_per_s'] / rows[0]['train_clips_per_s'], 2) > 0
  assert 'x the model-only train step (goal: 0.9x)' in lines[2]
  assert rows[3]['pipeline_clips_per_s'] == 40.0 and rows[3]['clips_per_s_per_core'] == 20.0
  assert rows[3]['pipeline_over_train_step'] == round(40.0 / rows[0]['train_clips_per_s'], 2)
  assert len(lines) == 4 and 'per core' in lines[3]
  out_of_time = levers.run_levers(steps=1, budget_s=10, plan=plan[:1], log=lines.append, end_to_end=None)
  assert out_of_time[0]['error'] == 'not run: out of the time budget'


def test_every_lever_row_names_keys_and_values_its_config_has():
  """A misspelt override would cost a GPU slot's row: each row's child would only fail once it ran."""
  from vivit_jax.config import load_config  # pylint: disable=g-import-not-at-top
  from vivit_jax.experiments.benchmarks import levers  # pylint: disable=g-import-not-at-top
  for name, config, overrides, _, _ in levers.PLAN:
    assert load_config(os.path.join(ROOT, config), overrides=list(overrides)), name
  assert len({name for name, *_ in levers.PLAN}) == len(levers.PLAN)
