"""Benchmarks that print numbers (speed is checked here, never by timed tests).

`data_benchmark`: training clips per second of the tf.data pipeline over JPEG DMVR TFRecords, beside a plain
Python loop that decodes the same videos with PyAV and crops the same clips. Everything is made on the spot
(synthetic videos encoded as H.264 files, then prepared with `prepare_data`), so nothing is downloaded.
`record_kb_per_frame` (the records' size over their frames: the JPEGs and a few bytes of framing each) says how
these frames compare with real ones, whose decoding time grows with their size.
"""

import os
import time
from typing import Any, Dict, List, Tuple

import numpy as np

from vivit_jax.config import defaults as default_config
from vivit_jax.config import validate_config
from vivit_jax.data.ingest import prepare, video_io
from vivit_jax.data.synthetic import SyntheticMotion
from vivit_jax.data.video import DMVRPipeline


def make_videos(root: str, num_videos: int, frames: int, height: int, width: int) -> list:
  """`num_videos` H.264 files in a folder layout ({root}/train/{class}/{i}.mp4); returns their paths."""
  source = SyntheticMotion(num_classes=2, num_frames=frames, height=height, width=width, object_size=24)
  paths = []
  for i in range(num_videos):
    path = os.path.join(root, 'train', f'class_{i % 2}', f'{i:03d}.mp4')
    if not os.path.exists(path):
      os.makedirs(os.path.dirname(path), exist_ok=True)
      video_io.write_video(path, source.example('train', i)['video'], fps=25)
    paths.append(path)
  return paths


SHARDS = 4  # The records' table: f'train@{SHARDS}' in work_dir/dmvr.


def make_records(work_dir: str, num_videos: int = 16, video_frames: int = 80, height: int = 256, width: int = 340,
                 short_side: int = 256) -> Tuple[List[str], str, float]:
  """`make_videos` in work_dir/videos, prepared as JPEG DMVR records (table train@SHARDS, frames of
  `short_side` pixels) in work_dir/dmvr; (video paths, records directory, record KB per frame)."""
  videos_dir, records_dir = os.path.join(work_dir, 'videos'), os.path.join(work_dir, 'dmvr')
  paths = make_videos(videos_dir, num_videos, video_frames, height, width)
  report = prepare.prepare('folder', videos_dir, records_dir, output_format='dmvr', fps=0, short_side=short_side,
                           splits=['train'], shards=SHARDS, log=lambda *_: None)
  split = report['splits']['train']
  record_bytes = sum(os.path.getsize(os.path.join(records_dir, shard['name'])) for shard in split['shards'])
  return paths, records_dir, round(record_bytes / split['frames'] / 1000, 1)


def _benchmark_config(base_dir: str, num_shards: int, batch_size: int, num_frames: int, crop_size: int,
                      min_resize: int):
  c = default_config.get_config()
  c.dataset_name = 'video_tfrecord_dataset'
  d = c.dataset_configs
  d.base_dir, d.tables.train, d.num_classes = base_dir, f'train@{num_shards}', 2
  d.num_frames, d.stride, d.min_resize, d.crop_size = num_frames, 2, min_resize, crop_size
  d.augmentation_params.do_jitter_scale = False  # The loop below does what remains: random crop and flip.
  c.batch_size = batch_size
  c.num_training_steps = 1
  return validate_config(c)


def _time_pipeline(config, num_batches: int) -> float:
  batches = DMVRPipeline(config, 0, 1).train_batches(0)
  for _ in range(2):  # Warm-up: graph tracing and the first files.
    next(batches)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return num_batches * config.batch_size / (time.perf_counter() - start)


def _python_loop_clip(path: str, rng: np.random.Generator, num_frames: int, crop_size: int,
                      min_resize: int) -> np.ndarray:
  """The plain way: decode the whole video with PyAV, then index, crop, flip and scale with NumPy."""
  frames = video_io.decode_video(path, short_side=min_resize)
  span = (num_frames - 1) * 2 + 1
  start = int(rng.integers(0, max(1, len(frames) - span + 1)))
  clip = frames[np.arange(start, start + span, 2) % len(frames)]
  top = int(rng.integers(0, clip.shape[1] - crop_size + 1))
  left = int(rng.integers(0, clip.shape[2] - crop_size + 1))
  clip = clip[:, top:top + crop_size, left:left + crop_size]
  if rng.random() < 0.5:
    clip = clip[:, :, ::-1]
  return clip.astype(np.float32) * (2.0 / 255.0) - 1.0


def _time_python_loop(paths, num_clips: int, num_frames: int, crop_size: int, min_resize: int) -> float:
  rng = np.random.default_rng(0)
  _python_loop_clip(paths[0], rng, num_frames, crop_size, min_resize)  # Warm-up.
  start = time.perf_counter()
  for i in range(num_clips):
    _python_loop_clip(paths[i % len(paths)], rng, num_frames, crop_size, min_resize)
  return num_clips / (time.perf_counter() - start)


def data_benchmark(work_dir: str, num_videos: int = 16, video_frames: int = 80, height: int = 256,
                   width: int = 340, batch_size: int = 8, num_batches: int = 8, num_frames: int = 32,
                   crop_size: int = 224, min_resize: int = 256) -> Dict[str, Any]:
  """Train clips/s of the tf.data pipeline and of a plain PyAV loop on the same videos."""
  paths, records_dir, record_kb_per_frame = make_records(work_dir, num_videos, video_frames, height, width,
                                                         min_resize)
  config = _benchmark_config(records_dir, SHARDS, batch_size, num_frames, crop_size, min_resize)
  pipeline = _time_pipeline(config, num_batches)
  loop = _time_python_loop(paths, num_batches * batch_size, num_frames, crop_size, min_resize)
  return {'clip': f'{num_frames}x{crop_size}x{crop_size}', 'videos': num_videos,
          'video_size': f'{video_frames}x{height}x{width}', 'cpu_count': os.cpu_count(),
          'record_kb_per_frame': record_kb_per_frame,
          'tfdata_clips_per_s': round(pipeline, 2), 'pyav_loop_clips_per_s': round(loop, 2),
          'speedup': round(pipeline / loop, 2)}
