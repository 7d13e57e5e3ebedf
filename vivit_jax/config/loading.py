"""Config files by path: `load_config('path/file.py[:preset]', overrides)`, and `import_config_file` for a
config file that builds on another one.

A config file defines `get_config()` (or `get_config(arg)` for presets: `file.py:arg`). Whatever it returns, our
own files (which start from `vivit_jax.config.defaults`) or Scenic's published files (which build a ConfigDict from
scratch), is merged onto the defaults and validated (`validation.py`). Config files are not an installed package:
they are found by path, and one reaches another by a path relative to itself.
"""

import contextlib
import importlib.util
import inspect
import os
import re
from types import ModuleType
from typing import Any, Optional, Sequence, Union

import ml_collections

from vivit_jax.config.overrides import apply_overrides
from vivit_jax.config.validation import ConfigError, validate_config

ConfigDict = ml_collections.ConfigDict
_NOT_PYTHON = "{}: expected a Python config file ending in '.py' (with an optional ':preset' after it)"


def load_config(spec: Union[str, ConfigDict], overrides: Optional[Sequence[str]] = None) -> ConfigDict:
  """Loads `path/to/file.py[:arg]` (or takes a ConfigDict), applies `key=value` overrides, validates."""
  if isinstance(spec, ConfigDict):
    user, source = spec, '<ConfigDict>'
  else:
    match = re.fullmatch(r'(.*?\.py)(?::(.*))?', spec)
    if not match:
      raise ConfigError(_NOT_PYTHON.format(spec))
    path, arg = os.path.expanduser(match.group(1)), match.group(2)
    user, source = _call_get_config(path, arg), path
  if overrides:
    user = apply_overrides(user, overrides, source)
  return validate_config(user, source=source)


def import_config_file(path: str, relative_to: Optional[str] = None) -> ModuleType:
  """The config file at `path`, executed afresh as a module. `relative_to` (a config file's `__file__`) makes a
  relative path start from that file's folder, so `configs/ablations/x.py` reaches `../kinetics400/y.py`
  wherever the repository is. Whatever goes wrong, `sys.exit` included, is a ConfigError naming the file."""
  if relative_to is not None and not os.path.isabs(path):
    path = os.path.join(os.path.dirname(os.path.abspath(relative_to)), path)
  _check_file(path)
  name = '_vivit_config_' + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    with _exits_raise():
      module_spec.loader.exec_module(module)
  except SyntaxError as e:
    where = f'{path}:{e.lineno}' if e.lineno else path
    raise ConfigError(f'{where}: the config file does not parse: {e.msg}') from e
  except ConfigError:
    raise
  except _CAUGHT as e:
    raise ConfigError(f'{path}: importing the config file {_raised(e)}') from e
  return module


class _HardExit(BaseException):
  """What `os._exit(code)` raises while a config file runs."""

  def __init__(self, code):
    super().__init__(code)
    self.code = code


# What a config file's code may raise and we report naming the file: errors, `sys.exit`, `os._exit` and a
# KeyboardInterrupt raised by the file itself (or a Ctrl-C while it runs; either way the file is named).
_CAUGHT = (Exception, SystemExit, KeyboardInterrupt, _HardExit)


@contextlib.contextmanager
def _exits_raise():
  """While a config file runs, `os._exit` raises instead of ending the process without a word (the file's
  code runs in this thread; nothing else calls os._exit in that moment)."""
  def refuse(code):
    raise _HardExit(code)
  original, os._exit = os._exit, refuse  # pylint: disable=protected-access
  try:
    yield
  finally:
    os._exit = original  # pylint: disable=protected-access


def _check_file(path: str) -> None:
  """A ConfigError unless `path` is a readable `.py` file."""
  if not path.endswith('.py'):
    raise ConfigError(_NOT_PYTHON.format(path))
  if os.path.isdir(path):
    raise ConfigError(f'{path}: is a directory; expected a config file')
  if not os.path.isfile(path):
    raise ConfigError(f'config file not found: {path}')
  if not os.access(path, os.R_OK):
    raise ConfigError(f'{path}: the config file is not readable (permission denied)')


def _raised(error: BaseException) -> str:
  """'raised ValueError: ...' or 'called sys.exit(...)'."""
  if isinstance(error, SystemExit):
    return f'called sys.exit({error.code!r}); a config file must not exit'
  if isinstance(error, _HardExit):
    return f'called os._exit({error.code!r}); a config file must not exit'
  return f'raised {type(error).__name__}' + (f': {error}' if str(error) else '')


def call_config(path: str, function: Any, *args: Any) -> Any:
  """`function(*args)`, a function of the config file at `path`; whatever it raises, `sys.exit`, `os._exit` and
  KeyboardInterrupt included, is a ConfigError naming the file and the call."""
  try:
    with _exits_raise():
      return function(*args)
  except ConfigError:
    raise
  except _CAUGHT as e:
    call = f"{getattr(function, '__name__', 'function')}({', '.join(repr(a) for a in args)})"
    raise ConfigError(f'{path}: {call} {_raised(e)}') from e


def _call_get_config(path: str, arg: Optional[str]) -> ConfigDict:
  module = import_config_file(path)
  get_config = getattr(module, 'get_config', None)
  if get_config is None:
    raise ConfigError(f'{path}: defines no get_config()')
  if not callable(get_config):
    raise ConfigError(f'{path}: get_config is {type(get_config).__name__} {get_config!r}; expected a function')
  if arg is not None and not _takes_an_argument(get_config):
    raise ConfigError(f"{path}: get_config() takes no preset argument; got ':{arg}'")
  config = call_config(path, get_config, *([arg] if arg is not None else []))
  if not isinstance(config, (ConfigDict, dict)):
    hint = ' (does get_config end with `return config`?)' if config is None else ''
    raise ConfigError(f'{path}: get_config() returned {type(config).__name__}; expected a ConfigDict{hint}')
  return config


def _takes_an_argument(function) -> bool:
  try:
    parameters = inspect.signature(function).parameters.values()
  except (TypeError, ValueError):  # No signature to read (a builtin): let the call decide.
    return True
  return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters)
