#!/usr/bin/env python
"""Evaluates a checkpoint single-view and multi-view on a split: the `vivit-evaluate` command
(vivit_jax/cli/evaluate.py); `--help` says how."""

import sys

from vivit_jax.cli.evaluate import main

if __name__ == '__main__':
  sys.exit(main())
