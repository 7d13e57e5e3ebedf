"""Classifying video files with a trained checkpoint: `load_for_inference(...)`, then `predict_video(path)`.

  predictor = load_for_inference('runs/k400')        # a workdir, one step, or a foreign file + config_path
  predictor.predict_video('cat.mp4', top_k=5)        # [('playing with cat', 0.91), ...]
  predictor.predict_video('long.mp4', window=4.0)    # [{'start_s': 0.0, 'end_s': 4.0, 'top_k': [...]}, ...]

The checkpoint is restored for use by `checkpoints.restore` (config, params, preprocessing spec and label names;
see there where each comes from); classes without names are called 'class_{i}'. Views are
`dataset_configs.num_test_clips` temporal views x 1 or 3 spatial crops (`do_three_spatial_crops`), and
`short_video_mode` for videos shorter than a clip, exactly as the multi-view evaluation samples them.

Decisions:
- A video is decoded with PyAV at `fps` frames per second, the rate its training data was prepared at
  (prepare_data and DMVR default to 10), with the short side resized to `min_resize` (area interpolation, as
  prepare_data does for its `short_side`), so temporal strides and spatial scale mean what they meant in
  training. Clips and crops then go through `sampling.multi_view_indices`, `augment.eval_preprocess` and
  `augment.normalize`, the functions the evaluation pipeline uses; only the JPEG round trip of prepared data is
  missing.
- Views are averaged as logits (the paper's multi-view aggregation), then turned into the task's probabilities:
  softmax, per-head softmax (multi-head tasks; top-k then ranks the classes of all heads together) or sigmoid
  (multi-label tasks, independent per class).
- The forward pass runs on one device, jitted once per batch shape: views are cut into batches of
  `batch_size` (default: one video's views) and the last batch is padded, so every batch has the same shape.
- Window mode splits the video into consecutive windows of `window` seconds (the last may be shorter) and
  classifies each from one clip centred in its window (shifted to stay inside the video when the clip is longer
  than the window) x the spatial crops.
"""

import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf

from vivit_jax import sharding, tasks
from vivit_jax.checkpoints.restore import restore_for_use
from vivit_jax.data import Views
from vivit_jax.data.ingest import video_io
from vivit_jax.data.transforms import augment, sampling

DEFAULT_FPS = 10.0  # Frame rate of prepare_data and DMVR's generator.
VIDEO_EXTENSIONS = ('.mp4', '.webm', '.avi', '.mkv', '.mov')
MAX_BATCH_SIZE = 32  # Default cap on views per forward pass.

TopK = List[Tuple[str, float]]


class InferenceError(ValueError):
  """A preprocessing spec that cannot be used for inference."""


def load_for_inference(checkpoint: str, config_path: Optional[str] = None, overrides: Sequence[str] = (),
                       label_map: Optional[str] = None, batch_size: Optional[int] = None) -> 'Predictor':
  """Loads any checkpoint `checkpoints.load_params` reads, with its model, preprocessing and label names.

  Args:
    checkpoint: our workdir or step directory, a Scenic msgpack file or directory, a ViT .npz, an HF directory.
    config_path: the model config file (`file.py[:preset]`); required when the checkpoint saves no config.
    overrides: 'KEY=VALUE' config overrides (e.g. 'dataset_configs.num_test_clips=1').
    label_map: a JSON label map; default: the names saved with the checkpoint.
    batch_size: views per forward pass; default: one video's views (at most `MAX_BATCH_SIZE`).

  Returns:
    A Predictor with the params on the default device.

  Raises:
    CheckpointError, ConfigError, DataError, InferenceError: saying which file or key is wrong.
  """
  restored = restore_for_use(checkpoint, config_path, overrides, label_map=label_map,
                             mesh=sharding.single_device_mesh())
  names = restored.label_names or [f'class_{i}' for i in range(restored.task.num_classes)]
  return Predictor(model=restored.model, params=restored.params, config=restored.config,
                   spec=restored.preprocessing, label_names=names, batch_size=batch_size)


# --- Prediction ----------------------------------------------------------------------------------------------


def window_indices(num_available: int, fps: float, window_s: float, num_frames: int, stride: int,
                   mode: str) -> List[Tuple[float, float, np.ndarray]]:
  """(start_s, end_s, int32 [num_frames] frame indices) of each window, its clip centred in it."""
  if window_s <= 0:
    raise ValueError(f'window must be positive seconds, not {window_s}')
  length = max(1, int(round(window_s * fps)))
  span = (num_frames - 1) * stride + 1
  out = []
  for first in range(0, num_available, length):
    last = min(first + length, num_available)
    if num_available < span:  # Every clip covers the whole video: wrap or pad as the evaluation does.
      indices = np.asarray(sampling.center_indices(num_available, num_frames, stride, mode=mode))
    else:
      start = min(max(first + (last - first - span) // 2, 0), num_available - span)
      indices = start + stride * np.arange(num_frames, dtype=np.int32)
    out.append((first / fps, last / fps, indices.astype(np.int32)))
  return out


class Predictor:
  """A model with its params, preprocessing spec and label names; see the module docstring."""

  def __init__(self, *, model: Any, params: Any, config: ml_collections.ConfigDict, spec: Dict[str, Any],
               label_names: Sequence[str], batch_size: Optional[int] = None):
    self.model, self.params, self.config, self.spec = model, params, config, dict(spec)
    self.label_names = list(label_names)
    views = Views.test_views(config)
    self.num_test_clips, self.num_crops = views.clips, views.crops
    self.short_video_mode = config.dataset_configs.short_video_mode
    self.batch_size = batch_size or min(views.count, MAX_BATCH_SIZE)
    self.task = tasks.Task.from_config(config)
    self.activation = self.task.probabilities
    low, high = self.spec['value_range']
    if self.spec.get('mean_rgb') is None and [low, high] not in ([-1.0, 1.0], [0.0, 1.0]):
      raise InferenceError(f"value_range {self.spec['value_range']} is neither [-1, 1] nor [0, 1]")
    self._forward = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))

  @property
  def clip_shape(self) -> Tuple[int, int, int, int]:
    """[T, crop, crop, 3] of one model input."""
    crop = self.spec['crop_size']
    return (self.spec['num_frames'], crop, crop, 3)

  def normalize(self, frames: Any) -> np.ndarray:
    """uint8 (0..255) frames -> the model's float32 input, as the evaluation pipeline normalises."""
    return augment.normalize(frames, zero_centering=self.spec['value_range'][0] < 0,
                             mean_rgb=self.spec.get('mean_rgb'), std_rgb=self.spec.get('std_rgb')).numpy()

  def decode(self, path: str, fps: float = DEFAULT_FPS) -> np.ndarray:
    """uint8 [N, H, W, 3] at `fps`, short side `min_resize`; raises video_io.VideoDecodeError."""
    return video_io.decode_video(path, fps=fps, short_side=self.spec['min_resize'])

  def views(self, frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """float32 [K * crops, T, crop, crop, 3]: each row of `indices` [K, T] x the spatial crops, normalised."""
    clips = []
    for row in np.asarray(indices):
      crops = augment.eval_preprocess(tf.constant(frames[row]), min_resize=self.spec['min_resize'],
                                      crop_size=self.spec['crop_size'], num_crops=self.num_crops)
      clips.append(crops if self.num_crops > 1 else crops[None])
    return self.normalize(tf.concat(clips, axis=0))

  def logits(self, inputs: np.ndarray) -> np.ndarray:
    """float32 [V, C] for model inputs [V, T, crop, crop, 3], `batch_size` views per (padded) forward pass."""
    out = []
    for start in range(0, len(inputs), self.batch_size):
      chunk = inputs[start:start + self.batch_size]
      padded = np.zeros((self.batch_size,) + chunk.shape[1:], np.float32)
      padded[:len(chunk)] = chunk
      out.append(np.asarray(self._forward(self.params, padded))[:len(chunk)])
    return np.concatenate(out).astype(np.float32)

  def probabilities(self, logits: np.ndarray) -> np.ndarray:
    """Mean of the views' logits [V, C] -> probabilities [C]."""
    return np.asarray(self.activation(jnp.asarray(logits.mean(axis=0))), np.float32)

  def top_k(self, probabilities: np.ndarray, k: int) -> TopK:
    """The k most probable (label, probability), most probable first (ties: lower class index first)."""
    order = np.argsort(-probabilities, kind='stable')[:max(1, k)]
    return [(self.label_names[i], float(probabilities[i])) for i in order]

  def predict_frames(self, frames: np.ndarray, top_k: int = 5) -> TopK:
    """Multi-view top-k of decoded uint8 frames [N, H, W, 3]."""
    indices = sampling.multi_view_indices(len(frames), self.spec['num_frames'], self.spec['stride'],
                                          self.num_test_clips, mode=self.short_video_mode)
    return self.top_k(self.probabilities(self.logits(self.views(frames, indices))), top_k)

  def predict_windows(self, frames: np.ndarray, fps: float, window: float,
                      top_k: int = 5) -> List[Dict[str, Any]]:
    """Per-window top-k: [{'start_s', 'end_s', 'top_k'}] along decoded frames at `fps`."""
    windows = window_indices(len(frames), fps, window, self.spec['num_frames'], self.spec['stride'],
                             self.short_video_mode)
    logits = self.logits(self.views(frames, np.stack([w[2] for w in windows])))
    per_window = logits.reshape(len(windows), self.num_crops, -1)
    return [{'start_s': start, 'end_s': end, 'top_k': self.top_k(self.probabilities(views), top_k)}
            for (start, end, _), views in zip(windows, per_window)]

  def predict_video(self, path: str, top_k: int = 5, window: Optional[float] = None,
                    fps: float = DEFAULT_FPS) -> Any:
    """Top-k (label, probability) of a video file, or per-window predictions with `window` seconds.

    Args:
      path: a video file FFmpeg reads.
      top_k: how many labels to return.
      window: None: one prediction from `num_test_clips` x crops views; seconds: one per window.
      fps: the frame rate the training videos were prepared at (prepare_data's --fps, default 10).

    Returns:
      [(label, probability), ...] most probable first; with `window`, [{'start_s', 'end_s', 'top_k'}, ...].

    Raises:
      video_io.VideoDecodeError: the file yields no frame (its `reason` says why).
    """
    frames = self.decode(path, fps)
    if window is None:
      return self.predict_frames(frames, top_k)
    return self.predict_windows(frames, fps, window, top_k)


# --- Many files ----------------------------------------------------------------------------------------------


def expand_inputs(paths: Iterable[str]) -> List[str]:
  """Files as given; directories walked (sorted) for files with a `VIDEO_EXTENSIONS` extension."""
  out = []
  for path in paths:
    if not os.path.isdir(path):
      out.append(path)
      continue
    for root, dirs, files in os.walk(path):
      dirs.sort()
      out.extend(os.path.join(root, f) for f in sorted(files) if f.lower().endswith(VIDEO_EXTENSIONS))
  return out


def _jsonable_top_k(top: TopK) -> List[Dict[str, Any]]:
  return [{'label': label, 'probability': p} for label, p in top]


def predict_file(predictor: Predictor, path: str, top_k: int = 5, window: Optional[float] = None,
                 fps: float = DEFAULT_FPS) -> Dict[str, Any]:
  """{'top_k': [{'label', 'probability'}]}, {'windows': [...]} or, for an unreadable file, {'error': reason}."""
  try:
    result = predictor.predict_video(path, top_k=top_k, window=window, fps=fps)
  except video_io.VideoDecodeError as e:
    return {'error': e.reason}
  if window is None:
    return {'top_k': _jsonable_top_k(result)}
  return {'windows': [{**w, 'top_k': _jsonable_top_k(w['top_k'])} for w in result]}
