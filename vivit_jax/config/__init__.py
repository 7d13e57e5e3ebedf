"""Experiment configs: the defaults of every key (`defaults.py`), loading config files by path with presets
and overrides (`loading.py`, `overrides.py`), and validation with "did you mean" (`validation.py`) and the range
of every number (`numbers.py`).

`load_config('file.py[:preset]', overrides=['KEY=VALUE', ...])` returns a locked ConfigDict holding every key.
"""

from vivit_jax.config.loading import call_config, import_config_file, load_config
from vivit_jax.config.overrides import apply_overrides, split_config_overrides
from vivit_jax.config.validation import (ATTENTION_TYPES, ConfigError, ConfigWarning, check_schedule, get_path,
                                         validate_config)

__all__ = ['ATTENTION_TYPES', 'ConfigError', 'ConfigWarning', 'apply_overrides', 'call_config', 'check_schedule',
           'get_path', 'import_config_file', 'load_config', 'split_config_overrides', 'validate_config']
