"""The files of a download: every file below a directory, found once each, without hanging on symbolic links.

`walk` reads the real directory tree first, then each directory that a symbolic link leads to, and reads every
directory once: a link back to an ancestor (a loop), a second link to the same place, or a link to a directory
inside the tree adds nothing. Links to files are listed like files (the same file may then appear under two
paths: `identity` tells them apart); links that lead nowhere (missing target, loop) are listed with the reason.
"""

import dataclasses
import errno
import os
from typing import Dict, List, Optional, Set, Tuple

# Video file extensions, in order of preference when one video id has several files.
VIDEO_EXTENSIONS = ('.mp4', '.webm', '.mkv', '.avi', '.mov', '.m4v', '.mpg', '.mpeg', '.3gp', '.flv', '.wmv',
                    '.ogv')
Identity = Tuple[int, int]  # (device, inode): the same for every path (link, hard link) to one file.


@dataclasses.dataclass
class Listing:
  """What `walk` found."""
  files: List[str] = dataclasses.field(default_factory=list)  # Readable files, links to files included.
  broken: Dict[str, str] = dataclasses.field(default_factory=dict)  # Link path -> why it leads nowhere.
  unreadable: Dict[str, str] = dataclasses.field(default_factory=dict)  # Directory -> why it cannot be listed.


def is_video(path: str) -> bool:
  return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def identity(path: str) -> Optional[Identity]:
  """(device, inode) of what `path` leads to; None when it cannot be read."""
  try:
    stat = os.stat(path)
  except (OSError, ValueError):
    return None
  return stat.st_dev, stat.st_ino


def _link_problem(path: str) -> str:
  """Why a symbolic link cannot be read as a file or a directory."""
  try:
    os.stat(path)
  except OSError as e:
    if e.errno == errno.ELOOP:
      return 'symbolic link loop'
    if e.errno == errno.ENOENT:
      try:
        return f'broken symbolic link (target {os.readlink(path)} does not exist)'
      except OSError:
        return 'broken symbolic link'
    return f'unreadable symbolic link: {e.strerror}'
  return 'not a regular file'


def _read_tree(top: str, listing: Listing, seen: Set[Identity], links: List[str]) -> None:
  """Adds the files below `top` to `listing`, following no link; directory links go to `links`."""
  stack = [top]
  while stack:
    directory = stack.pop()
    try:
      with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    except OSError as e:
      listing.unreadable[directory] = f'cannot list directory: {e.strerror}'
      continue
    subdirectories = []
    for entry in entries:
      try:
        if entry.is_symlink():
          if os.path.isdir(entry.path):
            links.append(entry.path)
          elif os.path.isfile(entry.path):
            listing.files.append(entry.path)
          else:
            listing.broken[entry.path] = _link_problem(entry.path)
        elif entry.is_dir(follow_symlinks=False):
          key = identity(entry.path)
          if key is not None and key not in seen:
            seen.add(key)
            subdirectories.append(entry.path)
        elif entry.is_file(follow_symlinks=False):
          listing.files.append(entry.path)
      except OSError as e:  # Vanished or unreadable while listing.
        listing.broken[entry.path] = f'unreadable: {e.strerror}'
    stack.extend(reversed(subdirectories))


def walk(input_dir: str) -> Listing:
  """Every file below input_dir (in a stable order), each directory read once; see the module docstring."""
  if not os.path.isdir(input_dir):
    raise FileNotFoundError(f'{input_dir}: input directory not found')
  listing, links = Listing(), []
  seen = {identity(input_dir)}
  _read_tree(input_dir, listing, seen, links)  # The real tree first: its directories are read under their paths.
  while links:
    link = links.pop(0)
    key = identity(link)
    if key is not None and key not in seen:
      seen.add(key)
      _read_tree(link, listing, seen, links)
  return listing
