#!/usr/bin/env python
"""Classifies video files with a checkpoint: the `vivit-predict` command (vivit_jax/cli/predict.py); `--help` says
how."""

import sys

from vivit_jax.cli.predict import main

if __name__ == '__main__':
  sys.exit(main())
