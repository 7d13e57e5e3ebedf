"""An ablation file (configs/ablations/*.py): its base config (`get_config(arg=None)`) and its sweep
(`get_sweep(arg=None)` or `SWEEP`): entries {'name', 'overrides': ['dotted.key=value', ...], 'paper': {metric:
value}}. `METRIC` names the results.json metric (the first present of a tuple) that the report plots beside the
paper's 'top1'."""

import dataclasses
import inspect
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from vivit_jax.config import ConfigError, call_config, import_config_file


@dataclasses.dataclass(frozen=True)
class Entry:
  """One run of a sweep: the overrides applied to the ablation's base config, and the paper's numbers."""
  name: str
  overrides: Tuple[str, ...]
  paper: Dict[str, float]


@dataclasses.dataclass(frozen=True)
class Ablation:
  """An ablation file: its config spec (`path.py[:arg]`), entries and the metric plotted beside 'top1'."""
  spec: str
  entries: Tuple[Entry, ...]
  metrics: Tuple[str, ...] = ('valid/accuracy',)

  @property
  def name(self) -> str:
    path, _, arg = self.spec.partition(':')
    stem = os.path.splitext(os.path.basename(path))[0]
    return f'{stem}_{arg}' if arg else stem


def load_ablation(spec: str) -> Ablation:
  """Reads `path.py[:arg]`'s sweep; checks names are unique and safe as directory names."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise ConfigError(f'ablation file not found: {path}')
  module = import_config_file(path)
  if hasattr(module, 'get_sweep'):
    takes_arg = bool(inspect.signature(module.get_sweep).parameters)
    raw = call_config(path, module.get_sweep, *([arg or None] if takes_arg else []))
  elif hasattr(module, 'SWEEP'):
    raw = module.SWEEP
  else:
    raise ConfigError(f'{path}: defines neither get_sweep() nor SWEEP')
  entries = []
  for item in raw:
    unknown = set(item) - {'name', 'overrides', 'paper'}
    if unknown or not re.fullmatch(r'[A-Za-z0-9_.-]+', str(item.get('name', ''))):
      raise ConfigError(f"{path}: sweep entry {item!r}: expected keys 'name' (letters, digits, _ . -), "
                        "'overrides' and 'paper'")
    entries.append(Entry(item['name'], tuple(item.get('overrides', ())), dict(item.get('paper', {}))))
  names = [e.name for e in entries]
  if len(set(names)) != len(names):
    raise ConfigError(f'{path}: sweep entry names repeat: {names}')
  metric = getattr(module, 'METRIC', 'valid/accuracy')
  return Ablation(spec, tuple(entries), (metric,) if isinstance(metric, str) else tuple(metric))


def select(ablation: Ablation, only: Optional[Sequence[str]]) -> List[Entry]:
  """The entries named in `only` (all when empty), in sweep order; an unknown name is an error."""
  if not only:
    return list(ablation.entries)
  names = [e.name for e in ablation.entries]
  unknown = [n for n in only if n not in names]
  if unknown:
    raise ConfigError(f'{ablation.spec}: no sweep entries {unknown}; the entries are {names}')
  return [e for e in ablation.entries if e.name in only]
