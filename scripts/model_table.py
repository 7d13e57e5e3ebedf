#!/usr/bin/env python
"""Parameter counts and GFLOPs of configs' models: the `vivit-model-table` command (vivit_jax/cli/model_table.py);
`--help` says how."""

import sys

from vivit_jax.cli.model_table import main

if __name__ == '__main__':
  sys.exit(main())
