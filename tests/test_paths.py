"""Output locations that cannot be written are reported, with their path, before any long work."""

import os
import shutil

import pytest

from vivit_jax import paths
from vivit_jax.paths import PathError


def test_a_writable_directory_is_created_and_left_clean(tmp_path):
  target = tmp_path / 'runs' / 'new'
  paths.check_output_dir(str(target))
  assert target.is_dir() and not os.listdir(target)


def test_a_workdir_that_is_a_file_is_named(tmp_path):
  (tmp_path / 'taken').write_text('x')
  with pytest.raises(PathError, match=f'workdir {tmp_path}/taken is a file'):
    paths.check_output_dir(str(tmp_path / 'taken'))
  with pytest.raises(PathError, match='taken is a file, not a directory'):
    paths.check_output_file(str(tmp_path / 'taken' / 'out.json'))


def test_an_output_that_is_a_directory_is_named(tmp_path):
  with pytest.raises(PathError, match=f'--output {tmp_path} is a directory'):
    paths.check_output_file(str(tmp_path))


def test_an_output_that_is_a_device_or_a_pipe_is_refused_not_replaced(tmp_path):
  with pytest.raises(PathError, match='--output /dev/full is a character device, not a regular file'):
    paths.check_output_file('/dev/full')
  os.mkfifo(tmp_path / 'pipe')
  with pytest.raises(PathError, match='pipe is a named pipe, not a regular file'):
    paths.check_output_file(str(tmp_path / 'pipe'))
  assert os.path.exists('/dev/full') and not os.path.isfile(tmp_path / 'pipe')


def test_a_read_only_location_is_named():
  # /proc takes no new files, even from root (tests may run as root, where chmod does not stop a write).
  with pytest.raises(PathError, match='/proc/vivit_jax_test cannot be created'):
    paths.check_output_dir('/proc/vivit_jax_test')
  with pytest.raises(PathError, match='/proc/vivit_jax_out.json'):
    paths.check_output_file('/proc/vivit_jax_out.json')


def test_a_read_only_file_is_named(tmp_path):
  if os.geteuid() == 0:
    target = '/proc/version'  # Exists, read-only for everyone.
  else:
    target = str(tmp_path / 'results.json')
    open(target, 'w').close()
    os.chmod(target, 0o444)
  with pytest.raises(PathError, match=f'{target}'):
    paths.check_output_file(target)


def test_too_little_free_space_is_reported_with_both_numbers(tmp_path, monkeypatch):
  monkeypatch.setattr(shutil, 'disk_usage', lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
  with pytest.raises(PathError, match=r'has 1.0 MiB free, but about 64.0 MiB will be written'):
    paths.check_output_dir(str(tmp_path), needed_bytes=64 << 20)


def test_a_full_disk_fails_the_probe_write(tmp_path, monkeypatch):
  real_open = open

  def full(path, mode='r', *args, **kwargs):
    if 'write-test' in str(path):
      raise OSError(28, 'No space left on device')
    return real_open(path, mode, *args, **kwargs)
  monkeypatch.setattr('builtins.open', full)
  with pytest.raises(PathError, match=f'{tmp_path} cannot be written: No space left on device'):
    paths.check_output_dir(str(tmp_path))


def test_remote_locations_are_left_to_their_writer():
  paths.check_output_dir('gs://bucket/run')
  paths.check_output_file('gs://bucket/out.json')
