"""`vivit-gpu-check` (scripts/gpu_check.py): the accelerated paths against float32, one row per variant."""

import json
import sys
from typing import Optional, Sequence

import jax

from vivit_jax.cli import common
from vivit_jax.experiments.benchmarks import gpu_check

USAGE = """Checks the accelerated paths against float32: every variant's logits and gradients in bfloat16 with the
attention this machine picks (cuDNN flash attention on CUDA GPUs) against float32 with XLA attention at the
highest matmul precision, on the same random weights and clips.

  vivit-gpu-check [--frames=8] [--crop=64] [--layers=4] [--variants=a,b] [--json] [--config.KEY=VALUE ...]

Prints one row per variant: the attention backend, max |logit difference| (logits of order 1), and the cosine
similarity of the two gradients. On CPU the bfloat16 run uses the CPU's attention (einsum or chunked); the
check still runs.
--config.KEY=VALUE changes the bfloat16 model only: --config.model.attention_padding=once checks cuDNN's masked
path (one padding for all layers), which 'auto' takes at 224-pixel sizes but not at these small ones.
"""


def _parser():
  parser = common.parser('vivit-gpu-check', USAGE)
  parser.add_argument('--frames', type=common.positive_int, default=8, help='frames per clip (a multiple of 2)')
  parser.add_argument('--crop', type=common.positive_int, default=64, help='crop side (a multiple of 16)')
  parser.add_argument('--layers', type=common.positive_int, default=4, help='layers per encoder')
  parser.add_argument('--variants', default=','.join(gpu_check.VARIANTS), help='comma-separated '
                      'attention_config.type')
  parser.add_argument('--json', action='store_true')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = _parser()
  args, overrides = common.parse(parser, argv)
  unknown = [v for v in args.variants.split(',') if v not in gpu_check.VARIANTS]
  if unknown:
    parser.error(f'--variants: unknown {unknown}; expected names from {list(gpu_check.VARIANTS)}')
  if args.frames % 2 or args.crop % 16:  # ViViT-B/16x2: 16x16 patches, 2-frame tubelets.
    parser.error(f'--frames={args.frames} --crop={args.crop}: expected an even number of frames and a crop '
                 'that is a multiple of 16 (ViViT-B/16x2 tubelets)')
  if not args.json:
    print(f'device: {jax.devices()[0].device_kind}; ViViT-B/16x2, {args.layers} layers, on '
          f'{args.frames}x{args.crop}x{args.crop} clips', flush=True)
  rows = []
  try:
    for kind in args.variants.split(','):
      rows.append(row := gpu_check.check_variant(kind, args.frames, args.crop, args.layers, overrides=overrides))
      if not args.json:
        print(gpu_check.format_row(row), flush=True)
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  if args.json:
    print(json.dumps(rows, indent=2))
  return 0


if __name__ == '__main__':
  sys.exit(main())
