#!/usr/bin/env python
"""Writes one embedding per video (pre-logits averaged over the views) to a .npz: the `vivit-features` command
(vivit_jax/cli/features.py); `--help` says how."""

import sys

from vivit_jax.cli.features import main

if __name__ == '__main__':
  sys.exit(main())
