#!/usr/bin/env python
"""Checks the accelerated paths against float32: every variant's logits and gradients in bfloat16 with the
attention this machine picks (cuDNN flash attention on CUDA GPUs, padded to even lengths) against float32 with
XLA attention at the highest matmul precision, on the same random weights and clips.

  python scripts/gpu_check.py [--frames=8] [--crop=64] [--layers=4] [--variants=a,b] [--json]

Prints one row per variant: the attention backend, max |logit difference| (logits of order 1), and the cosine
similarity of the two gradients. On CPU the bfloat16 run uses XLA attention too; the check still runs.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vivit_jax.config import ATTENTION_TYPES as VARIANTS  # pylint: disable=g-import-not-at-top,wrong-import-position


def check_variant(kind: str, frames: int, crop: int, layers: int, batch: int = 2):
  """{'variant', 'attention', 'max_abs_logit_diff', 'grad_cosine'} for a ViViT-B/16x2 of `kind` with `layers`
  layers per encoder."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from vivit_jax.config import load_config, validate_config  # pylint: disable=g-import-not-at-top
  from vivit_jax.models import attention, create_model  # pylint: disable=g-import-not-at-top
  base = default.get_config()
  base.dataset_configs.num_frames, base.dataset_configs.crop_size = frames, crop
  base.dataset_configs.num_classes = 10
  base.model.attention_config.type = kind
  base.model.num_layers = base.model.spatial_transformer.num_layers = layers
  base.model.temporal_transformer.num_layers = layers
  base.model.classifier = 'gap' if kind in VARIANTS[2:] else 'token'  # Models 3 and 4 have no class token.
  f32 = validate_config(base)
  bf16 = load_config(f32, ['model_dtype_str=bfloat16'])
  video = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, frames, crop, crop, 3)), jnp.float32)
  model32, model16 = create_model(load_config(f32, ['model.attention_implementation=xla'])), create_model(bf16)
  params = model32.init(jax.random.PRNGKey(0), video[:1], train=False)['params']
  params = jax.tree_util.tree_map(lambda p: p + 0.02 * jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
  labels = jax.nn.one_hot(jnp.arange(batch) % 10, 10)

  def loss(model):
    return lambda p: -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(model.apply({'params': p}, video, train=False)
                                                                    .astype(jnp.float32)), -1))

  with jax.default_matmul_precision('highest'):
    logits32 = jax.jit(lambda p: model32.apply({'params': p}, video, train=False))(params)
    grads32 = jax.jit(jax.grad(loss(model32)))(params)
  logits16 = jax.jit(lambda p: model16.apply({'params': p}, video, train=False))(params).astype(jnp.float32)
  grads16 = jax.jit(jax.grad(loss(model16)))(params)
  flat = lambda g: jnp.concatenate([x.ravel().astype(jnp.float32) for x in jax.tree_util.tree_leaves(g)])
  a, b = flat(grads32), flat(grads16)
  probe = jnp.zeros((1, 2, 2, 64), jnp.bfloat16)
  return {'variant': kind, 'attention': attention.attention_backend(None, probe),
          'logit_scale': float(jnp.abs(logits32).max()),
          'max_abs_logit_diff': float(jnp.abs(logits32 - logits16).max()),
          'grad_cosine': float(jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--frames', type=int, default=8)
  parser.add_argument('--crop', type=int, default=64)
  parser.add_argument('--layers', type=int, default=4)
  parser.add_argument('--variants', default=','.join(VARIANTS), help='comma-separated attention_config.type')
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  if not args.json:
    print(f'device: {jax.devices()[0].device_kind}; ViViT-B/16x2, {args.layers} layers, on '
          f'{args.frames}x{args.crop}x{args.crop} clips', flush=True)
  rows = []
  for kind in args.variants.split(','):
    rows.append(r := check_variant(kind, args.frames, args.crop, args.layers))
    if not args.json:
      print(f"{r['variant']:<34} attention {r['attention']:<6} |logits| <= {r['logit_scale']:.3g}  "
            f"max |diff| {r['max_abs_logit_diff']:.3g}  grad cosine {r['grad_cosine']:.5f}", flush=True)
  if args.json:
    print(json.dumps(rows, indent=2))
  return 0


if __name__ == '__main__':
  sys.exit(main())
