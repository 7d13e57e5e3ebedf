"""`KEY=VALUE` config overrides: taken out of a command line (`--config.KEY=VALUE` or `--config.KEY VALUE`,
ml_collections' config_flags syntax) and applied to a config before it is validated, so that any declared key can
be overridden (even one a Scenic file leaves out) and a misspelt one is reported like a misspelt key in a file."""

import ast
from typing import Any, List, Sequence, Tuple

import ml_collections

from vivit_jax.config.validation import ConfigError

ConfigDict = ml_collections.ConfigDict


def split_config_overrides(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
  """(remaining argv, ['KEY=VALUE', ...]) from '--config.KEY=VALUE' and '--config.KEY VALUE' arguments."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith('--config.'):
      key, sep, value = arg[len('--config.'):].partition('=')
      if not sep:
        if i + 1 >= len(argv):
          raise ConfigError(f'{arg} needs a value: {arg}=VALUE')
        i += 1
        value = argv[i]
      overrides.append(f'{key}={value}')
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def overridden_keys(overrides: Sequence[str]) -> List[str]:
  """The dotted keys that 'KEY=VALUE' overrides set."""
  return [item.partition('=')[0].strip().lstrip('-').removeprefix('config.') for item in overrides]


def apply_overrides(user: ConfigDict, overrides: Sequence[str], source: str) -> ConfigDict:
  """Applies 'a.b.c=value' strings (value parsed as a Python literal when it is one)."""
  user = ConfigDict(user.to_dict() if isinstance(user, ConfigDict) else user, type_safe=False)
  for item, key in zip(overrides, overridden_keys(overrides)):
    _, sep, text = item.partition('=')
    if not sep:
      raise ConfigError(f"{source}: override '{item}' is not of the form key=value")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    set_path(user, key, value)
  return user


def set_path(config: ConfigDict, key: str, value: Any) -> None:
  """Sets dotted `key` ('a.b.c') of an unlocked, not type-safe ConfigDict, creating the parents it lacks."""
  *parents, leaf = key.split('.')
  node = config
  for p in parents:
    if p not in node or not isinstance(node[p], ConfigDict):
      node[p] = ConfigDict(type_safe=False)
    node = node[p]
  node[leaf] = value
