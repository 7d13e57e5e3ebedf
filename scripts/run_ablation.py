#!/usr/bin/env python
"""Runs one of the paper's ablations (configs/ablations/) and tabulates it beside the paper; see
vivit_jax/ablation.py.

  python scripts/run_ablation.py --config=configs/ablations/FILE.py [--workdir=runs/ablations/NAME]
      [--only=name1,name2] [--dataset=synthetic] [--config.KEY=VALUE ...]
  python scripts/run_ablation.py --config=... --print_commands   # one training command per entry, then exit
  python scripts/run_ablation.py --config=... --cost_only        # params, GFLOPs, timed steps; no training
  python scripts/run_ablation.py --config=... --collect_only     # the report from the runs there so far

Runs already completed are skipped; rerunning resumes the others. The report is WORKDIR/ablation.{md,csv,png}.
`--dataset=synthetic` trains any ablation's models on generated motion videos (no download).
"""

import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vivit_jax import ablation  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
  sys.exit(ablation.main(sys.argv[1:]))
