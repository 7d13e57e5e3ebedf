"""The report of `init_from_pretrained`: which target parameters were loaded, adapted or left fresh."""

import dataclasses
from typing import List, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Entry:
  """One target parameter: where its value came from and how."""
  path: str
  source: Optional[str]
  old_shape: Optional[Tuple[int, ...]]
  new_shape: Tuple[int, ...]
  how: str

  def line(self) -> str:
    if self.source is None:
      return f'{self.path} {self.new_shape}: {self.how}'
    shapes = str(self.new_shape) if self.old_shape == self.new_shape else f'{self.old_shape} -> {self.new_shape}'
    return f'{self.path} <- {self.source} {shapes}: {self.how}'


@dataclasses.dataclass
class InitReport:
  """Which target paths were loaded as stored, adapted (old -> new shape, how) or left fresh, and which
  source paths went unused."""
  loaded: List[Entry] = dataclasses.field(default_factory=list)
  adapted: List[Entry] = dataclasses.field(default_factory=list)
  fresh: List[Entry] = dataclasses.field(default_factory=list)
  unused: List[str] = dataclasses.field(default_factory=list)
  notes: List[str] = dataclasses.field(default_factory=list)

  def entry(self, path: str) -> Entry:
    for entry in self.loaded + self.adapted + self.fresh:
      if entry.path == path:
        return entry
    raise KeyError(path)

  def status(self, path: str) -> str:
    """'loaded', 'adapted' or 'fresh' for a target path."""
    for name in ('loaded', 'adapted', 'fresh'):
      if any(e.path == path for e in getattr(self, name)):
        return name
    raise KeyError(path)

  def format(self) -> str:
    lines = [f'init_from_pretrained: {len(self.loaded)} loaded, {len(self.adapted)} adapted, '
             f'{len(self.fresh)} fresh, {len(self.unused)} source arrays unused']
    lines += [f'  note: {note}' for note in self.notes]
    for name in ('loaded', 'adapted', 'fresh'):
      lines += [f'  {name}: {e.line()}' for e in getattr(self, name)]
    lines += [f'  unused: {path}' for path in self.unused]
    return '\n'.join(lines)
