#!/usr/bin/env python
"""Benchmarks that print numbers: the `vivit-benchmark` command (vivit_jax/cli/benchmark.py); `--help` says how."""

import sys

from vivit_jax.cli.benchmark import main

if __name__ == '__main__':
  sys.exit(main())
