#!/usr/bin/env python
"""Parameter counts and GFLOPs of configs' models, computed abstractly (nothing is allocated).

  python scripts/model_table.py --config configs/kinetics400/vivit_base_k400.py [--config FILE ...] [--json]
  python scripts/model_table.py --paper     # the paper's five-row model table beside ours
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vivit_jax.config import load_config  # pylint: disable=g-import-not-at-top
from vivit_jax.models import complexity  # pylint: disable=g-import-not-at-top


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--config', action='append', default=[], help='config file[:preset]; repeatable')
  parser.add_argument('--json', action='store_true', help='print a JSON list of {config, variant, params, '
                      'gflops, tokens, paper_model}')
  parser.add_argument('--paper', action='store_true', help="show the paper's figures beside ours (with no "
                      '--config: the five B/16x2 configs of the paper table)')
  args = parser.parse_args(argv)
  configs = args.config or ([row['config'] for row in complexity.PAPER_MODEL_TABLE] if args.paper else [])
  if not configs:
    parser.error('give --config FILE (repeatable) or --paper')
  root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
  rows = []
  for spec in configs:
    path = spec if os.path.exists(spec.partition(':')[0]) else os.path.join(root, spec)
    rows.append(complexity.summarize(load_config(path), name=spec))
  if args.json:
    print(json.dumps(rows, indent=2))
  else:
    print(complexity.format_table(rows, paper=args.paper))
  return 0


if __name__ == '__main__':
  sys.exit(main())
