"""Model and train-step speed: vivit_jax beside Hugging Face transformers' ViViT on the same machine.

`jax_benchmark` times our jitted forward pass (inference) and our whole train step (`train.step.make_train_step`:
forward, backward, clipping, optimizer update, metrics; state donated) on a constant device-resident batch.
`hf_benchmark` times `transformers.VivitForVideoClassification` built from the same config
(`formats.huggingface_config.hf_config_from`: Hugging Face implements Model 1 only) with SDPA attention, under
bf16 autocast when the config computes in bfloat16, and a train step of forward, backward, clipping and AdamW.

`CompiledTrainStep` compiles the train step from abstract shapes, so that its memory is known before anything is
allocated (`fit.py` times `--cost_only` steps at a batch that fits the machine with it).

For a like-for-like comparison `comparable_config` turns off what only one side has (dropout, stochastic depth,
mixup, EMA, gradient accumulation) and uses AdamW on both sides. Timings are medians over `steps` after
`warmup` untimed calls (which include compilation). Nothing is downloaded: both models start from random weights.
This module needs jax, flax, optax and ml_collections only (torch and transformers for `hf_benchmark`), so it
runs on accelerator machines without TensorFlow.
"""

import gzip
import json
import math
import os
import statistics
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vivit_jax import sharding
from vivit_jax.config import load_config
from vivit_jax.config.numbers import schedule_steps_per_epoch
from vivit_jax.experiments.benchmarks import mfu
from vivit_jax.experiments.benchmarks import profile as profile_lib
from vivit_jax.models import complexity, create_model
from vivit_jax.models.shapes import input_shape
from vivit_jax.train import optim
from vivit_jax.train import state as state_lib
from vivit_jax.train import step as train_step

_COMPARABLE = ('model.dropout_rate=0.0', 'model.attention_dropout_rate=0.0', 'model.stochastic_droplayer_rate=0.0',
               'mixup.alpha=0.0', 'cutmix.alpha=0.0', 'gradient_accumulation_steps=1', 'optimizer=adamw')


def comparable_config(config: ml_collections.ConfigDict, batch_size: Optional[int] = None,
                      overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """`config` with regularisers that only we have turned off, AdamW, and `batch_size` (None: the config's)."""
  extra = list(_COMPARABLE) + ['ema_decay=None']
  if batch_size:
    extra.append(f'batch_size={batch_size}')
  return load_config(config, extra + list(overrides))


def median_seconds(fn: Callable[[], Any], steps: int, warmup: int = 1) -> float:
  """Median wall seconds of `fn()` (which must block until its work is done) after `warmup` untimed calls."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _batch_shapes(config: ml_collections.ConfigDict, batch_size: int) -> Dict[str, Tuple[int, ...]]:
  """The shapes of a float32 training batch (what `constant_batch` makes)."""
  return {'inputs': tuple(input_shape(config, batch_size)),
          'label': (batch_size, config.dataset_configs.num_classes), 'batch_mask': (batch_size,)}


def constant_batch(config: ml_collections.ConfigDict, batch_size: int) -> Dict[str, np.ndarray]:
  shapes = _batch_shapes(config, batch_size)
  num_classes = config.dataset_configs.num_classes
  rng = np.random.default_rng(0)
  return {'inputs': rng.uniform(-1.0, 1.0, shapes['inputs']).astype(np.float32),
          'label': np.eye(num_classes, dtype=np.float32)[np.arange(batch_size) % num_classes],
          'batch_mask': np.ones(batch_size, np.float32)}


def _peak_memory_gb() -> Optional[float]:
  stats = jax.local_devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')
  return round(peak / 2**30, 2) if peak else None


class CompiledTrainStep:
  """`config`'s jitted train step compiled for its batch from abstract shapes (nothing allocated), so that its
  memory is known before anything is placed on a device; `seconds` then runs it. `model`: another module with
  the same parameters and call (the flax reference), trained by the same step (default: `config`'s)."""

  def __init__(self, config: ml_collections.ConfigDict, model=None):
    self.config = config
    self.mesh = sharding.create_mesh(config.mesh)
    model = model or create_model(config)
    schedule = optim.create_learning_rate_schedule(config.lr_configs, *_schedule_length(config))
    tx = optim.create_optimizer(config, schedule)
    self.init = state_lib.init_fn(model, tx, input_shape(config), config.rng_seed,
                                  use_ema=config.ema_decay is not None)
    abstract, self.shardings = state_lib.abstract_state(self.init, self.mesh)
    step = train_step.jit_train_step(train_step.make_train_step(model, tx, schedule, config, self.mesh),
                                     self.shardings, self.mesh)
    batch_sharding = sharding.batch_sharding(self.mesh)
    batch = {k: jax.ShapeDtypeStruct(shape, jnp.float32, sharding=batch_sharding)
             for k, shape in _batch_shapes(config, config.batch_size).items()}
    self.compiled = step.lower(abstract, batch).compile()

  def _memory(self, *names: str) -> Optional[int]:
    """The sum of the compiler's memory sizes `names` (`memory_analysis()` fields, one device); None where the
    backend gives none."""
    analysis = self.compiled.memory_analysis()
    if analysis is None:
      return None
    return sum(int(getattr(analysis, name, 0) or 0) for name in names)

  def bytes_needed(self) -> Optional[int]:
    """The compiler's estimate of the step's peak memory (arguments, outputs and temporaries) summed over this
    process's devices; None where the backend gives none."""
    per_device = self._memory('argument_size_in_bytes', 'output_size_in_bytes', 'temp_size_in_bytes')
    if per_device is None:
      return None
    return (per_device - self._memory('alias_size_in_bytes')) * len(self.mesh.local_devices)

  def temp_bytes(self) -> Optional[int]:
    """The compiler's size of the step's temporaries on one device (None where the backend gives none): on the
    CPU fresh memory each call, every page of which costs a page fault when first written."""
    return self._memory('temp_size_in_bytes')

  def runner(self) -> Callable[[], None]:
    """One train step on a constant batch per call, blocking until it is done (the state is carried along)."""
    holder = {'state': state_lib.create_state(self.init, self.shardings)}
    batch = sharding.global_batch(constant_batch(self.config, self.config.batch_size), self.mesh)

    def run():
      holder['state'], metrics = self.compiled(holder['state'], batch)
      jax.block_until_ready(metrics)

    return run

  def seconds(self, num_steps: int, warmup: int = 1) -> float:
    """Median seconds of `num_steps` steps on a constant batch, after `warmup` untimed ones (compilation is
    done already; a warm-up step takes what a first run costs out of the timing)."""
    return median_seconds(self.runner(), num_steps, warmup)

  def profile(self, directory: str, num_steps: int = 2) -> Dict[str, Any]:
    """Traces `num_steps` steps after a warm-up one with `jax.profiler` into `directory` (TensorBoard's
    `plugins/profile/RUN/`, with a Perfetto `perfetto_trace.json.gz`), writes the compiled step's HLO beside it
    (`train_step.hlo.txt.gz`: fusion names to the model's op names) and returns where the time went
    (`profile.summarize`, also in `profile_summary.json`)."""
    run = self.runner()
    run()
    with jax.profiler.trace(directory, create_perfetto_trace=True):
      for _ in range(num_steps):
        run()
    hlo = self.compiled.as_text()
    with gzip.open(os.path.join(directory, 'train_step.hlo.txt.gz'), 'wt') as f:
      f.write(hlo)
    summary = profile_lib.summarize(directory, hlo, num_steps)
    with open(os.path.join(directory, 'profile_summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    return summary


def _schedule_length(config: ml_collections.ConfigDict) -> Tuple[int, int]:
  """(total steps, steps per epoch) of the schedule, from the declared training-set size (one batch when none
  is): lengths in epochs need them, and the learning rate does not change a step's time."""
  train = config.dataset_configs.examples_per_subset.get('train') or config.batch_size
  epochs = config.num_training_epochs or 1
  total = config.num_training_steps or math.ceil(epochs * train / config.batch_size)
  return max(1, total), schedule_steps_per_epoch(train, config.batch_size)


def at_batch(config: ml_collections.ConfigDict, batch_size: Optional[int]) -> ml_collections.ConfigDict:
  """`config` at another batch size, without gradient accumulation (the step takes the whole batch)."""
  if not batch_size or batch_size == config.batch_size:
    return config
  return load_config(config, [f'batch_size={batch_size}', 'gradient_accumulation_steps=1'])


def _forward_seconds(config: ml_collections.ConfigDict, steps: int, warmup: int) -> float:
  model = create_model(config)
  inputs = jax.device_put(constant_batch(config, config.batch_size)['inputs'])
  params = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False)['params'])(inputs[:1])
  forward = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))
  return median_seconds(lambda: jax.block_until_ready(forward(params, inputs)), steps, warmup)


def jax_benchmark(config: ml_collections.ConfigDict, steps: int = 10, warmup: int = 2,
                  forward: bool = True, profile_dir: Optional[str] = None) -> Dict[str, Any]:
  """Our forward pass (unless not `forward`) and train step at `config.batch_size`: seconds, clips/s and peak
  device memory; with `profile_dir`, a trace of two train steps after the timing (`CompiledTrainStep.profile`)."""
  batch_size = config.batch_size
  # The forward pass's params and inputs are freed before the train step.
  forward_s = _forward_seconds(config, steps, warmup) if forward else float('nan')
  train = CompiledTrainStep(config)
  train_s = train.seconds(steps)
  profile = train.profile(profile_dir) if profile_dir else None
  return {'implementation': 'vivit_jax', 'backend': jax.default_backend(), 'device': jax.devices()[0].device_kind,
          'forward_s': forward_s, 'forward_clips_per_s': batch_size / forward_s,
          'train_step_s': train_s, 'train_clips_per_s': batch_size / train_s, 'peak_memory_gb': _peak_memory_gb(),
          **({'profile': profile} if profile else {})}


def hf_runners(config: ml_collections.ConfigDict, compile_model: bool = False) -> Tuple[Callable, Callable, str]:
  """(forward, train step, name) of transformers' ViViT (Model 1) built from `config`: blocking calls on a
  constant batch, in bf16 autocast when the config computes in bfloat16; the train step is forward, backward,
  clipping and AdamW."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from vivit_jax.checkpoints.formats.huggingface_config import hf_config_from  # pylint: disable=g-import-not-at-top

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  hf_config = transformers.VivitConfig.from_dict(hf_config_from(config))
  model = transformers.VivitForVideoClassification._from_config(hf_config, attn_implementation='sdpa').to(device)
  runner = torch.compile(model) if compile_model else model
  batch = constant_batch(config, config.batch_size)
  pixels = torch.from_numpy(np.ascontiguousarray(batch['inputs'].transpose(0, 1, 4, 2, 3))).to(device)
  labels = torch.from_numpy(batch['label'].argmax(-1)).to(device)
  bf16 = config.model_dtype_str == 'bfloat16'
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, fused=device == 'cuda')
  clip = config.max_grad_norm

  def sync():
    if device == 'cuda':
      torch.cuda.synchronize()

  def forward():
    model.eval()
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
      runner(pixel_values=pixels).logits.float().sum().item()
    sync()

  def train():
    model.train()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
      loss = runner(pixel_values=pixels, labels=labels).loss
    loss.backward()
    if clip:
      torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync()

  name = (f'transformers {transformers.__version__} (torch {torch.__version__}, sdpa'
          f'{", compiled" if compile_model else ""})')
  return forward, train, name


def hf_benchmark(config: ml_collections.ConfigDict, steps: int = 10, warmup: int = 2,
                 compile_model: bool = False) -> Dict[str, Any]:
  """transformers' ViViT (Model 1) built from `config`: forward and train step, as `jax_benchmark` reports them."""
  import torch  # pylint: disable=g-import-not-at-top
  forward, train, name = hf_runners(config, compile_model)
  cuda = torch.cuda.is_available()
  if cuda:
    torch.cuda.reset_peak_memory_stats()
  forward_s = median_seconds(forward, steps, warmup)
  train_s = median_seconds(train, steps, warmup)
  peak = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None
  return {'implementation': name, 'backend': 'cuda' if cuda else 'cpu',
          'device': torch.cuda.get_device_name() if cuda else 'cpu',
          'forward_s': forward_s, 'forward_clips_per_s': config.batch_size / forward_s,
          'train_step_s': train_s, 'train_clips_per_s': config.batch_size / train_s, 'peak_memory_gb': peak}


def hf_logit_difference(config: ml_collections.ConfigDict, batch_size: int = 2) -> float:
  """Max |logit difference| between our Model 1 and transformers' ViViT holding the same random weights, both
  in float32 on this machine's default devices: the two timed models compute the same function."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from vivit_jax.checkpoints.formats.huggingface import scenic_to_hf  # pylint: disable=g-import-not-at-top
  from vivit_jax.checkpoints.formats.huggingface_config import hf_config_from  # pylint: disable=g-import-not-at-top

  config = load_config(config, ['model_dtype_str=float32'])
  model = create_model(config)
  inputs = constant_batch(config, batch_size)['inputs']
  # Jitted: op by op, the tiny test model's init and forward compiled 255 programs (4.5 s on 2 cores).
  init = jax.jit(lambda video: model.init(jax.random.PRNGKey(0), video, train=False)['params'])
  params = jax.device_get(init(inputs[:1]))
  head = params['output_projection']['kernel']  # Zero-initialised: give the logits something to compare.
  params['output_projection']['kernel'] = np.random.default_rng(1).normal(0, 0.05, head.shape).astype(np.float32)
  with jax.default_matmul_precision('highest'):  # No TF32 on either side: compare the functions, not roundings.
    ours = np.asarray(jax.jit(lambda p, video: model.apply({'params': p}, video, train=False))(params, inputs))
  flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  hf_model = transformers.VivitForVideoClassification(transformers.VivitConfig.from_dict(hf_config_from(config)))
  tensors = scenic_to_hf(params, config.model.num_layers)
  hf_model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, strict=True)
  pixels = torch.from_numpy(np.ascontiguousarray(inputs.transpose(0, 1, 4, 2, 3)))
  with torch.inference_mode():
    theirs = hf_model.to(device).eval()(pixel_values=pixels.to(device)).logits.float().cpu().numpy()
  torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
  return float(np.abs(ours - theirs).max())


def _attention_backend(config: ml_collections.ConfigDict) -> str:
  """The attention implementations the model runs here at the benchmark's batch, as tracing it records them
  (e.g. 'cudnn, einsum': the last block's class-token-only attention is einsums)."""
  from vivit_jax.models import attention  # pylint: disable=g-import-not-at-top
  model = create_model(config)
  video = jax.ShapeDtypeStruct((config.batch_size, *input_shape(config)[1:]), jnp.float32)
  with attention.recorded_backends() as used:
    jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False), video)
  return ', '.join(used)


def _in_child(fn: Callable[..., Any], *args) -> Any:
  """`fn(*args)` in a fresh (spawned) process, so that the frameworks do not share, or preallocate, one
  device's memory: JAX takes most of a GPU when it starts, torch's allocator keeps what it used. Where JAX
  computes on the CPU there is no such memory, and `fn` runs here: a spawned process spends seconds importing
  torch, transformers and vivit_jax before it computes anything (`--model --cpu` runs torch in this process too)."""
  if jax.default_backend() == 'cpu':
    return fn(*args)
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  import multiprocessing  # pylint: disable=g-import-not-at-top
  context = multiprocessing.get_context('spawn')
  with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
    return pool.submit(fn, *args).result()


def _huggingface_side(config: ml_collections.ConfigDict, steps: int, warmup: int, compile_hf: bool):
  """(`hf_logit_difference`, `hf_benchmark`) in one process: a process that imports torch and transformers
  costs seconds before it computes anything. The float32 check's tensors are freed before the timed run resets
  the peak-memory counter."""
  return hf_logit_difference(config), hf_benchmark(config, steps, warmup, compile_hf)


def model_benchmark(config: ml_collections.ConfigDict, batch_size: Optional[int] = None, steps: int = 10,
                    warmup: int = 2, overrides: Sequence[str] = (), huggingface: bool = True,
                    compile_hf: bool = False, forward: bool = True,
                    profile_dir: Optional[str] = None) -> Dict[str, Any]:
  """Ours and (for Model 1 with a class token, when `huggingface`) transformers' ViViT on the same config.

  The transformers side (the logit check, then the timing) runs in a child process first, then ours here, so
  each implementation has the device to itself.
  """
  config = comparable_config(config, batch_size, overrides)
  hf_runs, extra = [], {}
  if huggingface:
    extra['max_abs_logit_diff_vs_hf_f32'], hf_run = _in_child(_huggingface_side, config, steps, warmup, compile_hf)
    hf_runs.append(hf_run)
  return mfu.add_mfu({'variant': complexity.variant_name(config),
            'clip': 'x'.join(map(str, input_shape(config)[1:])),
            'tokens': complexity.token_counts(config), 'batch_size': config.batch_size,
            'dtype': config.model_dtype_str, 'attention': _attention_backend(config),
            'gflops_per_clip': complexity.summarize(config)['gflops'],
            'runs': [jax_benchmark(config, steps, warmup, forward, profile_dir)] + hf_runs, **extra})


def huggingface_comparison(config: ml_collections.ConfigDict) -> Optional[str]:
  """None when transformers can time the same model here, else why not (not installed; another variant)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  from vivit_jax.checkpoints.formats.huggingface_config import hf_config_from  # pylint: disable=g-import-not-at-top
  if not all(importlib.util.find_spec(name) for name in ('torch', 'transformers')):
    return 'torch or transformers is not installed'
  try:
    hf_config_from(config)
  except ValueError as e:
    return f'transformers has no equivalent of this model ({e})'
  return None


def format_model_benchmark(result: Dict[str, Any]) -> str:
  """A header line and one row per implementation: ms per call, clips/s, peak memory."""
  head = (f"{result['variant']}, clip {result['clip']} ({result['tokens']} tokens), batch {result['batch_size']}, "
          f"{result['dtype']}, attention {result['attention']}, {result['gflops_per_clip']:.4g} GFLOPs/clip")
  rows = [('implementation', 'forward ms', 'forward clips/s', 'train step ms', 'train clips/s', 'peak GiB',
           'MFU forward', 'MFU train')]
  percent = lambda run, key: f'{100 * run[key]:.1f}%' if key in run else ''
  for run in result['runs']:
    rows.append((run['implementation'], f"{1e3 * run['forward_s']:.1f}", f"{run['forward_clips_per_s']:.1f}",
                 f"{1e3 * run['train_step_s']:.1f}", f"{run['train_clips_per_s']:.1f}",
                 '' if run['peak_memory_gb'] is None else str(run['peak_memory_gb']),
                 percent(run, 'forward_mfu'), percent(run, 'train_mfu')))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = [head] + ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
  if 'max_abs_logit_diff_vs_hf_f32' in result:
    lines.append(f"same weights, float32: max |logit difference| vs transformers "
                 f"{result['max_abs_logit_diff_vs_hf_f32']:.2e}")
  if any('train_mfu' in run for run in result['runs']):
    lines.append('MFU: 2 x the multiply-adds per clip (train step: 3 x forward) against the dense bfloat16 peak of '
                 f"{mfu.dense_bf16_tflops(result['runs'][0]['device'])} TFLOP/s")
  if 'profile' in result['runs'][0]:
    lines.append(profile_lib.format_summary(result['runs'][0]['profile']))
  return '\n'.join(lines)
