"""Output locations checked before the long work starts: a workdir or an `--output` that is a file, read-only or on
a full disk is reported with its path while nothing has been computed yet, instead of after hours of training or
evaluation. Remote locations (gs://, s3://, ...) are left to the library that writes them.
"""

import os
import shutil
import socket
import stat
from typing import Optional

PROBE_BYTES = 1 << 16  # Written (and removed) to prove a directory takes data, not just an empty file.


class PathError(ValueError):
  """An output location that cannot be written."""


def is_remote(path: str) -> bool:
  """A location of a file system library (gs://, s3://, ...), not a local path."""
  return '://' in path


def _probe(directory: str, what: str) -> None:
  probe = os.path.join(directory, f'.vivit_jax-write-test-{socket.gethostname()}-{os.getpid()}')
  try:
    with open(probe, 'wb') as f:
      f.write(b'\0' * PROBE_BYTES)
      f.flush()
      os.fsync(f.fileno())
  except OSError as e:
    raise PathError(f'{what} {directory} cannot be written: {e.strerror or e}') from e
  finally:
    try:
      os.remove(probe)
    except OSError:
      pass


def _check_ancestors(path: str, what: str) -> None:
  """The nearest existing folder above `path` (where the missing ones will be made) must be a folder."""
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise PathError(f'{what} {path}: {parent} is a file, not a directory')


def check_output_dir(path: str, what: str = 'workdir', needed_bytes: int = 0) -> None:
  """Creates `path` if needed and proves it writable with `needed_bytes` (an estimate, e.g. a checkpoint) free."""
  if not path or is_remote(path):
    return
  if os.path.exists(path) and not os.path.isdir(path):
    raise PathError(f'{what} {path} is a file; expected a directory')
  _check_ancestors(path, what)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise PathError(f'{what} {path} cannot be created: {e.strerror or e}') from e
  _probe(path, what)
  free = shutil.disk_usage(path).free
  if needed_bytes and free < needed_bytes:
    raise PathError(f'{what} {path} has {free / 2**20:.1f} MiB free, but about {needed_bytes / 2**20:.1f} MiB '
                    'will be written there')


def _kind(path: str) -> str:
  mode = os.stat(path).st_mode
  for test, kind in ((stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'),
                     (stat.S_ISFIFO, 'a named pipe'), (stat.S_ISSOCK, 'a socket')):
    if test(mode):
      return kind
  return 'a special file'


def check_output_file(path: Optional[str], what: str = '--output') -> None:
  """Proves a file can be written at `path` (its directory is created if needed); nothing is left behind."""
  if not path or is_remote(path):
    return
  if os.path.isdir(path):
    raise PathError(f'{what} {path} is a directory; expected a file name')
  if os.path.exists(path) and not os.path.isfile(path):
    raise PathError(f'{what} {path} is {_kind(path)}, not a regular file; expected a file name (results are '
                    'written to a new file that replaces it)')
  _check_ancestors(path, what)
  directory = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise PathError(f'{what} {path}: its directory cannot be created: {e.strerror or e}') from e
  if os.path.exists(path) and not os.access(path, os.W_OK):
    raise PathError(f'{what} {path} exists and is read-only')
  _probe(directory, f'{what} {path}: the directory')
