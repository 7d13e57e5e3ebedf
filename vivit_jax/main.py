"""Trains and evaluates a ViViT config (`vivit-train` or `python -m vivit_jax.main`); rerunning the same command
resumes.

  python -m vivit_jax.main --config=configs/synthetic.py --workdir=runs/demo
  python -m vivit_jax.main --config=configs/kinetics400/vivit_base_k400.py --workdir=runs/k400 \\
      --config.batch_size=32 --config.lr_configs.base_learning_rate=0.05
  python -m vivit_jax.main --config=FILE --dry_run     # validate, count, estimate memory; train nothing

`--config=FILE[:preset]` and `--config.KEY=VALUE` follow ml_collections' config_flags syntax. The overrides are
applied after the file has been merged onto the defaults, so any declared key can be overridden (even one a
Scenic file leaves out), and they are validated like the file: a misspelt key is an error naming the closest
valid key. Multi-host runs pass --coordinator_address, --num_processes and --process_id to every process (or
nothing, where jax.distributed detects the cluster, e.g. on TPU pods and SLURM). The run writes WORKDIR/config.json,
TensorBoard events, checkpoints, WORKDIR/metrics.jsonl and WORKDIR/results.json.
"""

import sys
from typing import List, Sequence

from absl import app, flags

from vivit_jax.config import ConfigError, load_config, split_config_overrides

FLAGS = flags.FLAGS
flags.DEFINE_string('config', None, 'Config file, optionally with a preset: path/to/file.py[:arg].')
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, summaries, config.json and results.json.')
flags.DEFINE_bool('dry_run', False, 'Validate the config, build model and state abstractly, print the '
                  'parameter count, GFLOPs and per-device memory estimate, and exit.')
flags.DEFINE_string('coordinator_address', None, 'Multi-host: host:port of process 0 (jax.distributed).')
flags.DEFINE_integer('num_processes', None, 'Multi-host: the number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-host: this process index.')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() with auto-detection (TPU pods, '
                  'SLURM, ...) when no coordinator address is given.')

_OVERRIDES: List[str] = []


def _parse_flags(argv: Sequence[str]) -> List[str]:
  try:
    rest, overrides = split_config_overrides(argv)
  except ConfigError as e:
    raise app.UsageError(str(e)) from e
  _OVERRIDES[:] = overrides
  return FLAGS(rest)


def _initialise_distributed() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  elif FLAGS.distributed:
    jax.distributed.initialize()


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not FLAGS.config:
    raise app.UsageError('--config=FILE[:preset] is required')
  try:
    config = load_config(FLAGS.config, overrides=_OVERRIDES)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if FLAGS.dry_run:
    from vivit_jax.train import dry_run  # pylint: disable=g-import-not-at-top
    print(dry_run.describe(config))
    return 0
  if not FLAGS.workdir:
    raise app.UsageError('--workdir=DIR is required to train')
  _initialise_distributed()
  from vivit_jax import train  # pylint: disable=g-import-not-at-top
  from vivit_jax.cli.common import quiet_library_logs  # pylint: disable=g-import-not-at-top
  from vivit_jax.train import reporting  # pylint: disable=g-import-not-at-top
  quiet_library_logs()
  results = train.train_and_evaluate(config, FLAGS.workdir)
  print(reporting.format_results(results))
  return 0


def run() -> None:
  """The `vivit-train` console script; its --help shows this module's usage."""
  main_module = sys.modules.get('__main__')
  if main_module is not None and not getattr(main_module, '__doc__', None):
    main_module.__doc__ = __doc__
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()
