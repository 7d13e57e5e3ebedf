"""Temporal sampling: which frame indices of a decoded video make up a clip.

Every function returns int32 indices into the video's frames and runs as a TensorFlow graph (inside
`tf.data.Dataset.map`); randomness comes only from the explicit stateless `seed`.

A clip is `num_frames` frames `stride` apart, so it spans `span = (num_frames - 1) * stride + 1` frames and
its start may be anything in the valid range `[0, n - span]` of a video with `n` frames. A video shorter than
`span` has only the start 0, and the indices past its end are mapped back into it by `mode`:

- 'wrap': index modulo n, the video plays again from its first frame (Scenic/DMVR).
- 'pad': index clipped to n - 1, the last frame repeats.

Training (`train_indices`) draws the start uniformly from the valid range; validation (`center_indices`)
takes the centred clip, `start = (n - span) // 2` (DMVR centres `num_frames * stride` frames instead, which
puts its clip up to `stride // 2` frames earlier); the multi-view test (`multi_view_indices`) takes evenly
spaced starts, see there for the rule that keeps its views distinct in short videos.
"""

from typing import Union

import tensorflow as tf

MODES = ('wrap', 'pad')
IntLike = Union[int, tf.Tensor]


def _check(num_frames: int, stride: int, mode: str) -> None:
  if num_frames < 1 or stride < 1:
    raise ValueError(f'num_frames ({num_frames}) and stride ({stride}) must be positive')
  if mode not in MODES:
    raise ValueError(f'short-video mode {mode!r} is not one of {MODES}')


def _num_frames_tensor(num_available: IntLike) -> tf.Tensor:
  """`num_available` as an int32 scalar, asserting the video has at least one frame."""
  n = tf.cast(tf.convert_to_tensor(num_available), tf.int32)
  with tf.control_dependencies(
      [tf.debugging.assert_positive(n, message='a video without frames cannot be sampled')]):
    return tf.identity(n)


def _span(num_frames: int, stride: int) -> int:
  return (num_frames - 1) * stride + 1


def _clip(start: tf.Tensor, n: tf.Tensor, num_frames: int, stride: int, mode: str) -> tf.Tensor:
  """Indices `start[..., None] + i * stride`, brought into [0, n) by `mode`."""
  steps = tf.range(num_frames, dtype=tf.int32) * stride
  indices = tf.expand_dims(start, -1) + steps
  if mode == 'wrap':
    return tf.math.floormod(indices, n)
  return tf.minimum(indices, n - 1)


def train_indices(num_available: IntLike, num_frames: int, stride: int, seed: tf.Tensor,
                  mode: str = 'wrap') -> tf.Tensor:
  """A training clip from a uniformly random start.

  Args:
    num_available: frames in the video (n >= 1), a Python int or an integer scalar tensor.
    num_frames: frames per clip.
    stride: distance between consecutive sampled frames.
    seed: int32/int64 [2] stateless seed; the same seed gives the same clip.
    mode: 'wrap' or 'pad', how indices past the end of a short video are mapped back.

  Returns:
    int32 [num_frames]: `start + i * stride`, start uniform in [0, max(0, n - span)].
  """
  _check(num_frames, stride, mode)
  n = _num_frames_tensor(num_available)
  max_start = tf.maximum(0, n - _span(num_frames, stride))
  start = tf.random.stateless_uniform([], seed, minval=0, maxval=max_start + 1, dtype=tf.int32)
  indices = _clip(start, n, num_frames, stride, mode)
  indices.set_shape([num_frames])
  return indices


def center_indices(num_available: IntLike, num_frames: int, stride: int,
                   mode: str = 'wrap') -> tf.Tensor:
  """The centred clip (validation): int32 [num_frames] from `start = max(0, (n - span) // 2)`."""
  _check(num_frames, stride, mode)
  n = _num_frames_tensor(num_available)
  start = tf.maximum(0, (n - _span(num_frames, stride)) // 2)
  indices = _clip(start, n, num_frames, stride, mode)
  indices.set_shape([num_frames])
  return indices


def view_starts(num_available: IntLike, num_frames: int, stride: int, num_clips: int) -> tf.Tensor:
  """int32 [num_clips]: the start of each temporal test view (see `multi_view_indices`)."""
  if num_clips < 1:
    raise ValueError(f'num_clips ({num_clips}) must be positive')
  n = _num_frames_tensor(num_available)
  max_start = tf.maximum(0, n - _span(num_frames, stride))
  if num_clips == 1:
    return tf.reshape(max_start // 2, [1])
  i = tf.range(num_clips, dtype=tf.int32)
  # Round-half-up of linspace(0, max_start, num_clips), in exact integer arithmetic.
  last = num_clips - 1
  inside = (2 * i * max_start + last) // (2 * last)
  # Evenly spaced over one pass through the video: distinct for i < n, each below n.
  shifted = (i * n) // num_clips
  return tf.where(max_start + 1 >= num_clips, inside, shifted)


def multi_view_indices(num_available: IntLike, num_frames: int, stride: int, num_clips: int,
                       mode: str = 'wrap') -> tf.Tensor:
  """Evenly spaced temporal views for the multi-view test.

  The rule for the starts:
  - num_clips == 1: the centred clip, as `center_indices`.
  - The valid range [0, n - span] holds at least num_clips starts: linspace over it, first and last
    included, rounded half up. Every view lies inside the video and consecutive starts differ by at least 1.
  - Otherwise (a short video, or too few full clips): start_i = floor(i * n / num_clips), evenly spaced
    offsets over one pass of the video, and indices past the end are wrapped or padded by `mode`. Views then
    begin at different frames, so they are pairwise distinct whenever num_clips <= n (a clip of an n-frame
    video can begin at only n different frames; with more views than frames they repeat in turn).

  Args:
    num_available: frames in the video (n >= 1).
    num_frames: frames per clip.
    stride: distance between consecutive sampled frames.
    num_clips: number of temporal views.
    mode: 'wrap' or 'pad'.

  Returns:
    int32 [num_clips, num_frames].
  """
  _check(num_frames, stride, mode)
  n = _num_frames_tensor(num_available)
  starts = view_starts(n, num_frames, stride, num_clips)
  indices = _clip(starts, n, num_frames, stride, mode)
  indices.set_shape([num_clips, num_frames])
  return indices
