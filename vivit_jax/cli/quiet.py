"""Quiet commands: what TensorFlow, absl, gRPC and JAX print on their own (TensorFlow's oneDNN notice, absl's
'before absl::InitializeLog()' warning, the JAX TPU probe, Orbax's save chatter, deprecation notices) is kept
off the console unless the user asks for it with `--verbose` or VIVIT_VERBOSE=1.

Two parts, because the libraries read their settings at two different times:

- `quiet_environment()` sets environment variables that TensorFlow's and gRPC's C++ code reads once, when it is
  loaded, and filters what TensorFlow's C++ code writes to stderr while it loads (`TensorFlowImportFilter`);
  it must run before TensorFlow is imported. It needs the standard library only, so that a command can call it
  first (`cli/common.py` does at import, `main.py` before parsing its flags).
- `quiet_library_logs()` filters Python log records on the root handlers, after logging is configured.

TensorFlow announces its oneDNN kernels (and absl its pre-init warning) while its library loads, before it reads
TF_CPP_MIN_LOG_LEVEL. Turning oneDNN off (TF_ENABLE_ONEDNN_OPTS=0) would stop the notice but slows the input
pipeline: `vivit-benchmark --data` read 55 instead of 72 clips/s on 2 cores. So oneDNN stays on (TensorFlow's
default, and DMVR's) and those lines are dropped from stderr instead, while the library loads; anything else
written then is passed on.

A variable the user has already set is left as it is.
"""

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
from typing import Iterator, Optional, Sequence

VERBOSE_ENV = 'VIVIT_VERBOSE'  # vivit_jax.train.reporting reads the same name (the parameter table).
VERBOSE_FLAG = '--verbose'
# HF_HUB_DISABLE_PROGRESS_BARS: transformers draws a 'Loading weights' bar whenever vivit-convert checks a model.
QUIET_ENVIRONMENT = {'TF_CPP_MIN_LOG_LEVEL': '2', 'GRPC_VERBOSITY': 'ERROR', 'HF_HUB_DISABLE_PROGRESS_BARS': '1'}
# What TensorFlow's C++ code writes to stderr while it loads, regardless of TF_CPP_MIN_LOG_LEVEL.
LOAD_NOISE = ('oneDNN', 'absl::InitializeLog', 'cpu_feature_guard')
# Known noise, for the tests: none of these may reach a quiet command's stderr.
NOISE = (*LOAD_NOISE, "backend 'tpu'", 'Setting work unit notes', 'Loading weights')

# JAX's compilation cache says when an ablation sweep's cache is reset (ablation/sweep.py: compiled_once).
_QUIET_PATHS = ('/orbax/', '/tensorflow/', '/tensorflow_datasets/', '/etils/', '/jax/_src/xla_bridge',
                '/jax/_src/compilation_cache')
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
  """Sets QUIET_ENVIRONMENT's variables the user has not set and has TensorFlow's first import filtered
  (`TensorFlowImportFilter`); with --verbose (or VIVIT_VERBOSE), does neither and marks the process verbose
  instead. Call it before TensorFlow is imported."""
  if verbose(argv):
    set_verbose()
    return
  for name, value in QUIET_ENVIRONMENT.items():
    os.environ.setdefault(name, value)
  if 'tensorflow' not in sys.modules and not any(isinstance(f, TensorFlowImportFilter) for f in sys.meta_path):
    sys.meta_path.insert(0, TensorFlowImportFilter())


@contextlib.contextmanager
def filtered_stderr(noise: Sequence[str] = LOAD_NOISE) -> Iterator[None]:
  """Holds back what is written to file descriptor 2 (C and C++ code included) inside the block, then writes
  it there again without the lines that contain any of `noise`. Without a descriptor 2, filters nothing."""
  flush = lambda: sys.stderr.flush() if sys.stderr is not None else None
  flush()
  try:
    saved = os.dup(2)
  except OSError:
    yield
    return
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    finally:
      flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      lines = held.read().splitlines(keepends=True)
      kept = b''.join(line for line in lines if not any(n.encode() in line for n in noise))
      if kept:
        os.write(2, kept)


class TensorFlowImportFilter(importlib.abc.MetaPathFinder):
  """Loads `tensorflow`, once, inside `filtered_stderr`; then leaves `sys.meta_path` and the module as a plain
  import would (the module's loader is TensorFlow's own)."""

  def find_spec(self, name, path=None, target=None):
    del path, target
    if name != 'tensorflow':
      return None
    if self in sys.meta_path:  # Once: the module's import lock lets one thread at a time here.
      sys.meta_path.remove(self)
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.loader is not None and hasattr(spec.loader, 'exec_module'):
      spec.loader = _FilteredLoader(spec.loader)
    return spec


class _FilteredLoader(importlib.abc.Loader):

  def __init__(self, loader):
    self.loader = loader

  def create_module(self, spec):
    return self.loader.create_module(spec)

  def exec_module(self, module):
    module.__loader__ = module.__spec__.loader = self.loader
    with filtered_stderr():
      self.loader.exec_module(module)


def _cut(message: str, limit: int = 300) -> str:
  first = message.strip().splitlines()[0] if message.strip() else ''
  return first if len(first) <= limit else first[:limit] + ' ...'


class _QuietLibraries(logging.Filter):
  """Drops the libraries' INFO chatter (Orbax logs a dozen lines per save, JAX its TPU probe and cache resets),
  the TPU 'experimental' notice and deprecation notices; every other warning and error passes, a library's error
  as its first line without the traceback."""

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
