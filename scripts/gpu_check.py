#!/usr/bin/env python
"""Checks the accelerated paths against float32: the `vivit-gpu-check` command (vivit_jax/cli/gpu_check.py); `--help`
says how."""

import sys

from vivit_jax.cli.gpu_check import main

if __name__ == '__main__':
  sys.exit(main())
