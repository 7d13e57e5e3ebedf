"""Quiet commands: what TensorFlow, absl, gRPC and JAX print on their own (TensorFlow's oneDNN notice, absl's
'before absl::InitializeLog()' warning, the JAX TPU probe, Orbax's save chatter, deprecation notices) is kept
off the console unless the user asks for it with `--verbose` or VIVIT_VERBOSE=1.

Two parts, because the libraries read their settings at two different times:

- `quiet_environment()` sets environment variables that TensorFlow's and gRPC's C++ code reads once, when it is
  loaded; it must run before TensorFlow is imported. It needs the standard library only, so that a command can
  call it first (`cli/common.py` does at import, `main.py` before parsing its flags).
- `quiet_library_logs()` filters Python log records on the root handlers, after logging is configured.

A variable the user has already set is left as it is.
"""

import logging
import os
import sys
from typing import Optional, Sequence

VERBOSE_ENV = 'VIVIT_VERBOSE'  # vivit_jax.train.reporting reads the same name (the parameter table).
VERBOSE_FLAG = '--verbose'
# TF_ENABLE_ONEDNN_OPTS: TensorFlow logs its oneDNN notice (and absl's pre-init warning with it) while loading,
# before TF_CPP_MIN_LOG_LEVEL is read; only turning oneDNN off stops it. TensorFlow only reads and augments
# data here (the models run in JAX), so its matmul and convolution kernels are not used.
# HF_HUB_DISABLE_PROGRESS_BARS: transformers draws a 'Loading weights' bar whenever vivit-convert checks a model.
QUIET_ENVIRONMENT = {'TF_CPP_MIN_LOG_LEVEL': '2', 'TF_ENABLE_ONEDNN_OPTS': '0', 'GRPC_VERBOSITY': 'ERROR',
                     'HF_HUB_DISABLE_PROGRESS_BARS': '1'}
# Known noise, for the tests: none of these may reach a quiet command's stderr.
NOISE = ('oneDNN', 'absl::InitializeLog', "backend 'tpu'", 'cpu_feature_guard', 'Setting work unit notes',
         'Loading weights')

_QUIET_PATHS = ('/orbax/', '/tensorflow/', '/tensorflow_datasets/', '/etils/', '/jax/_src/xla_bridge')
_DROPPED_MESSAGES = ("Platform 'tpu' is experimental", 'is deprecated', 'deprecated and will be removed',
                     'Instructions for updating')


def verbose(argv: Optional[Sequence[str]] = None) -> bool:
  """True when VIVIT_VERBOSE is set (not '', '0' or 'false') or `argv` (default: the process's) has --verbose."""
  if os.environ.get(VERBOSE_ENV, '').strip().lower() not in ('', '0', 'false', 'no'):
    return True
  args = sys.argv[1:] if argv is None else argv
  return any(a == VERBOSE_FLAG or a.lower() in ('--verbose=true', '--verbose=1') for a in args)


def set_verbose() -> None:
  """Marks this process (and its children) verbose, for the modules that read VIVIT_VERBOSE later."""
  os.environ[VERBOSE_ENV] = '1'


def quiet_environment(argv: Optional[Sequence[str]] = None) -> None:
  """Sets QUIET_ENVIRONMENT's variables the user has not set; with --verbose (or VIVIT_VERBOSE), sets nothing
  and marks the process verbose instead. Call it before TensorFlow is imported."""
  if verbose(argv):
    set_verbose()
    return
  for name, value in QUIET_ENVIRONMENT.items():
    os.environ.setdefault(name, value)


def _cut(message: str, limit: int = 300) -> str:
  first = message.strip().splitlines()[0] if message.strip() else ''
  return first if len(first) <= limit else first[:limit] + ' ...'


class _QuietLibraries(logging.Filter):
  """Drops the libraries' INFO chatter (Orbax logs a dozen lines per save, JAX its TPU probe), the TPU
  'experimental' notice and deprecation notices; every other warning and error passes, a library's error as its
  first line without the traceback."""

  def filter(self, record: logging.LogRecord) -> bool:
    library = any(part in record.pathname for part in _QUIET_PATHS) or record.name.startswith('tensorflow')
    if library and record.levelno < logging.WARNING:
      return False
    if record.levelno >= logging.ERROR:
      if library and record.exc_info:  # Orbax logs every failed background thread with its traceback; the
        record.msg, record.args = _cut(record.getMessage()), ()  # error itself reaches the user as one line.
        record.exc_info, record.exc_text = None, None
      return True
    message = record.getMessage()
    if record.name == 'py.warnings':  # A Python warning (captureWarnings): drop the libraries' deprecations.
      return not ('DeprecationWarning' in message and 'site-packages' in message)
    return not (library and any(text in message for text in _DROPPED_MESSAGES))


def quiet_library_logs() -> None:
  """Installs the filter on the root handlers (absl's included) and sends Python warnings (a checkpoint step
  skipped as unreadable, say) through logging as one line each. With --verbose, leaves logging as it is."""
  if verbose():
    return
  logging.captureWarnings(True)
  for handler in logging.getLogger().handlers:
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
      handler.addFilter(_QuietLibraries())
