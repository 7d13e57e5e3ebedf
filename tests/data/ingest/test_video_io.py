"""video_io: real H.264, VP9 and MPEG-4 files written with PyAV, decoded back; the ways a file can be bad."""

import math
import os
import shutil

import av
import numpy as np
import pytest
import tensorflow as tf

from vivit_jax.data.ingest import video_io
from vivit_jax.data.ingest.video_io import VideoDecodeError

SQUARE_COLOUR = (250, 30, 30)


def moving_square(num_frames: int = 12, height: int = 32, width: int = 48, shade: int = 40) -> np.ndarray:
  """A red 10x8 square moving 3 pixels right per frame over a flat background; uint8 [T, H, W, 3]."""
  frames = np.full((num_frames, height, width, 3), shade, np.uint8)
  for t in range(num_frames):
    x = 2 + 3 * t
    frames[t, 10:20, x:x + 8] = SQUARE_COLOUR
  return frames


def square_x(frames: np.ndarray) -> np.ndarray:
  """Per frame, the mean column of the red pixels (the square's centre)."""
  red = (frames[..., 0] > 150) & (frames[..., 1] < 100)
  columns = np.arange(frames.shape[2])[None, None, :]
  return (red * columns).sum(axis=(1, 2)) / np.maximum(red.sum(axis=(1, 2)), 1)


def truncate(source: str, target: str, fraction: float) -> str:
  with open(source, 'rb') as f:
    data = f.read()
  with open(target, 'wb') as f:
    f.write(data[:int(len(data) * fraction)])
  return target


def corrupt_payload(path: str) -> str:
  """Overwrites all of an MP4's frame data (mdat) with 0xff; its index (moov, at the end) stays valid."""
  with open(path, 'rb') as f:
    data = bytearray(f.read())
  start, end = data.index(b'mdat') + 4, data.index(b'moov') - 4
  data[start:end] = b'\xff' * (end - start)
  with open(path, 'wb') as f:
    f.write(data)
  return path


TAGGED_CODECS = {'.mp4': 'libx264', '.mkv': 'libx264', '.webm': 'libvpx-vp9', '.mov': 'libx264'}


def write_tagged(path: str, frames: np.ndarray, rotation: int = 0, hflip: bool = False, tags=None,
                 options=None, fps: int = 10) -> str:
  """Like video_io.write_video, with a display rotation (degrees counterclockwise), stream tags and muxer
  options (e.g. {'movflags': 'faststart'})."""
  codec = TAGGED_CODECS[path[path.rindex('.'):]]
  with av.open(path, 'w', options=options or {}) as container:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = 'yuv420p'
    stream.codec_context.gop_size = fps
    if rotation or hflip:
      stream.set_display_rotation(rotation, hflip=hflip)
    stream.metadata.update(tags or {})
    for array in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format='rgb24')))
    container.mux(stream.encode())
  return path


def noise(num_frames: int, height: int = 32, width: int = 48) -> np.ndarray:
  """Random frames: they compress badly, so that the frame data, not the index, fills the file."""
  return np.random.default_rng(0).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize('extension,codec', [('.mp4', 'h264'), ('.webm', 'vp9'), ('.avi', 'mpeg4')])
def test_roundtrip_each_codec(tmp_path, extension, codec):
  frames = moving_square()
  path = str(tmp_path / f'clip{extension}')
  video_io.write_video(path, frames, fps=10)
  with av.open(path) as container:
    assert container.streams.video[0].codec_context.name == codec
  decoded, info = video_io.decode_video_info(path)
  assert decoded.shape == (12, 32, 48, 3) and decoded.dtype == np.uint8
  assert (info.declared_frames, info.decoded_frames, info.partial) == (12, 12, False)  # Whole files are whole.
  assert np.abs(decoded.astype(int) - frames).mean() < 6
  np.testing.assert_allclose(square_x(decoded), square_x(frames), atol=1.0)  # Frame order and motion kept.


@pytest.fixture(scope='module')
def mp4(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('video') / 'clip.mp4')
  video_io.write_video(path, moving_square(), fps=10)
  return path


def test_fps_resampling_picks_frames_by_timestamp(mp4):
  native = video_io.decode_video(mp4)
  half = video_io.decode_video(mp4, fps=5)
  double = video_io.decode_video(mp4, fps=20)
  assert half.shape[0] == 6 and double.shape[0] == 24
  np.testing.assert_array_equal(half, native[::2])  # Output k shows the frame at time k / 5 s.
  np.testing.assert_array_equal(double, np.repeat(native, 2, axis=0))
  assert video_io.decode_video(mp4, fps=7.5).shape[0] == 9  # 1.2 s at 7.5 fps.


def test_short_side_keeps_aspect_ratio(tmp_path, mp4):
  small = video_io.decode_video(mp4, short_side=16)
  assert small.shape == (12, 16, 24, 3)
  np.testing.assert_allclose(square_x(small), square_x(video_io.decode_video(mp4)) / 2, atol=1.0)
  assert video_io.decode_video(mp4, short_side=64).shape == (12, 64, 96, 3)
  portrait = str(tmp_path / 'portrait.webm')
  video_io.write_video(portrait, moving_square(4, height=48, width=32), fps=10)
  assert video_io.decode_video(portrait, short_side=16).shape == (4, 24, 16, 3)


def test_max_frames_stops_early(mp4):
  assert video_io.decode_video(mp4, fps=20, max_frames=5).shape == (5, 32, 48, 3)


def _reason(path: str) -> str:
  with pytest.raises(VideoDecodeError) as info:
    video_io.decode_video(path)
  assert info.value.path == path and str(info.value) == f'{path}: {info.value.reason}'
  return info.value.reason


def test_bad_files_raise_with_reasons(tmp_path, mp4):
  empty = tmp_path / 'empty.mp4'
  empty.write_bytes(b'')
  assert _reason(str(empty)) == 'empty file (0 bytes)'
  text = tmp_path / 'notes.mp4'
  text.write_text('these are not the frames you are looking for\n' * 20)
  assert _reason(str(text)).startswith('not a video container: ')
  assert _reason(str(tmp_path / 'absent.mp4')) == 'file not found'
  # libx264 in MP4 writes the index (moov atom) at the end: the first 30% has none, so no frame at all.
  truncated = truncate(mp4, str(tmp_path / 'truncated.mp4'), 0.3)
  reason = _reason(truncated)
  assert reason.startswith('not a video container: ') and 'moov atom not found' in reason
  corrupt = str(tmp_path / 'corrupt.mp4')
  shutil.copy(mp4, corrupt)
  assert _reason(corrupt_payload(corrupt)).startswith('decoding failed at frame 0: Invalid data found')


def test_audio_only_file_has_no_video_stream(tmp_path):
  path = str(tmp_path / 'tone.wav')
  with av.open(path, 'w') as container:
    stream = container.add_stream('pcm_s16le', rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format='s16', layout='mono')
    frame.sample_rate = 8000
    container.mux(stream.encode(frame))
    container.mux(stream.encode())
  assert _reason(path) == 'no video stream'


def test_truncated_stream_returns_the_frames_before_the_cut(tmp_path):
  path = str(tmp_path / 'clip.webm')
  frames = moving_square()
  video_io.write_video(path, frames, fps=10)
  decoded = video_io.decode_video(truncate(path, str(tmp_path / 'cut.webm'), 0.8))
  assert 1 <= decoded.shape[0] < 12
  np.testing.assert_allclose(square_x(decoded), square_x(frames[:decoded.shape[0]]), atol=1.0)
  with pytest.raises(VideoDecodeError, match='no frames decoded|not a video container'):
    video_io.decode_video(truncate(path, str(tmp_path / 'cut_early.webm'), 0.3))


def test_encode_jpeg_roundtrip_and_quality():
  frames = moving_square(3)
  jpegs = video_io.encode_jpeg(frames, quality=95)
  assert len(jpegs) == 3 and all(j[:2] == b'\xff\xd8' for j in jpegs)
  decoded = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs])
  assert decoded.shape == frames.shape and np.abs(decoded.astype(int) - frames).mean() < 4
  assert len(video_io.encode_jpeg(frames[:1], quality=20)[0]) < len(jpegs[0])
  with pytest.raises(ValueError, match='uint8 frames'):
    video_io.encode_jpeg(frames[0])


def test_write_video_rejects_what_it_cannot_encode(tmp_path):
  with pytest.raises(ValueError, match=r'clip\.gif.*extension'):
    video_io.write_video(str(tmp_path / 'clip.gif'), moving_square(2))
  with pytest.raises(ValueError, match='must be even'):
    video_io.write_video(str(tmp_path / 'odd.mp4'), moving_square(2, height=31))
  assert not os.path.exists(tmp_path / 'odd.mp4')


def test_resampling_does_not_fill_a_broken_timestamp_gap():
  timed = [(0.0, 'a'), (0.1, 'b'), (1e9, 'c')]  # 'c' a billion seconds later: a damaged timestamp.
  frames = list(video_io._resample(iter(timed), fps=10, rate=10))  # pylint: disable=protected-access
  assert frames == ['a'] + ['b'] * 100 + ['c']  # 'b' held for _MAX_HOLD_SECONDS at most.


@pytest.mark.parametrize('fraction', [0.12, 0.5])
def test_half_downloaded_mp4_with_its_index_in_front_is_partial(tmp_path, fraction):
  """The MP4 index (moov) at the front declares 100 frames; the cut leaves the first few."""
  whole = write_tagged(str(tmp_path / 'whole.mp4'), noise(100), options={'movflags': 'faststart'})
  with open(whole, 'rb') as f:
    assert f.read().index(b'moov') < 100  # Index first, as web downloads have it.
  decoded, info = video_io.decode_video_info(truncate(whole, str(tmp_path / 'cut.mp4'), fraction), fps=5)
  assert info.partial and info.complete and info.declared_frames == 100
  assert 1 <= info.decoded_frames < 100 * fraction + 2 and len(decoded) == math.ceil(info.decoded_frames / 2)
  assert info.describe().startswith(f'{info.decoded_frames} of 100 declared frames decoded')
  _, whole_info = video_io.decode_video_info(whole)
  assert (whole_info.declared_frames, whole_info.decoded_frames, whole_info.partial) == (100, 100, False)


def test_cut_webm_is_partial_by_its_declared_duration(tmp_path):
  path = str(tmp_path / 'clip.webm')
  video_io.write_video(path, noise(30), fps=10)  # Matroska declares a duration (3 s), not a frame count.
  _, info = video_io.decode_video_info(truncate(path, str(tmp_path / 'cut.webm'), 0.6))
  assert info.partial and info.declared_frames == 30 and info.decoded_frames < 25


def test_stopping_at_max_frames_is_not_partial(tmp_path):
  path = write_tagged(str(tmp_path / 'clip.mp4'), noise(20))
  frames, info = video_io.decode_video_info(path, max_frames=5)
  assert len(frames) == 5 and not info.complete and not info.partial
  assert not video_io.VideoInfo(declared_frames=100, decoded_frames=99, complete=True).partial  # One frame: slack.
  assert video_io.VideoInfo(declared_frames=None, decoded_frames=9, damage='x', complete=True).partial
