#!/usr/bin/env python
"""Pretrains a tiny image ViT on single frames of the synthetic motion videos and saves it as a Scenic msgpack
checkpoint (configs/ablations/synthetic_init.py starts its ViViTs from it); see vivit_jax/image_pretrain.py.

  python scripts/pretrain_image_vit.py --output=runs/pretrained/vit_synthetic [--steps=N] [--grid=G] \\
      [--learning_rate=LR] [--seed=S]
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vivit_jax import image_pretrain  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  sys.exit(image_pretrain.main(sys.argv[1:]))
