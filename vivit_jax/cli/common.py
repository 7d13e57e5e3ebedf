"""What every command shares: `--config.KEY=VALUE` overrides beside argparse flags, quiet library logs, and one
clean `error:` line (exit status 2) for the failures a user can fix."""

import argparse
import logging
import sys
from typing import List, Optional, Sequence, Tuple

from vivit_jax.checkpoints import CheckpointError
from vivit_jax.config import ConfigError, split_config_overrides
from vivit_jax.data import DataError
from vivit_jax.sharding import MeshError

# Failures that come from the user's input (a file, key or parameter path), reported without a traceback.
EXPECTED_ERRORS = (ConfigError, CheckpointError, DataError, MeshError)


def parse(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
          overrides: bool = True) -> Tuple[argparse.Namespace, List[str]]:
  """(parsed flags, ['KEY=VALUE', ...] config overrides) of `argv` (default: the process's arguments)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  rest, config_overrides = split_config_overrides(argv) if overrides else (argv, [])
  return parser.parse_args(rest), config_overrides


def parser(prog: str, usage_text: str) -> argparse.ArgumentParser:
  """An argparse parser whose --help shows `usage_text` (the command's usage, kept in one place)."""
  return argparse.ArgumentParser(prog=prog, description=usage_text,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


class _QuietLibraries(logging.Filter):
  """Drops the INFO chatter of Orbax and TensorFlow (every save logs a dozen lines); warnings pass."""

  def filter(self, record: logging.LogRecord) -> bool:
    noisy = any(part in record.pathname for part in ('/orbax/', '/tensorflow/', '/etils/'))
    return record.levelno >= logging.WARNING or not noisy


def quiet_library_logs() -> None:
  """Installs the filter on the root handlers (absl's included)."""
  for handler in logging.getLogger().handlers:
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
      handler.addFilter(_QuietLibraries())


def setup_logging() -> None:
  """INFO logs to stderr, without the libraries' chatter."""
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
  quiet_library_logs()


def fail(error: BaseException) -> int:
  """Prints `error: <message>` on stderr; returns the exit status 2."""
  print(f'error: {error}', file=sys.stderr)
  return 2
