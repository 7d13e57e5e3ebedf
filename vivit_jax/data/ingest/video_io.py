"""Decoding and encoding videos with PyAV (which bundles FFmpeg), for data preparation and tests.

`decode_video` returns every frame of a file as uint8 RGB, optionally resampled to a frame rate and resized so
that the short side has a given length, the two things DMVR's generator does with the ffmpeg command line. Any
file that yields no frame raises `VideoDecodeError`, whose reason says why (empty file, not a container, no
video stream, no frame decodable); callers such as `prepare.py` list these reasons instead of crashing.

Damaged files follow FFmpeg's command-line behaviour: a packet the decoder rejects is dropped and decoding goes
on, and a file that ends early (truncated) returns the frames decoded before the end. Only a file from which not
a single frame can be decoded is an error. `decode_video_info` also returns a `VideoInfo` that says how many
frames the container declares and how many decoded, so that a half-downloaded file is reported as partial
instead of passing for a short video.

Frames come out as they are meant to be shown: a display matrix (the side data phones write, read from each
frame) or a legacy `rotate` tag of the stream is applied, as the ffmpeg command line's autorotate does.
"""

import contextlib
import dataclasses
import logging
import math
import os
import re
from typing import Callable, Container, Iterator, List, Optional, Tuple

import av
import av.logging
import numpy as np

from vivit_jax.data.ingest.orientation import UPRIGHT, Orientation, apply_orientation, frame_orientation

_VIDEO_CODECS = {  # extension -> (encoder, pixel format)
    '.mp4': ('libx264', 'yuv420p'),
    '.mkv': ('libx264', 'yuv420p'),
    '.webm': ('libvpx-vp9', 'yuv420p'),
    '.avi': ('mpeg4', 'yuv420p'),
}
# Limits on how much of a file FFmpeg reads to identify its format; a garbage file fails fast.
_PROBE_OPTIONS = {'probesize': str(5 << 20), 'analyzeduration': str(5_000_000)}
_TIME_EPSILON = 1e-4  # Seconds; absorbs float rounding when comparing frame and target times.
_MAX_HOLD_SECONDS = 10.0  # Resampling repeats one frame for at most this long.
# A file is partial when it decodes more than this fraction (and more than one frame) short of its declared count.
MAX_FPS = 1000.0  # A higher decoding rate only repeats frames, hundreds of times (and memory grows with it).
_PARTIAL_SLACK = 0.02


class VideoDecodeError(ValueError):
  """A video file that yields no frames; `reason` says why."""

  def __init__(self, path: str, reason: str):
    super().__init__(f'{path}: {reason}')
    self.path = path
    self.reason = reason


@dataclasses.dataclass
class VideoInfo:
  """What decoding a file found, beside its frames."""
  declared_frames: Optional[int] = None  # The container's frame count (or duration x rate); None: unknown.
  decoded_frames: int = 0  # Frames decoded at the native rate, before resampling.
  damage: str = ''  # The first read or decode error, '' if none.
  orientation: Orientation = UPRIGHT  # Applied to every frame.
  complete: bool = False  # Decoded to the end of the file (not stopped by max_frames).

  @property
  def partial(self) -> bool:
    """Decoded to the end, yet clearly fewer frames than declared (or, with no declared count, damaged)."""
    if not self.complete:
      return False
    if self.declared_frames:
      missing = self.declared_frames - self.decoded_frames
      return missing > max(1.0, _PARTIAL_SLACK * self.declared_frames)
    return bool(self.damage)

  def describe(self) -> str:
    """e.g. '12 of 100 declared frames decoded (Invalid data found ...)'."""
    declared = 'an unknown number of' if self.declared_frames is None else str(self.declared_frames)
    text = f'{self.decoded_frames} of {declared} declared frames decoded'
    return f'{text} ({self.damage})' if self.damage else text


def _describe(error: Exception) -> str:
  """FFmpeg's message and its last logged error, without the file name (which the caller reports)."""
  if isinstance(error, av.error.FFmpegError):
    text = error.strerror or str(error)
    if error.log:
      text += f' ({error.log[1]}: {error.log[2].strip()})'
    return text
  return f'{type(error).__name__}: {error}'


def _output_size(width: int, height: int, short_side: Optional[int]) -> Tuple[int, int]:
  """(width, height) with min(width, height) == short_side and the aspect ratio kept."""
  if not short_side or min(width, height) == short_side:
    return width, height
  scale = short_side / min(width, height)
  if width <= height:
    return short_side, max(1, round(height * scale))
  return max(1, round(width * scale)), short_side


def _to_rgb(frame: av.VideoFrame, size: Tuple[int, int], orientation: Optional[Orientation] = None) -> np.ndarray:
  """RGB [H, W, 3] resized to `size` (coded width, height), then turned upright (default: by the frame's own
  display matrix)."""
  width, height = size
  upright = frame_orientation(frame) if orientation is None else orientation
  if (frame.width, frame.height) != size:
    frame = frame.reformat(width=width, height=height, format='rgb24', interpolation='AREA')
  return apply_orientation(frame.to_ndarray(format='rgb24'), upright)


def _decoded_frames(path: str, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    info: Optional[VideoInfo] = None) -> Iterator[av.VideoFrame]:
  """Frames in presentation order; rejected packets are dropped, an early end of the file stops.

  `info`, when given, counts the frames decoded and keeps the first error.
  """
  decoded, first_error = 0, None
  packets = container.demux(stream)
  while True:
    try:
      packet = next(packets)
    except StopIteration:
      break
    except (av.error.FFmpegError, OSError) as e:  # Reading the file failed: truncated or unreadable.
      first_error = first_error or e
      break
    try:
      frames = packet.decode()
    except av.error.FFmpegError as e:  # A damaged packet: drop it, as the ffmpeg command line does.
      first_error = first_error or e
      continue
    for frame in frames:
      decoded += 1
      if info is not None:
        info.decoded_frames = decoded
      yield frame
  if first_error is not None and info is not None:
    info.damage = _describe(first_error)
  if first_error is not None:
    if not decoded:
      raise VideoDecodeError(path, f'decoding failed at frame 0: {_describe(first_error)}')
    logging.warning('%s: damaged or truncated; kept the %d frames decoded (%s)', path, decoded,
                    _describe(first_error))


def _frame_times(frames: Iterator[av.VideoFrame], rate: float) -> Iterator[Tuple[float, av.VideoFrame]]:
  """(presentation time in seconds, frame); frames without a timestamp are placed at index / rate."""
  for index, frame in enumerate(frames):
    time = frame.time
    yield (index / rate if time is None else float(time)), frame


def _resample(timed: Iterator[Tuple[float, av.VideoFrame]], fps: Optional[float],
              rate: float) -> Iterator[av.VideoFrame]:
  """Frames at `fps`: output k shows the last input frame whose time is at most start + k / fps.

  The video is taken to last until one native frame interval after its last frame, so resampling 12 frames
  at 10 fps gives 6 frames at 5 fps and 24 at 20 fps. One input frame is repeated for at most
  `_MAX_HOLD_SECONDS`; a longer gap between timestamps (a broken file) is skipped, not filled.
  """
  if not fps:
    for _, frame in timed:
      yield frame
    return
  start, previous, target, step = None, None, 0, 1.0 / fps
  max_hold = math.ceil(_MAX_HOLD_SECONDS * fps)

  def hold(frame: av.VideoFrame, until: float) -> Iterator[av.VideoFrame]:
    nonlocal target
    for _ in range(max_hold):
      if start + target * step >= until - _TIME_EPSILON:
        return
      yield frame
      target += 1
    target = max(target, math.ceil((until - _TIME_EPSILON - start) / step))

  for time, frame in timed:
    if start is None:
      start = time
    if previous is not None:
      yield from hold(previous[1], time)
    previous = time, frame
  if previous is not None:
    yield from hold(previous[1], previous[0] + 1.0 / rate)


def _native_rate(stream: av.video.stream.VideoStream) -> float:
  for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
    if rate:
      return float(rate)
  return 25.0  # FFmpeg's own fallback when a stream declares no rate.


def _seconds(text: str) -> Optional[float]:
  """'00:01:02.500000000' (Matroska's DURATION tag) -> 62.5; None if it is not such a time."""
  match = re.fullmatch(r'\s*(\d+):(\d\d):(\d\d(?:\.\d*)?)\s*', text or '')
  return None if match is None else int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])


def _declared_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                     rate: float) -> Optional[int]:
  """The stream's frame count from the container's index, else its duration x rate; None when unknown."""
  if stream.frames and stream.frames > 0:
    return int(stream.frames)
  seconds = None
  if stream.duration and stream.time_base:
    seconds = float(stream.duration * stream.time_base)
  if seconds is None:
    seconds = _seconds({k.lower(): v for k, v in stream.metadata.items()}.get('duration', ''))
  if seconds is None and container.duration:
    seconds = container.duration / av.time_base
  return round(seconds * rate) if seconds and seconds > 0 and math.isfinite(seconds) else None


class _EveryFrame:
  """`stream_video`'s selection that keeps every frame."""

  def __contains__(self, index: int) -> bool:
    return True


def decode_video(path: str, fps: Optional[float] = None, short_side: Optional[int] = None,
                 max_frames: Optional[int] = None) -> np.ndarray:
  """Decodes a video file to uint8 RGB frames [T, H, W, 3], upright; `decode_video_info` without the info.

  Args:
    path: the video file (any container and codec FFmpeg reads).
    fps: resample to this frame rate by presentation timestamps (each output frame is the last input frame
      shown at its time); None or 0 keeps every decoded frame.
    short_side: resize (area interpolation) so that min(H, W) == short_side, keeping the aspect ratio;
      None or 0 keeps the size.
    max_frames: stop after this many output frames; None decodes to the end.

  Returns:
    The frames. A damaged or truncated file returns the frames that could be decoded (a warning is logged).

  Raises:
    VideoDecodeError: the file is missing or empty, is not a container FFmpeg reads, has no video stream, or
      yields no frame. Its `reason` says which.
  """
  return decode_video_info(path, fps, short_side, max_frames)[0]


def decode_video_info(path: str, fps: Optional[float] = None, short_side: Optional[int] = None,
                      max_frames: Optional[int] = None) -> Tuple[np.ndarray, VideoInfo]:
  """(frames, info): `decode_video`'s frames and what the decoding found (declared and decoded frame counts,
  the first error, the orientation applied); `info.partial` marks a file that decoded clearly short of its
  declared length, such as a half-downloaded MP4 whose index sits at the front. Raises as `decode_video`."""
  info, frames = VideoInfo(), []
  with contextlib.closing(stream_video(path, lambda declared: _EveryFrame(), fps, short_side, info)) as stream:
    for _, frame in stream:
      frames.append(frame)
      if max_frames and len(frames) >= max_frames:
        break  # Not `complete`: stopped before the end, so never partial.
  if info.partial and not info.damage:  # A damaged file has been logged already.
    logging.warning('%s: partial: %s', path, info.describe())
  return np.stack(frames), info


def encode_jpeg(frames: np.ndarray, quality: int = 90) -> List[bytes]:
  """One baseline JPEG per frame of uint8 [T, H, W, 3] RGB frames, with TensorFlow's libjpeg."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only where JPEGs are made)
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f'encode_jpeg expects uint8 frames [T, H, W, 3]; got {frames.dtype} {frames.shape}')
  return [tf.io.encode_jpeg(frame, format='rgb', quality=int(quality)).numpy() for frame in frames]


def write_video(path: str, frames: np.ndarray, fps: int = 10) -> None:
  """Encodes uint8 [T, H, W, 3] RGB frames; the codec follows the extension.

  .mp4 and .mkv: H.264 (libx264), .webm: VP9 (libvpx-vp9), .avi: MPEG-4 part 2; all yuv420p, so H and W
  must be even. A keyframe every second. Meant for tests and tools.
  """
  extension = os.path.splitext(path)[1].lower()
  if extension not in _VIDEO_CODECS:
    raise ValueError(f'{path}: cannot choose a codec for extension {extension!r}; '
                     f'expected one of {sorted(_VIDEO_CODECS)}')
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
    raise ValueError(f'{path}: write_video expects uint8 frames [T, H, W, 3] with T >= 1; '
                     f'got {frames.dtype} {frames.shape}')
  height, width = frames.shape[1:3]
  if height % 2 or width % 2:
    raise ValueError(f'{path}: frame size {height}x{width} must be even for yuv420p')
  codec, pixel_format = _VIDEO_CODECS[extension]
  with av.open(path, mode='w') as container:
    stream = container.add_stream(codec, rate=int(fps))
    stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
    stream.codec_context.gop_size = max(1, int(fps))
    for array in frames:
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format='rgb24')
      container.mux(stream.encode(frame))
    container.mux(stream.encode())


def stream_video(path: str, select: Callable[[Optional[int]], Container[int]], fps: Optional[float] = None,
                 short_side: Optional[int] = None,
                 info: Optional[VideoInfo] = None) -> Iterator[Tuple[int, Optional[np.ndarray]]]:
  """`decode_video`'s frames one at a time, converting only those the caller keeps, so that memory is bounded
  by what the caller keeps, not by the video's length.

  Once the file is open, `select(declared)` is called with the number of frames the container declares at `fps`
  (its frame count or duration; None when it declares neither) and returns the frame indices to keep: anything
  with `in`, asked once per frame, in order (so it may grow as frames arrive). Then `(index, frame)` is yielded
  for every frame: uint8 [H, W, 3] RGB, upright, for an index kept; None for the others. `info`, when given, is
  filled as `decode_video_info` fills it (`info.partial` once the stream has ended).

  Raises:
    VideoDecodeError: as `decode_video`, also after frames have been yielded.
  """
  if not os.path.isfile(path):
    raise VideoDecodeError(path, 'file not found')
  if os.path.getsize(path) == 0:
    raise VideoDecodeError(path, 'empty file (0 bytes)')
  info = VideoInfo() if info is None else info
  previous_level = av.logging.get_level()
  av.logging.set_level(av.logging.ERROR)  # So that FFmpeg's last error message joins the exception text.
  index = 0
  try:
    with av.logging.Capture(local=False):  # Keeps FFmpeg's messages off the console; the reasons carry them.
      try:
        container = av.open(path, options=_PROBE_OPTIONS)
      except (av.error.FFmpegError, OSError) as e:
        raise VideoDecodeError(path, f'not a video container: {_describe(e)}') from e
      with container:
        if not container.streams.video:
          raise VideoDecodeError(path, 'no video stream')
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO'
        rate = _native_rate(stream)
        info.declared_frames = _declared_frames(container, stream, rate)
        declared = info.declared_frames
        if declared and fps:  # At the resampled rate, as `_resample` counts: the duration's frames rounded up.
          declared = max(1, math.ceil(declared / rate * fps - _TIME_EPSILON))
        keep = select(declared)
        frames = _resample(_frame_times(_decoded_frames(path, container, stream, info), rate), fps, rate)
        size = None
        while True:
          try:
            frame = next(frames, None)
            if frame is not None and size is None:
              size = _output_size(frame.width, frame.height, short_side)
              info.orientation = frame_orientation(frame, stream)
          except VideoDecodeError:
            raise
          except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as e:
            raise VideoDecodeError(path, f'decoding failed at frame {index}: {_describe(e)}') from e
          if frame is None:
            break
          wanted = index in keep
          try:
            array = _to_rgb(frame, size, info.orientation) if wanted else None
          except (av.error.FFmpegError, ValueError, RuntimeError) as e:
            raise VideoDecodeError(path, f'converting frame {index} failed: {_describe(e)}') from e
          yield index, array
          index += 1
        info.complete = True
  finally:
    av.logging.set_level(previous_level)
  if not index:
    raise VideoDecodeError(path, 'no frames decoded')
