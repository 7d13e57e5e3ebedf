"""Config files by path: `load_config('path/file.py[:preset]', overrides)`, and `import_config_file` for a
config file that builds on another one.

A config file defines `get_config()` (or `get_config(arg)` for presets: `file.py:arg`). Whatever it returns, our
own files (which start from `vivit_jax.config.defaults`) or Scenic's published files (which build a ConfigDict from
scratch), is merged onto the defaults and validated (`validation.py`). Config files are not an installed package:
they are found by path, and one reaches another by a path relative to itself.
"""

import importlib.util
import os
import re
from types import ModuleType
from typing import Optional, Sequence, Union

import ml_collections

from vivit_jax.config.overrides import apply_overrides
from vivit_jax.config.validation import ConfigError, validate_config

ConfigDict = ml_collections.ConfigDict


def load_config(spec: Union[str, ConfigDict], overrides: Optional[Sequence[str]] = None) -> ConfigDict:
  """Loads `path/to/file.py[:arg]` (or takes a ConfigDict), applies `key=value` overrides, validates."""
  if isinstance(spec, ConfigDict):
    user, source = spec, '<ConfigDict>'
  else:
    match = re.fullmatch(r'(.*?\.py)(?::(.*))?', spec)
    path, arg = (match.group(1), match.group(2)) if match else (spec, None)
    user, source = _call_get_config(path, arg), path
  if overrides:
    user = apply_overrides(user, overrides, source)
  return validate_config(user, source=source)


def import_config_file(path: str, relative_to: Optional[str] = None) -> ModuleType:
  """The config file at `path`, executed afresh as a module. `relative_to` (a config file's `__file__`) makes a
  relative path start from that file's folder, so `configs/ablations/x.py` reaches `../kinetics400/y.py`
  wherever the repository is."""
  if relative_to is not None and not os.path.isabs(path):
    path = os.path.join(os.path.dirname(os.path.abspath(relative_to)), path)
  if not os.path.isfile(path):
    raise ConfigError(f'config file not found: {path}')
  name = '_vivit_config_' + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f'{path}:{e.lineno}: the config file does not parse: {e.msg}') from e
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f'{path}: importing the config file raised {type(e).__name__}: {e}') from e
  return module


def _call_get_config(path: str, arg: Optional[str]) -> ConfigDict:
  if not os.path.isfile(path):
    raise ConfigError(f'config file not found: {path}')
  module = import_config_file(path)
  if not hasattr(module, 'get_config'):
    raise ConfigError(f'{path}: defines no get_config()')
  try:
    config = module.get_config(arg) if arg is not None else module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f'{path}: get_config({arg!r}) raised {type(e).__name__}: {e}') from e
  if not isinstance(config, (ConfigDict, dict)):
    raise ConfigError(f'{path}: get_config() returned {type(config).__name__}; expected a ConfigDict')
  return config
