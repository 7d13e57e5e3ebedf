#!/usr/bin/env python
"""Converts checkpoints between vivit_jax, Scenic and Hugging Face: the `vivit-convert` command
(vivit_jax/cli/convert.py); `--help` says how."""

import sys

from vivit_jax.cli.convert import main

if __name__ == '__main__':
  sys.exit(main())
