"""`vivit-ablation` (scripts/run_ablation.py): one of the paper's ablations, run and tabulated beside the paper."""

import os
from typing import Optional, Sequence

import jax

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

--cost_only prints every entry's params and GFLOPs first (counted abstractly: nothing is allocated), then times
--time_steps training steps of each at the largest batch, up to --timing_batch_size (default: the config's),
whose compiled step fits this machine's free memory, and says which batch it timed, or why it timed none.
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
                      help="--cost_only: the largest batch to time (default: the config's; smaller where it "
                      'does not fit the free memory)')
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
      _cost_only(ablation, workdir, args, selection)
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


def _cost_only(ablation: spec.Ablation, workdir: str, args, selection) -> None:
  """Prints the params and GFLOPs table, then a line per entry as its timing ends."""
  print(sweep.format_costs(ablation, sweep.count_sweep(ablation, workdir, **selection)) + '\n', flush=True)
  if not args.time_steps:
    return
  steps = f"{args.time_steps} training step{'s' if args.time_steps > 1 else ''}"
  print(f'Timing {steps} of each entry on {_devices()}:', flush=True)
  for name, cost in sweep.time_sweep(ablation, workdir, time_steps=args.time_steps,
                                     batch_size=args.timing_batch_size, **selection):
    seconds = f", {cost['step_time_s']:.4g} s per step" if cost['step_time_s'] is not None else ''
    print(f"{name}: {cost['timing_note']}{seconds}", flush=True)
  print(flush=True)


def _devices() -> str:
  """'2 cpu devices', '1 NVIDIA H100 80GB HBM3 device': what the timings run on."""
  devices = jax.local_devices()
  kind = devices[0].device_kind if devices[0].platform != 'cpu' else 'cpu'
  return f"{len(devices)} {kind} device{'s' if len(devices) > 1 else ''}"
