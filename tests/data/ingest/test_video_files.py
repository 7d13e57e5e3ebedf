"""video_files.walk: every file once, whatever symbolic links do (loops, aliases, links that lead nowhere)."""

import os

from vivit_jax.data.ingest import video_files


def touch(path) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(b'x')
  return str(path)


def test_walk_reads_every_directory_once_and_survives_link_loops(tmp_path):
  root, outside = tmp_path / 'download', tmp_path / 'elsewhere'
  real = touch(root / 'train' / 'cat' / 'a.mp4')
  touch(outside / 'o.mp4')
  os.symlink('..', root / 'train' / 'cat' / 'up')  # A loop: back to an ancestor.
  os.symlink(str(root), root / 'train' / 'root')  # Another loop, by absolute path.
  os.symlink('train', root / 'alias')  # A second path to a directory of the tree: not read again.
  os.symlink(str(outside), root / 'ext1')  # Outside the tree: read once, through the first link.
  os.symlink(str(outside), root / 'ext2')
  os.symlink(os.path.join('train', 'cat', 'a.mp4'), root / 'link.mp4')  # A second path to a file.
  os.symlink('missing.mp4', root / 'gone.mp4')
  os.symlink('self.mp4', root / 'self.mp4')
  os.symlink('ping.mp4', root / 'pong.mp4')
  os.symlink('pong.mp4', root / 'ping.mp4')
  listing = video_files.walk(str(root))
  relative = sorted(os.path.relpath(p, root) for p in listing.files)
  assert relative == [os.path.join('ext1', 'o.mp4'), 'link.mp4', os.path.join('train', 'cat', 'a.mp4')]
  assert {os.path.relpath(p, root): reason for p, reason in listing.broken.items()} == {
      'gone.mp4': 'broken symbolic link (target missing.mp4 does not exist)', 'self.mp4': 'symbolic link loop',
      'ping.mp4': 'symbolic link loop', 'pong.mp4': 'symbolic link loop'}
  assert video_files.identity(str(root / 'link.mp4')) == video_files.identity(real) is not None
  assert video_files.identity(str(root / 'gone.mp4')) is None


def test_walk_prefers_the_real_path_of_a_directory(tmp_path):
  root = tmp_path / 'download'
  touch(root / 'z_real' / 'v.mp4')
  os.symlink('z_real', root / 'a_link')  # Sorted first, but the real path wins.
  assert [os.path.relpath(p, root) for p in video_files.walk(str(root)).files] == [os.path.join('z_real', 'v.mp4')]
  assert video_files.is_video('X.MP4') and video_files.is_video('a.mpg') and not video_files.is_video('a.txt')
