#!/usr/bin/env python
"""Exports a checkpoint as a TensorFlow SavedModel (default) or an ONNX model (`--format=onnx`, with the onnx
extra: pip install 'vivit_jax[onnx]'), checked against the JAX model: the `vivit-export` command
(vivit_jax/cli/export.py); `--help` says how."""

import sys

from vivit_jax.cli.export import main

if __name__ == '__main__':
  sys.exit(main())
