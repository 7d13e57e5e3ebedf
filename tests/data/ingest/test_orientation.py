"""Rotation metadata: display matrices as FFmpeg writes them, on arrays and in real files written with PyAV."""

import math

import numpy as np
import pytest

from tests.data.ingest.test_video_io import write_tagged
from vivit_jax.data.ingest import orientation, video_io


def display_matrix(degrees: int, hflip: bool) -> np.ndarray:
  """FFmpeg's matrix for a counterclockwise rotation, then a horizontal mirror (libavutil/display.c)."""
  radians = math.radians(degrees)
  cos, sin = round(math.cos(radians) * 65536), round(math.sin(radians) * 65536)
  matrix = np.array([cos, -sin, 0, sin, cos, 0, 0, 0, 1 << 30], np.int64)
  if hflip:
    matrix[[0, 3, 6]] *= -1
  return matrix


@pytest.mark.parametrize('degrees', [0, 90, 180, -90, 270])
@pytest.mark.parametrize('hflip', [False, True])
def test_every_display_matrix_turns_arrays_upright(degrees, hflip):
  image = np.arange(2 * 3 * 1).reshape(2, 3, 1)
  expected = np.rot90(image, k=degrees // 90)  # np.rot90 turns counterclockwise.
  expected = expected[:, ::-1] if hflip else expected
  upright = orientation.apply_orientation(image, orientation.orientation_from_display_matrix(
      display_matrix(degrees, hflip)))
  np.testing.assert_array_equal(upright, expected)


@pytest.mark.parametrize('tag,turns', [(90, -1), (180, 2), (270, 1), (-90, 1), (0, 0), (360, 0)])
def test_legacy_rotate_tag_turns_clockwise(tag, turns):
  image = np.arange(6).reshape(2, 3)
  np.testing.assert_array_equal(
      orientation.apply_orientation(image, orientation.orientation_from_rotate_tag(tag)), np.rot90(image, turns))


def corner_marker(num_frames: int = 4, height: int = 32, width: int = 48) -> np.ndarray:
  """Dark frames with a bright block in the top-left corner: each of the 8 orientations looks different."""
  frames = np.full((num_frames, height, width, 3), 20, np.uint8)
  frames[:, :10, :14] = 230
  return frames


def seen_as(decoded: np.ndarray, frames: np.ndarray) -> str:
  """Which turn of `frames` the decoded frames show (the closest of the 8)."""
  turns = {f'rot{90 * k}{"_mirrored" if m else ""}': np.rot90(frames, k, axes=(1, 2))[:, :, ::-1 if m else 1]
           for k in range(4) for m in (False, True)}
  errors = {name: np.abs(decoded.astype(int) - turned).mean() for name, turned in turns.items()
            if turned.shape == decoded.shape}
  best = min(errors, key=errors.get)
  assert errors[best] < 4 and sorted(errors.values())[1] > 20, errors
  return best


@pytest.mark.parametrize('extension', ['.mp4', '.webm', '.mov'])
def test_display_matrix_in_a_file_is_applied(tmp_path, extension):
  frames = corner_marker()
  path = write_tagged(str(tmp_path / f'phone{extension}'), frames, rotation=90)
  decoded, info = video_io.decode_video_info(path)
  assert decoded.shape == (4, 48, 32, 3) and info.orientation == (True, True, False)
  assert seen_as(decoded, frames) == 'rot90'  # Counterclockwise, as the matrix says.
  assert video_io.decode_video(path, short_side=16).shape == (4, 24, 16, 3)  # The short side as shown.


@pytest.mark.parametrize('rotation,hflip,expected', [(180, True, 'rot180_mirrored'), (-90, False, 'rot270'),
                                                     (0, True, 'rot0_mirrored')])
def test_rotations_and_mirrors_in_files(tmp_path, rotation, hflip, expected):
  frames = corner_marker()
  path = write_tagged(str(tmp_path / 'selfie.mp4'), frames, rotation=rotation, hflip=hflip)
  assert seen_as(video_io.decode_video(path), frames) == expected


def test_legacy_rotate_tag_in_a_file(tmp_path):
  frames = corner_marker()
  tagged = write_tagged(str(tmp_path / 'old.mkv'), frames, tags={'rotate': '90'})  # Matroska keeps the tag.
  assert seen_as(video_io.decode_video(tagged), frames) == 'rot270'  # 90 degrees clockwise.
  nonsense = write_tagged(str(tmp_path / 'nonsense.mkv'), frames, tags={'rotate': 'sideways'})
  assert seen_as(video_io.decode_video(nonsense), frames) == 'rot0'  # A tag that is no number is ignored.
