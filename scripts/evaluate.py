#!/usr/bin/env python
"""Evaluates a checkpoint single-view and multi-view on a split; see vivit_jax/evaluation.py.

  python scripts/evaluate.py --config=FILE --checkpoint=PATH [--split=test] [--views=4x3] \\
      [--aggregation=logits|softmax] [--output=FILE.json] [--batch_size=N] [--config.KEY=VALUE ...]
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vivit_jax import evaluation  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  sys.exit(evaluation.main(sys.argv[1:]))
