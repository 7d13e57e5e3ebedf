"""The accelerated paths checked against float32: every variant's logits and gradients in bfloat16 with the
attention this machine picks (cuDNN flash attention on CUDA GPUs, padded to even lengths) against float32 with
XLA attention at the highest matmul precision, on the same random weights and clips. On CPU the bfloat16 run
uses the CPU's attention (einsum or chunked); the check still runs."""

from typing import Any, Dict, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.config import ATTENTION_TYPES as VARIANTS
from vivit_jax.config import defaults, load_config, validate_config
from vivit_jax.models import attention, create_model


def check_variant(kind: str, frames: int, crop: int, layers: int, batch: int = 2,
                  overrides: Sequence[str] = ()) -> Dict[str, Any]:
  """{'variant', 'attention', 'logit_scale', 'max_abs_logit_diff', 'grad_cosine'} for a ViViT-B/16x2 of `kind`
  with `layers` layers per encoder; `overrides` ('KEY=VALUE') apply to the bfloat16 model only (e.g.
  'model.attention_padding=once' checks the masked path where 'auto' pads per layer)."""
  base = defaults.get_config()
  base.dataset_configs.num_frames, base.dataset_configs.crop_size = frames, crop
  base.dataset_configs.num_classes = 10
  base.model.attention_config.type = kind
  base.model.num_layers = base.model.spatial_transformer.num_layers = layers
  base.model.temporal_transformer.num_layers = layers
  base.model.classifier = 'gap' if kind in VARIANTS[2:] else 'token'  # Models 3 and 4 have no class token.
  f32 = validate_config(base)
  bf16 = load_config(f32, ['model_dtype_str=bfloat16', *overrides])
  video = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, frames, crop, crop, 3)), jnp.float32)
  model32, model16 = create_model(load_config(f32, ['model.attention_implementation=xla'])), create_model(bf16)
  def init(clip):  # One compiled program (op by op, each parameter shape would compile its own).
    params = model32.init(jax.random.PRNGKey(0), clip, train=False)['params']
    return jax.tree_util.tree_map(lambda p: p + 0.02 * jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
  params = jax.jit(init)(video[:1])
  labels = jax.nn.one_hot(jnp.arange(batch) % 10, 10)

  def logits_and_grads(model):  # One compiled program for both (the check's time is mostly compiling).
    def loss(p):
      logits = model.apply({'params': p}, video, train=False).astype(jnp.float32)
      return -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), -1)), logits
    grads, logits = jax.jit(jax.grad(loss, has_aux=True))(params)
    return logits, grads

  with jax.default_matmul_precision('highest'):
    logits32, grads32 = logits_and_grads(model32)
  with attention.recorded_backends() as used:
    logits16, grads16 = logits_and_grads(model16)
  return {'variant': kind, 'attention': ', '.join(used),
          **{k: float(v) for k, v in _compare(logits32, grads32, logits16, grads16).items()}}


@jax.jit
def _compare(logits32, grads32, logits16, grads16) -> Dict[str, Any]:
  """The logits' scale, their max |difference| and the gradients' cosine similarity (one compiled program: op by
  op, each parameter shape would compile its own)."""
  total = lambda f: sum(jax.tree_util.tree_leaves(jax.tree_util.tree_map(f, grads32, grads16)))
  dot = lambda x, y: jnp.vdot(x.astype(jnp.float32), y.astype(jnp.float32))
  cosine = total(dot) / jnp.sqrt(total(lambda x, _: dot(x, x)) * total(lambda _, y: dot(y, y)))
  return {'logit_scale': jnp.abs(logits32).max(), 'max_abs_logit_diff': jnp.abs(logits32 - logits16).max(),
          'grad_cosine': cosine}


def format_row(r: Dict[str, Any]) -> str:
  return (f"{r['variant']:<34} attention {r['attention']:<6} |logits| <= {r['logit_scale']:.3g}  "
          f"max |diff| {r['max_abs_logit_diff']:.3g}  grad cosine {r['grad_cosine']:.5f}")
