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
TensorBoard events, checkpoints, WORKDIR/metrics.jsonl and WORKDIR/results.json, and ends by printing the results
and where those are. The libraries' own logs (TensorFlow, absl, JAX, Orbax) and the parameter table of a resumed
run are shown with --verbose (or VIVIT_VERBOSE=1).
"""

import sys
from typing import Any, List, Sequence

import ml_collections
from absl import app, flags

from vivit_jax.cli import quiet
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
flags.DEFINE_bool('verbose', False, "Show the libraries' own logs (TensorFlow, absl, JAX, Orbax) and the parameter "
                  f'table of a resumed run; also {quiet.VERBOSE_ENV}=1.')

_OVERRIDES: List[str] = []


def _parse_flags(argv: Sequence[str]) -> List[str]:
  """absl's flag parsing, with a bad flag or override reported as one `error:` line (exit status 2)."""
  try:
    rest, overrides = split_config_overrides(argv)
    remaining = FLAGS(rest)
  except (ConfigError, flags.Error) as e:
    sys.exit(_fail(f'{e} (see --help)'))
  _OVERRIDES[:] = overrides
  return remaining


def _fail(message: Any) -> int:
  """One `error:` line on stderr; the exit status 2. (`cli.common.fail` once the heavy modules are imported.)"""
  print(f'error: {message}', file=sys.stderr)
  return 2


def _initialise_distributed() -> None:
  """Joins the multi-process run the flags describe (jax.distributed, CPU collectives over gloo); raises
  UsageError for process flags that cannot work, and when the coordinator cannot be reached."""
  import jax  # pylint: disable=g-import-not-at-top
  from vivit_jax.cli.common import UsageError  # pylint: disable=g-import-not-at-top
  address, count, index = FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
  if not address and not FLAGS.distributed:
    if count not in (None, 1) or index not in (None, 0):
      raise UsageError(f'--num_processes={count} --process_id={index} given without --coordinator_address=HOST:PORT '
                       '(or --distributed): each process would train alone, as process 0 of 1')
    return
  if address:
    host, _, port = address.rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise UsageError(f'--coordinator_address={address}: expected HOST:PORT, a port between 1 and 65535 '
                       '(e.g. 10.0.0.1:1234)')
  if count is not None and count < 1:
    raise UsageError(f'--num_processes={count}: expected at least 1')
  if index is not None and (index < 0 or (count is not None and index >= count)):
    raise UsageError(f'--process_id={index}: expected 0 <= process_id < --num_processes={count}')
  try:
    jax.distributed.initialize(address, count, index)
  except (ValueError, TypeError) as e:  # What cluster auto-detection could not find, named by jax.
    raise UsageError(f'jax.distributed.initialize: {e}') from e
  except jax.errors.JaxRuntimeError as e:  # No coordinator at `address` within jax's initialization timeout.
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UsageError(f'process {index} of {count} cannot join the coordinator at {address}: {first}') from e


def _load(argv: Sequence[str]) -> ml_collections.ConfigDict:
  """The validated config of a run the flags describe completely; a ConfigError naming what is missing."""
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments: {" ".join(argv[1:])} (see --help)')
  if not FLAGS.config:
    raise ConfigError('--config=FILE[:preset] is required (see --help)')
  config = load_config(FLAGS.config, overrides=_OVERRIDES)
  if not FLAGS.dry_run and not FLAGS.workdir:
    raise ConfigError('--workdir=DIR is required to train (or pass --dry_run)')
  if config.num_training_steps is None and config.num_training_epochs is None:
    raise ConfigError(f"{FLAGS.config}: set 'num_training_epochs' or 'num_training_steps' to say how long to "
                      'train')
  return config


def main(argv: Sequence[str]) -> int:
  """Validates the config, then describes it (--dry_run) or trains it. An expected failure (a bad flag, config,
  checkpoint, data, mesh or path, or a loss that stopped being finite) is one `error:` line and exit status 2
  (1 for the loss); anything else is a bug and keeps its traceback."""
  if FLAGS.verbose:
    quiet.set_verbose()
  quiet.quiet_library_logs()  # absl's handler is installed by now; the JAX TPU probe comes later.
  try:
    config = _load(argv)  # Before TensorFlow and the trainer are imported: a bad config fails fast.
  except ConfigError as e:
    return _fail(e)
  from vivit_jax.cli import common  # pylint: disable=g-import-not-at-top
  from vivit_jax.train.loop import NonFiniteLossError  # pylint: disable=g-import-not-at-top
  try:
    return _describe_or_train(config)
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  except NonFiniteLossError as e:
    return common.fail(e, status=1)


def _describe_or_train(config: ml_collections.ConfigDict) -> int:
  if FLAGS.dry_run:
    from vivit_jax.train import dry_run  # pylint: disable=g-import-not-at-top
    print(dry_run.describe(config))
    return 0
  _initialise_distributed()
  from vivit_jax import train  # pylint: disable=g-import-not-at-top
  from vivit_jax.train import reporting  # pylint: disable=g-import-not-at-top
  results = train.train_and_evaluate(config, FLAGS.workdir)
  print(reporting.format_results(results))
  print('\n' + reporting.format_locations(FLAGS.workdir))
  return 0


def run() -> None:
  """The `vivit-train` console script; its --help shows this module's usage. The quiet environment is set
  first, before anything imports TensorFlow."""
  quiet.quiet_environment()
  main_module = sys.modules.get('__main__')
  if main_module is not None and not getattr(main_module, '__doc__', None):
    main_module.__doc__ = __doc__
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()
