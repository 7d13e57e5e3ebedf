#!/usr/bin/env python
"""Runs one of the paper's ablations and tabulates it: the `vivit-ablation` command (vivit_jax/cli/ablation.py);
`--help` says how."""

import sys

from vivit_jax.cli.ablation import main

if __name__ == '__main__':
  sys.exit(main())
