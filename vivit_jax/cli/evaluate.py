"""`vivit-evaluate` (scripts/evaluate.py): single-view and multi-view evaluation of any checkpoint."""

import re
from typing import Optional, Sequence

import jax

from vivit_jax.cli import common
from vivit_jax.config import ConfigError
from vivit_jax.data import Views
from vivit_jax.eval import evaluators, outputs

USAGE = """Evaluates any checkpoint that load_params reads on a split, single view and multi view, in one pass each.

  vivit-evaluate --checkpoint=runs/k400 [--config=FILE[:preset]] [--split=test|validation|...] [--views=4x3]
      [--aggregation=logits|softmax] [--output=eval_SPLIT.json] [--batch_size=N] [--label_map=FILE]
      [--config.KEY=VALUE ...]

The config (the file with its overrides; without --config, the one saved in a vivit_jax checkpoint) says the
model and the data. Without --split: 'test' when the config names test data (a test table, or
examples_per_subset.test), else 'validation' (a folder dataset has no test split); the choice is printed.
--views=CLIPSxCROPS (default: the config's num_test_clips x 1 or 3 crops) sets the multi-view pass; with one
view it is the single-view pass, which is also what training reports as valid/...
The params are checked against the model (a mismatch lists the missing, unexpected and mis-shaped paths) and
placed on the mesh by the sharding rules.

Batch sizes are videos per global batch and never depend on the device count: --batch_size for both passes,
else eval_batch_size (else batch_size) for the single view and dataset_configs.test_batch_size for the multi
view, each rounded up to a multiple of the mesh's data x fsdp size (the extra rows are masked padding). Views
per forward pass are bounded by eval_max_views_per_batch.

Outputs: a table on the console; --output JSON ({'metrics': {'single_view/...', 'multi_view/...'}, the
checkpoint, config, split, views, aggregation and batch sizes, 'files'}); beside it, from the multi-view pass,
<stem>_per_class.csv, <stem>_confusion.csv and <stem>_confusion.png (one of each per head for multi-head
models), the classes named by --label_map (JSON {'names': [...]} or a list; default: the names saved with the
checkpoint, else class_<i>). The PNG is a heat map with the class names, the count in every cell and a colour
bar for up to 30 classes, else a bar chart of the most confused pairs (true -> predicted). clips_per_s counts
real clips (views of real videos, not padding) per second after the first batch, which holds the compilation.
Exit status 2 when the checkpoint, config or data cannot be used.
"""


def parse_views(text: str) -> Views:
  """'4x3' -> Views(4 temporal clips, 3 crops)."""
  match = re.fullmatch(r'\s*(\d+)\s*[xX]\s*([13])\s*', text or '')
  if not match or int(match.group(1)) < 1:
    raise ConfigError(f"--views must be CLIPSxCROPS with CLIPS >= 1 and CROPS 1 or 3 (e.g. 4x3), got {text!r}")
  return Views(int(match.group(1)), int(match.group(2)))


def _parser():
  parser = common.parser('vivit-evaluate', USAGE)
  common.add_checkpoint_flags(parser)
  parser.add_argument('--split', default=None,
                      help="split to evaluate (default: 'test' if the config has test data, else 'validation')")
  parser.add_argument('--views', default=None, help="CLIPSxCROPS, e.g. 4x3 or 4x1 (default: the config's)")
  parser.add_argument('--aggregation', default='logits', choices=evaluators.AGGREGATIONS,
                      help='average logits (the paper) or probabilities over views')
  parser.add_argument('--output', default=None, help='results JSON (default: eval_<split>.json, the split chosen)')
  parser.add_argument('--batch_size', type=common.positive_int, default=None, help='videos per global batch')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, overrides = common.parse(_parser(), argv)
  common.setup_logging()
  chosen = {}

  def split_chosen(split: str) -> None:
    """Names the output after the split and checks it before any pass; says which split a default chose."""
    chosen['output'] = args.output or f'eval_{split}.json'
    common.check_output(chosen['output'])
    if args.split is None and jax.process_index() == 0:
      reason = 'the config has test data' if split == 'test' else 'the config names no test data'
      print(f"No --split given: evaluating '{split}' ({reason})", flush=True)

  try:
    views = parse_views(args.views) if args.views else None
    if args.output:
      common.check_output(args.output)  # Before the checkpoint is read, not after the passes.
    summary, passes, restored = evaluators.evaluate_checkpoint(
        args.checkpoint, args.config, overrides, args.split, views, args.aggregation, args.batch_size,
        args.label_map, split_chosen=split_chosen)
    summary['config'] = args.config or f'{args.checkpoint} (saved config)'
    if jax.process_index() == 0:
      outputs.write_outputs(summary, passes, restored.task, chosen['output'], restored.label_names)
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  if jax.process_index() == 0:
    print(outputs.format_table(summary))
    print(f"Results in {chosen['output']}")
  return 0
