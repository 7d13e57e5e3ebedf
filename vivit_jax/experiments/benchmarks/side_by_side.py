"""Our forward pass and train step beside the flax reference (`reference.py`: Scenic's way of writing the model)
and transformers' ViViT, on the same machine, in one process, interleaved.

Each round calls every implementation once (forward, then train step), and two float32 matmuls (a square one
and the model's own first MLP matmul), so that a machine that slows down or speeds up during the run slows every
column alike; the medians over the rounds are reported, with the ratios and the fraction of the faster matmul's
rate (the float32 rate attainable here) each implementation reaches. The train steps are the same
jitted `train.step` (AdamW, clipping, metrics; state donated) around each model; all models hold the same
parameters, and the logits are compared before timing. FLOPs are 2 x the multiply-adds of `models/complexity.py`
per clip, and a train step counts 3 x the forward pass. Each train step's compiled temporaries and the minor
page faults the process takes per step (median) are reported too: XLA on the CPU takes the temporaries as fresh
memory each call, so what a step keeps for its backward pass costs a fault per 4 KiB page.

`SIZES` are the sizes the CPU comparison is quoted at: ViT-S-sized Models 1 and 2 (width 384, 6 layers, 6
heads, 16x112x112 clips, 16x16 patches one frame deep: 785 tokens for Model 1; batch 4) and the demo's model
(configs/synthetic.py at its batch of 64).
"""

import os
import resource
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import vivit_jax
from vivit_jax.config import defaults, load_config
from vivit_jax.experiments.benchmarks import model as model_benchmark
from vivit_jax.experiments.benchmarks.reference import reference_model
from vivit_jax.models import complexity, create_model
from vivit_jax.models.shapes import input_shape

_S = ['model.hidden_size=384', 'model.patches.size=(16,16,1)', 'dataset_configs.num_frames=16',
      'dataset_configs.crop_size=112', 'dataset_configs.num_classes=400', 'batch_size=4']
_S_ENCODER = ['num_heads=6', 'mlp_dim=1536', 'num_layers=6']
SIZES = {
    's_model1': _S + [f'model.{k}' for k in _S_ENCODER],
    's_model2': _S + ['model.attention_config.type=factorized_encoder']
    + [f'model.spatial_transformer.{k}' for k in _S_ENCODER]
    + ['model.temporal_transformer.num_heads=6', 'model.temporal_transformer.mlp_dim=1536',
       'model.temporal_transformer.num_layers=2'],
    'demo': None,  # configs/synthetic.py as `make demo` trains it.
}


def repository_root() -> str:
  """The checkout vivit_jax runs from (configs/ and scripts/ sit beside the package)."""
  return os.path.dirname(os.path.dirname(os.path.abspath(vivit_jax.__file__)))


def size_config(name: str, overrides: Tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """The config of one of `SIZES` (float32 unless `overrides` say otherwise)."""
  if name not in SIZES:
    raise ValueError(f'unknown size {name!r}; expected one of {sorted(SIZES)}')
  if SIZES[name] is None:
    demo = os.path.join(repository_root(), 'configs', 'synthetic.py')
    return load_config(demo, ['model_dtype_str=float32'] + list(overrides))
  return load_config(defaults.get_config(), SIZES[name] + ['model_dtype_str=float32'] + list(overrides))


def _matmul(rows: int, inner: int, cols: int) -> Tuple[Callable[[], None], float]:
  """(a blocking float32 matmul [rows, inner] x [inner, cols], its FLOPs)."""
  rng = np.random.default_rng(0)
  a, b = (jax.device_put(rng.standard_normal(shape, np.float32)) for shape in ((rows, inner), (inner, cols)))
  matmul = jax.jit(lambda x, y: x @ y)
  return (lambda: jax.block_until_ready(matmul(a, b))), 2.0 * rows * inner * cols


def _matmuls(config: ml_collections.ConfigDict) -> Dict[str, Tuple[Callable[[], None], float]]:
  """A square 2048 matmul and the model's own first MLP matmul ([clips x tokens, width] x [width, mlp]): the
  faster one's rate is the float32 rate attainable here."""
  m = config.model
  encoder = m.spatial_transformer if m.attention_config.type == 'factorized_encoder' else m
  tokens = int(np.prod(input_shape(config)[1:4]) // np.prod(m.patches.size))
  return {'matmul 2048': _matmul(2048, 2048, 2048),
          'matmul mlp': _matmul(config.batch_size * tokens, m.hidden_size, encoder.mlp_dim)}


def _minor_faults() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _interleaved(fns: Dict[str, Callable[[], Any]], steps: int,
                 warmup: int) -> Tuple[Dict[str, float], Dict[str, float]]:
  """Median seconds and median minor page faults (the process's, `getrusage`) of each blocking `fn`, calling
  them in turn for `steps` rounds after `warmup` rounds."""
  times, faults = {name: [] for name in fns}, {name: [] for name in fns}
  for round_ in range(warmup + steps):
    for name, fn in fns.items():
      start, start_faults = time.perf_counter(), _minor_faults()
      fn()
      if round_ >= warmup:
        times[name].append(time.perf_counter() - start)
        faults[name].append(_minor_faults() - start_faults)
  median = lambda values: {name: statistics.median(v) for name, v in values.items()}
  return median(times), median(faults)


def _forward(model, params, inputs) -> Callable[[], None]:
  apply = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))
  return lambda: jax.block_until_ready(apply(params, inputs))


def _same_function(ours, reference, params, inputs) -> float:
  """Max |logit difference| of the two models on the same parameters (a random head, so logits are not 0)."""
  head = params['output_projection']['kernel']
  params = {**params, 'output_projection': {**params['output_projection'], 'kernel': jnp.asarray(
      np.random.default_rng(1).normal(0, 0.05, head.shape), jnp.float32)}}
  run = lambda m: np.asarray(jax.jit(lambda p, x: m.apply({'params': p}, x, train=False))(params, inputs))
  return float(np.abs(run(ours) - run(reference)).max())


def side_by_side(config: ml_collections.ConfigDict, steps: int = 5, warmup: int = 1,
                 huggingface: bool = True) -> Dict[str, Any]:
  """Seconds per forward pass and train step of vivit_jax, the flax reference and (Model 1, when `huggingface`)
  transformers, interleaved, with ratios and fractions of the matmul rate."""
  config = model_benchmark.comparable_config(config)
  ours, reference = create_model(config), reference_model(config)
  inputs = jax.device_put(model_benchmark.constant_batch(config, config.batch_size)['inputs'])
  params = jax.jit(lambda x: ours.init(jax.random.PRNGKey(0), x, train=False)['params'])(inputs[:1])
  steps_compiled = {'vivit_jax': model_benchmark.CompiledTrainStep(config),
                    'flax reference': model_benchmark.CompiledTrainStep(config, reference)}
  fns = {'vivit_jax forward': _forward(ours, params, inputs),
         'flax reference forward': _forward(reference, params, inputs),
         'vivit_jax train': steps_compiled['vivit_jax'].runner(),
         'flax reference train': steps_compiled['flax reference'].runner()}
  hf_name = None
  if huggingface and not model_benchmark.huggingface_comparison(config):
    hf_forward, hf_train, hf_name = model_benchmark.hf_runners(config)
    fns.update({f'{hf_name} forward': hf_forward, f'{hf_name} train': hf_train})
  matmuls = _matmuls(config)  # Timed in the same rounds: under the same load as the models.
  fns.update({name: fn for name, (fn, _) in matmuls.items()})
  seconds, faults = _interleaved(fns, steps, warmup)
  flops = 2e9 * complexity.config_gflops(config) * config.batch_size  # It counts multiply-adds.
  peak = max(f / seconds[name] for name, (_, f) in matmuls.items()) / 1e9
  rows = []
  for name in ['vivit_jax', 'flax reference'] + ([hf_name] if hf_name else []):
    forward_s, train_s = seconds[f'{name} forward'], seconds[f'{name} train']
    rows.append({'implementation': name, 'forward_s': forward_s, 'train_step_s': train_s,
                 'forward_clips_per_s': config.batch_size / forward_s,
                 'train_clips_per_s': config.batch_size / train_s,
                 'forward_of_peak': flops / forward_s / 1e9 / peak,
                 'train_of_peak': 3 * flops / train_s / 1e9 / peak,
                 'train_page_faults': faults[f'{name} train']})
    temp = steps_compiled[name].temp_bytes() if name in steps_compiled else None
    if temp is not None:
      rows[-1]['train_temp_mb'] = temp / 1e6
  ratio = lambda key, other: seconds[f'{other} {key}'] / seconds[f'vivit_jax {key}']
  result = {'variant': complexity.variant_name(config), 'tokens': complexity.token_counts(config),
            'clip': 'x'.join(map(str, input_shape(config)[1:])), 'batch_size': config.batch_size,
            'dtype': config.model_dtype_str, 'device': jax.devices()[0].device_kind,
            'matmul_peak_gflops': peak, 'max_abs_logit_diff_vs_reference': _same_function(
                ours, reference, params, inputs),
            'train_vs_reference': ratio('train', 'flax reference'),
            'forward_vs_reference': ratio('forward', 'flax reference'), 'runs': rows}
  if hf_name:
    result.update(forward_vs_transformers=ratio('forward', hf_name), train_vs_transformers=ratio('train', hf_name))
  return result


def format_side_by_side(result: Dict[str, Any]) -> str:
  """A header, one row per implementation and the ratios (how many times faster vivit_jax is)."""
  head = (f"{result['variant']}, clip {result['clip']} ({result['tokens']} tokens), batch {result['batch_size']}, "
          f"{result['dtype']} on {result['device']} (matmul rate {result['matmul_peak_gflops']:.0f} GFLOP/s)")
  rows: List[Tuple[str, ...]] = [('implementation', 'forward ms', 'train step ms', 'forward clips/s',
                                  'train clips/s', 'forward % of matmul rate', 'train % of matmul rate')]
  for r in result['runs']:
    rows.append((r['implementation'], f"{1e3 * r['forward_s']:.1f}", f"{1e3 * r['train_step_s']:.1f}",
                 f"{r['forward_clips_per_s']:.2f}", f"{r['train_clips_per_s']:.2f}",
                 f"{100 * r['forward_of_peak']:.1f}", f"{100 * r['train_of_peak']:.1f}"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = [head] + ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
  lines.append('train step temporaries (compiled) and minor page faults per step: ' + '; '.join(
      f"{r['implementation']} " + (f"{r['train_temp_mb']:.0f} MB, " if 'train_temp_mb' in r else '')
      + f"{r['train_page_faults']:,.0f} faults" for r in result['runs']))
  lines.append(f"vivit_jax vs the flax reference: train step {result['train_vs_reference']:.2f}x, inference "
               f"{result['forward_vs_reference']:.2f}x (same parameters: max |logit difference| "
               f"{result['max_abs_logit_diff_vs_reference']:.1e})")
  if 'forward_vs_transformers' in result:
    lines.append(f"vivit_jax vs transformers: inference {result['forward_vs_transformers']:.2f}x, train step "
                 f"{result['train_vs_transformers']:.2f}x")
  return '\n'.join(lines)


def run_sizes(names: Optional[List[str]] = None, steps: int = 5, huggingface: bool = True,
              overrides: Tuple[str, ...] = ()) -> List[Dict[str, Any]]:
  """`side_by_side` at each of `names` (default: every one of `SIZES`)."""
  return [dict(size=name, **side_by_side(size_config(name, overrides), steps, huggingface=huggingface))
          for name in names or list(SIZES)]
