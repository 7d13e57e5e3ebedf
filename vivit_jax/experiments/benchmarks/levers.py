"""`vivit-benchmark --levers`: what each speed lever gives on this machine, in one command sized for a short
accelerator slot.

Each row is one child process (`vivit-benchmark --model --json`), so XLA flags can differ between rows and every
run has the device to itself; all of them share one persistent compilation cache (and with it XLA's per-fusion
autotuning results), so a rerun skips the compilations. On an H200 a row took about 60 s, most of it compiling;
a config's first row, which also times the forward pass and transformers' ViViT, about twice that. Rows that
would not start before the time budget runs out are listed as not run. The budget's last seconds go to
`vivit-gpu-check` (bfloat16 against float32, every variant); before them, where TensorFlow is installed, an
end-to-end training run (`END_TO_END`: `python -m vivit_jax.main` on JPEG DMVR records, its clips/s against the
model-only train step's). The last row times the input pipeline (tf.data over 224-pixel crops of JPEG DMVR
records made on the spot) and compares it with the fastest train step measured: the pipeline keeps up when it
supplies at least as many clips per second.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from vivit_jax.experiments.benchmarks import gpu_check
from vivit_jax.experiments.benchmarks import profile
from vivit_jax.experiments.benchmarks import side_by_side

M1 = 'configs/kinetics400/vivit_base_k400.py'
M2 = 'configs/kinetics400/vivit_base_factorised_encoder.py'
LATENCY_HIDING = '--xla_gpu_enable_latency_hiding_scheduler=true'
TRITON_GEMM_OFF = '--xla_gpu_enable_triton_gemm=false'
# For the gpu check, whose time is compiling: on an H200 each variant took 70-95 s in a fresh process, too long
# for the budget's last 120 s. Without autotuning XLA takes its default GEMM configurations: still the bfloat16
# path, checked against float32, with the same cuDNN attention.
NO_AUTOTUNING = '--xla_gpu_autotune_level=0'

# (name, config, overrides, extra XLA flags, batch size): the defaults first, then the rows no GPU has run
# (batch 32: Model 1 went from 37.5% MFU at batch 8 to 41.2% at 16 on an H200, so the 45% goal may lie at 32;
# Model 2 with XLA's attention: it trained at 29.1% MFU there, and its spatial encoder's 197 tokens are short for
# cuDNN's flash kernel, which pads them to 200 and works in tiles of 64 or 128), then those an H200 ran at 6f6b5a1
# (README), in the order of what they told: batch 16, every token through the last block, XLA's latency-hiding
# scheduler, remat, cuBLAS for every matmul, fused QKV, padding per layer.
PLAN: Tuple[Tuple[str, str, Tuple[str, ...], str, int], ...] = (
    ('Model 1 (defaults)', M1, (), '', 8),
    ('Model 2 (defaults)', M2, (), '', 8),
    ('Model 1, batch 32', M1, (), '', 32),
    ('Model 2, batch 32', M2, (), '', 32),
    ('Model 2, XLA attention instead of cuDNN', M2, ('model.attention_implementation=xla',), '', 8),
    ('Model 1, batch 16', M1, (), '', 16),
    ('Model 1, every token through the last block', M1, ('model.last_block_class_token_only=False',), '', 8),
    ('Model 1, + latency-hiding scheduler', M1, (), LATENCY_HIDING, 8),
    ('Model 1, batch 16, remat dots_saveable', M1, ('model.remat=True', 'model.remat_policy=dots_saveable'), '', 16),
    ('Model 1, cuBLAS for every matmul', M1, (), TRITON_GEMM_OFF, 8),
    ('Model 2, batch 16', M2, (), '', 16),
    ('Model 1, one fused QKV matmul', M1, ('model.fused_qkv=True',), '', 8),
    ('Model 1, cuDNN padding per layer', M1, ('model.attention_padding=per_layer',), '', 8),
    ('Model 2, one fused QKV matmul', M2, ('model.fused_qkv=True',), '', 8),
)

# The end-to-end row: `python -m vivit_jax.main` training `config` at `batch_size` for `steps` steps on JPEG DMVR
# records made on the spot (data.make_records: 16 videos of 80 256x340 frames, 2 classes), read as the config
# reads Kinetics (its augmentation included), no checkpoints, one validation pass at the end. Its clips/s is
# results.json's `speed` (after the first step, data loading included); the goal is at least 0.9 of the
# model-only train step at the same batch size (the plan's row for the same config with no overrides).
END_TO_END = {'name': 'Model 1', 'config': M1, 'batch_size': 8, 'steps': 150, 'overrides': (), 'records': {}}
END_TO_END_S = 150  # Seconds of the budget it gets where TensorFlow is installed (records ~20 s, compiling).


def _child(args: Sequence[str], xla_flags: str, timeout_s: float, cache_dir: str) -> Any:
  """The JSON that `python args` prints, in a process of its own with the shared compilation cache and
  `xla_flags`; {'error': why} when it fails or runs out of time."""
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache_dir)
  if xla_flags:
    env['XLA_FLAGS'] = f"{env.get('XLA_FLAGS', '')} {xla_flags}".strip()
  try:
    process = subprocess.run([sys.executable, *args], cwd=side_by_side.repository_root(), env=env,
                             capture_output=True, text=True, timeout=timeout_s, check=False)
  except subprocess.TimeoutExpired:
    return {'error': f'took longer than {timeout_s:.0f} s'}
  if process.returncode:
    lines = (process.stderr or process.stdout).strip().splitlines()
    return {'error': lines[-1] if lines else f'exit status {process.returncode}'}
  return json.loads(process.stdout)


def _run_one(config: str, overrides: Sequence[str], xla_flags: str, batch_size: int, steps: int,
             timeout_s: float, cache_dir: str, extra_args: Sequence[str] = ()) -> Dict[str, Any]:
  return _child(['-m', 'vivit_jax.cli.benchmark', '--model', f'--config={config}', '--json', f'--steps={steps}',
                 f'--batch_size={batch_size}', *extra_args, *[f'--config.{o}' for o in overrides]],
                xla_flags, timeout_s, cache_dir)


def _gpu_check_rows(timeout_s: float, cache_dir: str) -> List[Dict[str, Any]]:
  """`vivit-gpu-check`'s rows: bfloat16 on this machine's attention against float32, every variant, with the
  padding once per encoder that 'auto' picks at 224 pixels (at the check's small size it would pad per layer;
  the factorised blocks of Models 3 and 4 still pad per layer)."""
  name = 'bfloat16 vs float32 (vivit-gpu-check)'
  if timeout_s < 30:
    return [{'name': name, 'error': 'not run: out of the time budget'}]
  result = _child(['-m', 'vivit_jax.cli.gpu_check', '--json', '--config.model.attention_padding=once'],
                  NO_AUTOTUNING, timeout_s, cache_dir)
  if isinstance(result, dict):
    return [dict(result, name=name)]
  return [dict(r, name=f"bfloat16 vs float32, {r['variant']}") for r in result]


def _tensorflow_installed() -> bool:
  import importlib.util  # pylint: disable=g-import-not-at-top
  return importlib.util.find_spec('tensorflow') is not None


def _end_to_end_row(spec: Dict[str, Any], model_only_clips_per_s: Optional[float], timeout_s: float,
                    cache_dir: str) -> Dict[str, Any]:
  row = {'name': f"end to end (vivit_jax.main), {spec['name']}, JPEG DMVR records", 'batch_size': spec['batch_size']}
  if not _tensorflow_installed():
    return dict(row, error='TensorFlow is not installed')
  if timeout_s < 30:
    return dict(row, error='not run: out of the time budget')
  from vivit_jax.experiments.benchmarks import data  # pylint: disable=g-import-not-at-top
  start = time.monotonic()
  with tempfile.TemporaryDirectory() as tmp:
    _, records, record_kb = data.make_records(tmp, **spec['records'])
    videos = spec['records'].get('num_videos', 16)
    table = f'train@{data.SHARDS}'
    steps = spec['steps']
    # bfloat16 as the model-only rows compute (`vivit-benchmark --model`), unless the spec's overrides say
    # otherwise; those may not change what the records hold or how long the run is.
    settings = ['model_dtype_str=bfloat16', *spec['overrides'], f'dataset_configs.base_dir={records}',
                'dataset_configs.num_classes=2', 'checkpoint=False', 'count_flops=False',
                f"batch_size={spec['batch_size']}", 'num_training_epochs=None', f'num_training_steps={steps}',
                f'log_eval_steps={steps}', 'dataset_configs.do_multicrop_test=False']
    for split in ('train', 'validation', 'test'):
      settings += [f'dataset_configs.tables.{split}={table}', f'dataset_configs.examples_per_subset.{split}={videos}']
    workdir = os.path.join(tmp, 'run')
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache_dir)
    try:
      process = subprocess.run(
          [sys.executable, '-m', 'vivit_jax.main', f"--config={spec['config']}", f'--workdir={workdir}',
           *[f'--config.{s}' for s in settings]], cwd=side_by_side.repository_root(), env=env, capture_output=True,
          text=True, timeout=max(1.0, timeout_s - (time.monotonic() - start)), check=False)
    except subprocess.TimeoutExpired:
      return dict(row, error=f'took longer than {timeout_s:.0f} s')
    if process.returncode:
      lines = process.stderr.strip().splitlines()
      return dict(row, error=lines[-1] if lines else f'exit status {process.returncode}')
    with open(os.path.join(workdir, 'results.json')) as f:
      speed = json.load(f)['speed']
  row.update(train_clips_per_s=speed['clips_per_s'], steps_timed=speed['steps'], record_kb_per_frame=record_kb,
             cpu_count=os.cpu_count())
  if model_only_clips_per_s:
    row['over_model_only'] = round(speed['clips_per_s'] / model_only_clips_per_s, 2)
  return row


def _pipeline_row(best_train_clips_per_s: Optional[float]) -> Dict[str, Any]:
  if not _tensorflow_installed():
    return {'name': 'input pipeline, 32x224x224 JPEG DMVR records', 'error': 'TensorFlow is not installed'}
  from vivit_jax.experiments.benchmarks import data  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    result = data.data_benchmark(tmp, num_batches=16)
  per_core = result['tfdata_clips_per_s'] / result['cpu_count']
  row = {'name': 'input pipeline, 32x224x224 JPEG DMVR records', 'pipeline_clips_per_s': result['tfdata_clips_per_s'],
         'clips_per_s_per_core': round(per_core, 2), 'cpu_count': result['cpu_count']}
  if best_train_clips_per_s:
    row['pipeline_over_train_step'] = round(result['tfdata_clips_per_s'] / best_train_clips_per_s, 2)
  return row


def _row(name: str, batch_size: int, result: Dict[str, Any]) -> Dict[str, Any]:
  row = {'name': name, 'batch_size': batch_size}
  if 'error' in result:
    return dict(row, error=result['error'])
  ours = result['runs'][0]
  row.update(train_clips_per_s=round(ours['train_clips_per_s'], 1), train_mfu=ours.get('train_mfu'),
             peak_memory_gb=ours['peak_memory_gb'], device=ours['device'], attention=result['attention'])
  if 'profile' in ours:
    row['profile'] = ours['profile']
  if not math.isnan(ours['forward_s']):
    row.update(forward_clips_per_s=round(ours['forward_clips_per_s'], 1), forward_mfu=ours.get('forward_mfu'))
  if len(result['runs']) > 1:
    row['transformers'] = {k: result['runs'][1].get(k) for k in (
        'implementation', 'forward_clips_per_s', 'train_clips_per_s', 'forward_mfu', 'train_mfu', 'peak_memory_gb')}
    row['transformers']['max_abs_logit_diff_f32'] = result.get('max_abs_logit_diff_vs_hf_f32')
  return row


def profile_path(profile_dir: str, config: str) -> str:
  """Where `config`'s first row traces its train step: a folder per config file (and preset) in `profile_dir`,
  e.g. DIR/vivit_base_k400 and DIR/vivit_base_factorised_encoder."""
  path, _, preset = config.partition(':')
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join(profile_dir, f'{stem}_{preset}' if preset else stem)


def run_levers(steps: int = 5, budget_s: float = 540.0, per_run_timeout_s: float = 200.0,
               cache_dir: Optional[str] = None, plan=PLAN, log=print,
               profile_dir: Optional[str] = None, gpu_check_s: float = 0.0,
               end_to_end: Optional[Dict[str, Any]] = END_TO_END) -> List[Dict[str, Any]]:
  """One row per entry of `plan` (train clips/s, MFU, peak memory, or why not), then the `end_to_end` training
  run (where TensorFlow is installed, in the END_TO_END_S seconds of the budget before the gpu check's), then
  with `gpu_check_s` the last seconds of the budget (at least that many) for `vivit-gpu-check`'s rows, then the
  pipeline's row. With `profile_dir`, each config's first row also traces its train step, in `profile_path`
  (`vivit-benchmark --model --profile_dir`)."""
  cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), 'vivit_jax_compile_cache')
  start, rows, configs_seen, measured = time.monotonic(), [], set(), {}
  reserved = gpu_check_s + (END_TO_END_S if end_to_end and _tensorflow_installed() else 0)
  for name, config, overrides, flags, batch_size in plan:
    left = budget_s - reserved - (time.monotonic() - start)
    if left < 30:
      rows.append({'name': name, 'error': 'not run: out of the time budget'})
      continue
    # A config's first row (its defaults) also times the forward pass and transformers' ViViT (Model 1 only), and
    # with `profile_dir` traces its train step into a folder of its own; the lever rows time the train step alone.
    if config in configs_seen:
      extra = ('--train_only', '--no_hf')
    else:
      extra = (f'--profile_dir={profile_path(profile_dir, config)}',) if profile_dir else ()
    configs_seen.add(config)
    result = _run_one(config, overrides, flags, batch_size, steps, min(per_run_timeout_s, left), cache_dir, extra)
    rows.append(_row(name, batch_size, result))
    log(format_row(rows[-1]))
    if not overrides and not flags and 'train_clips_per_s' in rows[-1]:
      measured[(config, batch_size)] = rows[-1]['train_clips_per_s']
  if end_to_end:
    model_only = measured.get((end_to_end['config'], end_to_end['batch_size']))
    rows.append(_end_to_end_row(end_to_end, model_only, budget_s - gpu_check_s - (time.monotonic() - start),
                                cache_dir))
    log(format_row(rows[-1]))
  if gpu_check_s:
    for row in _gpu_check_rows(budget_s - (time.monotonic() - start), cache_dir):
      rows.append(row)
      log(format_row(row))
  best = max((r['train_clips_per_s'] for r in rows if r.get('train_clips_per_s') and r['name'].startswith(
      'Model 1')), default=None)  # The plan's rows: the end-to-end row's name starts 'end to end'.
  rows.append(_pipeline_row(best))
  log(format_row(rows[-1]))
  return rows


def format_row(row: Dict[str, Any]) -> str:
  if 'error' in row:
    return f"{row['name']:<44} {row['error']}"
  if 'grad_cosine' in row:
    return f"{'bfloat16 vs float32,':<21}" + gpu_check.format_row(row)
  if 'steps_timed' in row:
    ratio = row.get('over_model_only')
    return (f"{row['name']:<44} train {row['train_clips_per_s']} clips/s over {row['steps_timed']} steps"
            + (f', {ratio}x the model-only train step (goal: 0.9x)' if ratio else ''))
  if 'pipeline_clips_per_s' in row:
    ratio = row.get('pipeline_over_train_step')
    return (f"{row['name']:<44} {row['pipeline_clips_per_s']} clips/s on {row['cpu_count']} cores "
            f"({row['clips_per_s_per_core']} per core)" + (f', {ratio}x the fastest Model 1 train step' if ratio
                                                             else ''))
  text = (f"{row['name']:<44} train {row['train_clips_per_s']} clips/s{_mfu(row, 'train')}, "
          f"peak {row['peak_memory_gb']} GiB, attention {row['attention']}")
  if 'forward_clips_per_s' in row:
    text += f"; forward {row['forward_clips_per_s']} clips/s{_mfu(row, 'forward')}"
  if 'profile' in row:
    text += '\n  ' + profile.format_summary(row['profile'])
  hf = row.get('transformers')
  if hf:
    text += (f"\n{'  ' + hf['implementation']:<44} train {hf['train_clips_per_s']:.1f} clips/s{_mfu(hf, 'train')}, "
             f"peak {hf['peak_memory_gb']} GiB; forward {hf['forward_clips_per_s']:.1f} clips/s"
             f"{_mfu(hf, 'forward')}; same weights in float32: max |logit diff| {hf['max_abs_logit_diff_f32']:.2g}")
  return text


def _mfu(run: Dict[str, Any], kind: str) -> str:
  return f", MFU {100 * run[kind + '_mfu']:.1f}%" if run.get(kind + '_mfu') else ''
