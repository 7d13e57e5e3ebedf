"""Turning decoded frames upright: the display matrix phones write (per-frame side data) or a stream's legacy
`rotate` tag, applied as ffmpeg's autorotate does (multiples of 90 degrees, with or without a mirror)."""

from typing import Optional, Sequence, Tuple

import av
import numpy as np

Orientation = Tuple[bool, bool, bool]  # (transpose, flip rows, flip columns), applied in this order.
UPRIGHT: Orientation = (False, False, False)


def orientation_from_display_matrix(matrix: Sequence[int]) -> Orientation:
  """How to turn a coded [H, W] image upright, from FFmpeg's 3x3 display matrix (9 ints, row-major).

  The matrix maps a coded pixel (x, y) to x' = a x + c y, y' = b x + d y (a, b, c, d = matrix[0, 1, 3, 4]); only
  its axis-aligned part is used (multiples of 90 degrees, with or without a mirror), as ffmpeg's autorotate does.
  """
  a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
  if abs(a) + abs(d) >= abs(b) + abs(c):
    return False, d < 0, a < 0
  return True, b < 0, c < 0


def orientation_from_rotate_tag(degrees: float) -> Orientation:
  """The legacy `rotate` stream tag: degrees clockwise that the coded image must turn to be upright."""
  return {0: UPRIGHT, 1: (True, False, True), 2: (False, True, True), 3: (True, True, False)}[
      round(degrees / 90) % 4]


def apply_orientation(image: np.ndarray, orientation: Orientation) -> np.ndarray:
  """An [H, W, ...] image turned upright (a view when nothing changes)."""
  transpose, flip_rows, flip_columns = orientation
  if transpose:
    image = np.swapaxes(image, 0, 1)
  if flip_rows:
    image = image[::-1]
  if flip_columns:
    image = image[:, ::-1]
  return image if orientation == UPRIGHT else np.ascontiguousarray(image)


def frame_orientation(frame: av.VideoFrame, stream: Optional[av.video.stream.VideoStream] = None) -> Orientation:
  """The frame's display matrix, else the stream's legacy `rotate` tag, else upright."""
  matrix = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
  if matrix is not None and matrix.buffer_size >= 36:
    return orientation_from_display_matrix(np.frombuffer(bytes(matrix), '<i4', count=9))
  tags = {key.lower(): value for key, value in (stream.metadata if stream is not None else {}).items()}
  try:
    return orientation_from_rotate_tag(float(tags.get('rotate', 0)))
  except ValueError:  # A tag that is not a number: FFmpeg ignores it too.
    return UPRIGHT
