"""Parameter counts and GFLOPs, as the paper counts them, without allocating anything.

Shapes come from `jax.eval_shape`; GFLOPs are the multiply-accumulates of every matmul and convolution in the
model's forward jaxpr (embedding, dense layers, attention QK^T and AV), divided by 1e9 — the paper's
convention (counting these lands within 0.3-0.8% of the paper's figures).
"""

import math
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from vivit_jax.models import PAPER_MODEL_NUMBER, create_model
from vivit_jax.models.shapes import input_shape, token_grid

# The paper's model-architecture table (ViViT-B, 16x2 tubelets, 32x224x224, Kinetics-400).
PAPER_MODEL_TABLE = (
    dict(model='1 Spatio-temporal', variant='spacetime', k400=80.0, ek=43.1, gflops=455.2,
         params=88_954_000, config='configs/kinetics400/vivit_base_k400.py'),
    dict(model='2 Factorised encoder', variant='factorized_encoder', k400=78.8, ek=43.7, gflops=284.4,
         params=115_062_928, config='configs/kinetics400/vivit_base_factorised_encoder.py'),
    dict(model='3 Factorised self-attention', variant='factorized_self_attention_block', k400=77.4,
         ek=39.1, gflops=372.3, params=117_319_312,
         config='configs/kinetics400/vivit_base_factorised_self_attention.py'),
    dict(model='4 Factorised dot-product', variant='factorized_dot_product_attention', k400=76.3,
         ek=39.5, gflops=277.1, params=88_952_464,
         config='configs/kinetics400/vivit_base_factorised_dot_product.py'),
    dict(model='2 Average-pool baseline', variant='factorized_encoder (spatial only)', k400=75.8,
         ek=38.8, gflops=283.9, params=86_696_080,
         config='configs/kinetics400/vivit_base_spatial_only_baseline.py'),
)


def traceable(model):
  """`model` with XLA attention and every token through the last block: the same parameters and function,
  traceable on any machine (cuDNN needs a GPU) and counted as the paper counts it (the model's shortcut that
  computes only the class token in the last block, `last_block_class_token_only`, is not subtracted)."""
  changes = {k: v for k, v in (('attention_implementation', 'xla'), ('last_block_class_token_only', False))
             if hasattr(model, k)}
  return model.clone(**changes) if changes else model


def abstract_params(model, shape: Tuple[int, ...]) -> Any:
  """The parameter tree as ShapeDtypeStructs (nothing is allocated)."""
  model = traceable(model)
  video = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), video)['params']


def count_params(params: Any) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


def _sub_jaxprs(eqn) -> Iterable[Tuple[Any, int]]:
  """(jaxpr, repeat count) for every jaxpr nested in an equation's parameters."""
  repeat = eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else 1
  for value in eqn.params.values():
    for v in (value if isinstance(value, (list, tuple)) else (value,)):
      if hasattr(v, 'eqns'):
        yield v, repeat
      elif hasattr(v, 'jaxpr') and hasattr(v.jaxpr, 'eqns'):
        yield v.jaxpr, repeat


def count_jaxpr_macs(jaxpr) -> int:
  """Multiply-accumulates of the dot_general and conv_general_dilated equations in a jaxpr."""
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      (_, rhs_contract), (_, rhs_batch) = eqn.params['dimension_numbers']
      lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
      free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
      total += math.prod(lhs) * math.prod(free)
    elif name == 'conv_general_dilated':
      rhs = eqn.invars[1].aval.shape
      out_features = rhs[eqn.params['dimension_numbers'].rhs_spec[0]]
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs) // out_features
    for sub, repeat in _sub_jaxprs(eqn):
      total += repeat * count_jaxpr_macs(sub)
  return total


def count_gflops(model, params: Any, shape: Tuple[int, ...]) -> float:
  """GFLOPs (1e9 multiply-accumulates) of one forward pass on a `shape` batch.

  Traced with XLA attention whatever the model is set to (`traceable`): a fused kernel (cuDNN) is one opaque
  call in the jaxpr, whose multiply-adds would otherwise go uncounted on a GPU.
  """
  model = traceable(model)
  video = jax.ShapeDtypeStruct(shape, jnp.float32)
  closed = jax.make_jaxpr(lambda p, v: model.apply({'params': p}, v, train=False))(params, video)
  return count_jaxpr_macs(closed.jaxpr) / 1e9


def variant_name(config: ml_collections.ConfigDict) -> str:
  kind = config.model.attention_config.type
  if kind == 'factorized_encoder' and config.model.attention_config.spatial_only_baseline:
    return 'factorized_encoder (spatial only)'
  return kind


def token_counts(config: ml_collections.ConfigDict) -> str:
  """Encoder sequence lengths, e.g. '3137' or 'spatial 197 x 16 frames, temporal 17'."""
  m = config.model
  frames, height, width = token_grid(config)
  spatial = height * width
  cls = 1 if m.classifier == 'token' else 0
  if m.attention_config.type != 'factorized_encoder':
    return str(frames * spatial + cls)
  text = f'spatial {spatial + cls} x {frames} frames'
  return text if m.attention_config.spatial_only_baseline else f'{text}, temporal {frames + cls}'


def config_gflops(config: ml_collections.ConfigDict) -> float:
  """GFLOPs (multiply-adds, the paper's convention) of one clip through `config`'s model, unrounded."""
  model = create_model(config)
  shape = input_shape(config)
  return count_gflops(model, abstract_params(model, shape), shape)


def summarize(config: ml_collections.ConfigDict, name: Optional[str] = None) -> Dict[str, Any]:
  """Variant, tokens, exact parameter count and GFLOPs of one config's model at its own clip size."""
  model = create_model(config)
  shape = input_shape(config)
  params = abstract_params(model, shape)
  return dict(config=name or config.experiment_name, variant=variant_name(config),
              paper_model=PAPER_MODEL_NUMBER[config.model.attention_config.type],
              tokens=token_counts(config), params=count_params(params),
              gflops=round(count_gflops(model, params, shape), 2))


def format_table(rows: List[Dict[str, Any]], paper: bool = False) -> str:
  """A plain-text table; with `paper`, the paper's figures and the GFLOPs difference beside ours."""
  header = f"{'config':60} {'variant':34} {'tokens':>32} {'params':>12} {'GFLOPs':>8}"
  if paper:
    header += f" {'paper params':>13} {'paper GFLOPs':>12} {'diff':>6} {'K400':>5}"
  lines = [header, '-' * len(header)]
  for r in rows:
    ref = next((p for p in PAPER_MODEL_TABLE
                if os.path.normpath(r['config']).endswith(os.path.normpath(p['config']))), None)
    line = (f"{r['config']:60} {r['variant']:34} {r['tokens']:>32} {r['params']:>12,} "
            f"{r['gflops']:>8.1f}")
    if paper and ref:
      diff = 100.0 * (r['gflops'] - ref['gflops']) / ref['gflops']
      line += f" {ref['params']:>13,} {ref['gflops']:>12.1f} {diff:>+5.1f}% {ref['k400']:>5.1f}"
    lines.append(line)
  return '\n'.join(lines)
