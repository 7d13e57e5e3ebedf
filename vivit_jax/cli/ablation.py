"""`vivit-ablation` (scripts/run_ablation.py): one of the paper's ablations, run and tabulated beside the paper."""

import os
from typing import Optional, Sequence

from vivit_jax.cli import common
from vivit_jax.experiments.ablation import report, spec, sweep

USAGE = """Runs one of the paper's ablations (configs/ablations/) and tabulates it beside the paper.

  vivit-ablation --config=configs/ablations/FILE.py [--workdir=runs/ablations/NAME] [--only=name1,name2]
      [--dataset=synthetic] [--config.KEY=VALUE ...]
  vivit-ablation --config=... --print_commands   # one training command per entry, then exit
  vivit-ablation --config=... --cost_only        # params, GFLOPs, timed steps; no training
  vivit-ablation --config=... --collect_only     # the report from the runs there so far

Runs already completed are skipped; rerunning resumes the others. The report is WORKDIR/ablation.{md,csv,png}.
--dataset=synthetic trains any ablation's models on generated motion videos (no download).
"""


def _parser():
  parser = common.parser('vivit-ablation', USAGE)
  parser.add_argument('--config', required=True, help='ablation file[:arg], e.g. configs/ablations/x.py')
  parser.add_argument('--workdir', default=None, help='default: runs/ablations/NAME; run NAME in WORKDIR/NAME')
  parser.add_argument('--only', default='', help='comma-separated entry names (default: every entry)')
  parser.add_argument('--dataset', default=None, choices=sorted(sweep.DATASETS),
                      help="train on another dataset: 'synthetic' (generated motion videos, any machine)")
  parser.add_argument('--print_commands', action='store_true', help='print one training command per entry')
  parser.add_argument('--cost_only', action='store_true', help='params, GFLOPs and timed steps; no training')
  parser.add_argument('--collect_only', action='store_true', help='write the report from existing runs')
  parser.add_argument('--time_steps', type=common.non_negative_int, default=3,
                      help='--cost_only: timed steps (0: none)')
  parser.add_argument('--timing_batch_size', type=common.positive_int, default=None,
                      help='--cost_only: batch (default: config)')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, extra = common.parse(_parser(), argv)
  common.setup_logging()
  only = [n for n in args.only.split(',') if n]
  try:
    ablation = spec.load_ablation(args.config)
    workdir = args.workdir or os.path.join('runs', 'ablations', ablation.name)
    selection = dict(only=only, dataset=args.dataset, extra=extra)
    if args.print_commands:
      print('\n'.join(sweep.commands(ablation, workdir, **selection)))
      return 0
    common.check_output(workdir, directory=True)
    if args.cost_only:
      sweep.cost_sweep(ablation, workdir, time_steps=args.time_steps, batch_size=args.timing_batch_size,
                       **selection)
    elif not args.collect_only:
      sweep.run_sweep(ablation, workdir, **selection)
    paths = report.collect(ablation, workdir, **selection)
    with open(paths['md']) as f:
      table = f.read()
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  print(table)
  print('Wrote ' + ', '.join(paths.values()))
  return 0
