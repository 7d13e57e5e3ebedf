"""`vivit-model-table` (scripts/model_table.py): parameter counts and GFLOPs of configs' models."""

import json
import os
from typing import Optional, Sequence

from vivit_jax.cli import common
from vivit_jax.config import load_config
from vivit_jax.models import complexity

USAGE = """Parameter counts and GFLOPs of configs' models, computed abstractly (nothing is allocated).

  vivit-model-table --config configs/kinetics400/vivit_base_k400.py [--config FILE ...] [--json]
  vivit-model-table --paper     # the paper's five-row model table beside ours

A relative config path that does not exist from the working directory is looked up in the repository that
holds this vivit_jax checkout.
"""
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parser():
  parser = common.parser('vivit-model-table', USAGE)
  parser.add_argument('--config', action='append', default=[], help='config file[:preset]; repeatable')
  parser.add_argument('--json', action='store_true', help='print a JSON list of {config, variant, params, '
                      'gflops, tokens, paper_model}')
  parser.add_argument('--paper', action='store_true', help="show the paper's figures beside ours (with no "
                      '--config: the five B/16x2 configs of the paper table)')
  return parser


def _resolve(spec: str) -> str:
  """`spec` from the working directory, else from the repository; as given when neither holds the file."""
  file = spec.partition(':')[0]
  if not os.path.exists(file) and os.path.exists(os.path.join(REPOSITORY, file)):
    return os.path.join(REPOSITORY, spec)
  return spec


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = _parser()
  args, _ = common.parse(parser, argv, overrides=False)
  configs = args.config or ([row['config'] for row in complexity.PAPER_MODEL_TABLE] if args.paper else [])
  if not configs:
    parser.error('give --config FILE (repeatable) or --paper')
  rows = []
  try:
    for spec in configs:
      rows.append(complexity.summarize(load_config(_resolve(spec)), name=spec))
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  print(json.dumps(rows, indent=2) if args.json else complexity.format_table(rows, paper=args.paper))
  return 0
