#!/usr/bin/env python
"""Builds DMVR TFRecords or a TFDS dataset from downloaded videos: the `vivit-prepare-data` command
(vivit_jax/cli/prepare_data.py); `--help` says how."""

import sys

from vivit_jax.cli.prepare_data import main

if __name__ == '__main__':
  sys.exit(main())
