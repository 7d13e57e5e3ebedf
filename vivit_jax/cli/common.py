"""What every command shares: `--config.KEY=VALUE` overrides beside argparse flags, quiet library logs (every
command takes `--verbose` to bring them back), and one clean `error:` line (exit status 2) for the failures a
user can fix: a bad flag, config, checkpoint, data or mesh, and a path that cannot be read or written (named in
the line).

Importing this module sets the quiet environment (`cli/quiet.py`) before anything here can import TensorFlow;
every command imports it before anything that does (tests/cli/test_quiet.py checks)."""

import argparse
import logging
import math
import os
import sys
from typing import List, Optional, Sequence, Tuple

from vivit_jax.cli import quiet

quiet.quiet_environment()  # Before TensorFlow loads (the imports below, or the command's): it reads it once.

# pylint: disable=wrong-import-position
from vivit_jax import paths
from vivit_jax.checkpoints import CheckpointError, PretrainedMismatchError
from vivit_jax.config import ConfigError, split_config_overrides
from vivit_jax.data import DataError
from vivit_jax.paths import PathError
from vivit_jax.sharding import MeshError


class UsageError(ValueError):
  """A command-line argument that cannot be used (a missing flag, a value out of range)."""


# Failures that come from the user's input (a file, key or parameter path), reported without a traceback.
EXPECTED_ERRORS = (ConfigError, CheckpointError, PretrainedMismatchError, DataError, MeshError, PathError, UsageError,
                   OSError)


def parse(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
          overrides: bool = True) -> Tuple[argparse.Namespace, List[str]]:
  """(parsed flags, ['KEY=VALUE', ...] config overrides) of `argv` (default: the process's arguments)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    rest, config_overrides = split_config_overrides(argv) if overrides else (argv, [])
  except ConfigError as e:  # '--config.KEY' without a value.
    parser.error(str(e))
  args = parser.parse_args(rest)
  if getattr(args, 'verbose', False):
    quiet.set_verbose()
  quiet_library_logs()
  return args, config_overrides


class _Parser(argparse.ArgumentParser):
  """argparse, with a bad flag reported as one `error:` line (exit status 2) instead of the usage block."""

  def error(self, message: str):
    print(f'error: {self.prog}: {message} (see {self.prog} --help)', file=sys.stderr)
    sys.exit(2)


def parser(prog: str, usage_text: str) -> argparse.ArgumentParser:
  """An argparse parser whose --help shows `usage_text` (the command's usage, kept in one place), with the
  `--verbose` every command takes."""
  result = _Parser(prog=prog, description=usage_text, formatter_class=argparse.RawDescriptionHelpFormatter)
  result.add_argument(quiet.VERBOSE_FLAG, action='store_true',
                      help=f"show the libraries' own logs (TensorFlow, absl, JAX, Orbax); also {quiet.VERBOSE_ENV}=1")
  return result


def _number(text: str, kind: type, low: float, what: str, above: bool = False):
  """`text` as `kind`, at least `low` (above it when `above`), finite; else argparse's error naming `what`."""
  try:
    value = kind(text)
  except ValueError:
    value = None
  if value is None or not math.isfinite(value) or value < low or (above and value == low):
    raise argparse.ArgumentTypeError(f'expected {what}, got {text!r}')
  return value


def positive_int(text: str) -> int:
  """argparse type: an integer >= 1."""
  return _number(text, int, 1, 'a positive integer')


def non_negative_int(text: str) -> int:
  """argparse type: an integer >= 0."""
  return _number(text, int, 0, 'an integer >= 0')


def positive_float(text: str) -> float:
  """argparse type: a finite number > 0."""
  return _number(text, float, 0.0, 'a positive number', above=True)


quiet_library_logs = quiet.quiet_library_logs


def setup_logging() -> None:
  """INFO logs to stderr, without the libraries' chatter. (absl may have configured the root logger already,
  at WARNING, the first time a library logged through it: the level is set here either way.)"""
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
  logging.getLogger().setLevel(logging.INFO)
  quiet_library_logs()


def describe(error: BaseException) -> str:
  """The message of an expected failure; an OSError names its path first ('PATH: Permission denied')."""
  if isinstance(error, OSError) and error.filename is not None:
    paths = f'{error.filename}' + (f' -> {error.filename2}' if error.filename2 is not None else '')
    return f'{paths}: {error.strerror or type(error).__name__}'
  return str(error) or type(error).__name__


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
  """--checkpoint, --config and --label_map: how every tool that reads a trained model names it (restore_for_use)."""
  parser.add_argument('--checkpoint', required=True, help='our workdir or step, or a Scenic/ViT/HF checkpoint')
  parser.add_argument('--config', default=None,
                      help="config file[:preset]; default: the checkpoint's own (Scenic and ViT files need one)")
  parser.add_argument('--label_map', default=None, help="JSON {'names': [...]}; default: the checkpoint's")


def fail(error: BaseException, status: int = 2) -> int:
  """Prints `error: <message>` on stderr; returns the exit status (2: an input the user can fix)."""
  print(f'error: {describe(error)}', file=sys.stderr)
  return status


def check_output(path: str, directory: bool = False, what: str = '--output') -> None:
  """Raises PathError naming `path` when an output file (or `directory`) cannot be written there, so that a bad
  --output is reported before the long work starts (`vivit_jax.paths`, which the trainer uses for its workdir)."""
  path = os.path.expanduser(path)
  if directory:
    paths.check_output_dir(path, what)
  else:
    paths.check_output_file(path, what)
