"""`vivit-gpu-check` (scripts/gpu_check.py): the accelerated paths against float32, one row per variant."""

import json
from typing import Optional, Sequence

import jax

from vivit_jax.cli import common
from vivit_jax.experiments.benchmarks import gpu_check

USAGE = """Checks the accelerated paths against float32: every variant's logits and gradients in bfloat16 with the
attention this machine picks (cuDNN flash attention on CUDA GPUs) against float32 with XLA attention at the
highest matmul precision, on the same random weights and clips.

  vivit-gpu-check [--frames=8] [--crop=64] [--layers=4] [--variants=a,b] [--json]

Prints one row per variant: the attention backend, max |logit difference| (logits of order 1), and the cosine
similarity of the two gradients. On CPU the bfloat16 run uses XLA attention too; the check still runs.
"""


def _parser():
  parser = common.parser('vivit-gpu-check', USAGE)
  parser.add_argument('--frames', type=int, default=8)
  parser.add_argument('--crop', type=int, default=64)
  parser.add_argument('--layers', type=int, default=4)
  parser.add_argument('--variants', default=','.join(gpu_check.VARIANTS), help='comma-separated '
                      'attention_config.type')
  parser.add_argument('--json', action='store_true')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, _ = common.parse(_parser(), argv, overrides=False)
  if not args.json:
    print(f'device: {jax.devices()[0].device_kind}; ViViT-B/16x2, {args.layers} layers, on '
          f'{args.frames}x{args.crop}x{args.crop} clips', flush=True)
  rows = []
  for kind in args.variants.split(','):
    rows.append(row := gpu_check.check_variant(kind, args.frames, args.crop, args.layers))
    if not args.json:
      print(gpu_check.format_row(row), flush=True)
  if args.json:
    print(json.dumps(rows, indent=2))
  return 0
