"""The report of `init_from_pretrained`: which target parameters were loaded, adapted or left fresh."""

import dataclasses
from typing import Dict, List, Optional, Tuple


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


def _some(shapes: Dict[str, Tuple[int, ...]], limit: int = 5) -> str:
  """'path (shape)' for up to `limit` paths of `shapes`, one per top-level module first, and how many more."""
  firsts = {}
  for path in shapes:
    firsts.setdefault(path.split('/')[0], path)
  picked = list(firsts.values())[:limit]
  picked += [path for path in shapes if path not in picked][:limit - len(picked)]
  more = len(shapes) - len(picked)
  return ', '.join(f'{path} {tuple(shapes[path])}' for path in picked) + (f', ... ({more} more)' if more else '')


def nothing_matched(checkpoint: str, source: Dict[str, Tuple[int, ...]], target: Dict[str, Tuple[int, ...]]) -> str:
  """The error of an init_from whose checkpoint initialises no parameter: both trees' paths, side by side."""
  where = checkpoint or 'the pretrained params'
  return (f'init_from: none of the {len(source)} arrays read from {where} matches a parameter of the model, so '
          f'all {len(target)} parameters would stay freshly initialised; the checkpoint has {_some(source)}; the '
          f'model has {_some(target)} (expected an image ViT or a ViViT checkpoint in Scenic naming)')
