"""`vivit-pretrain-image-vit` (scripts/pretrain_image_vit.py): the tiny image ViT of the synthetic_init ablation."""

import json
from typing import Optional, Sequence

from vivit_jax.cli import common
from vivit_jax.experiments import image_pretrain

USAGE = """Pretrains a tiny image ViT on single frames of the synthetic motion videos (which cells of a grid a
square covers) and saves it as a Scenic checkpoint, for configs/ablations/synthetic_init.py to start from.

  vivit-pretrain-image-vit --output=runs/pretrained/vit_synthetic [--steps=1500] [--grid=8]
      [--learning_rate=0.003] [--seed=0]
"""


def _parser():
  parser = common.parser('vivit-pretrain-image-vit', USAGE)
  parser.add_argument('--output', default='runs/pretrained/vit_synthetic', help='the msgpack file to write')
  parser.add_argument('--steps', type=common.positive_int, default=image_pretrain.DEFAULT_STEPS,
                      help='training steps')
  parser.add_argument('--grid', type=common.positive_int, default=image_pretrain.DEFAULT_GRID,
                      help='occupancy cells per side (a divisor of the frame side)')
  parser.add_argument('--learning_rate', type=common.positive_float, default=image_pretrain.DEFAULT_LEARNING_RATE)
  parser.add_argument('--seed', type=common.non_negative_int, default=0)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = _parser()
  args, _ = common.parse(parser, argv, overrides=False)
  spec = image_pretrain.ImageViTSpec(grid=args.grid)
  if spec.image_size % args.grid:
    parser.error(f'--grid={args.grid}: expected a divisor of the {spec.image_size}-pixel frame side')
  try:
    common.check_output(args.output)  # Before the training, not after it.
    result = image_pretrain.pretrain_image_vit(args.output, args.steps, spec, log=print,
                                               learning_rate=args.learning_rate, seed=args.seed)
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  print(json.dumps(result, indent=2))
  return 0
