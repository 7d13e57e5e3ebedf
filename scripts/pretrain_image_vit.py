#!/usr/bin/env python
"""Pretrains the tiny image ViT of the synthetic_init ablation: the `vivit-pretrain-image-vit` command
(vivit_jax/cli/pretrain_image_vit.py); `--help` says how."""

import sys

from vivit_jax.cli.pretrain_image_vit import main

if __name__ == '__main__':
  sys.exit(main())
