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
- Frames stream past (`video_io.stream_video`) and only those the views need are kept, so memory is bounded by
  the views, not by the video's length: a clip's views run through the model as soon as its last frame arrives,
  and its frames are dropped when no later clip needs them (at most the views' distinct frames; in window
  mode, those of the clips that overlap). Which frames the views need depends on the number of frames, so the
  count the container declares is used; when it declares none, or the decode finds another count (a truncated
  file), the file is decoded a second time knowing the count. Results equal those of decoding every frame first.
- Views are averaged as logits (the paper's multi-view aggregation), then turned into the task's probabilities:
  softmax, per-head softmax (multi-head tasks; top-k then ranks the classes of all heads together) or sigmoid
  (multi-label tasks, independent per class).
- The forward pass runs on one device, jitted once per batch shape: views are cut into batches of
  `batch_size` (default: one video's views) and the last batch is padded, so every batch has the same shape.
- Window mode splits the video into consecutive windows of `window` seconds (the last may be shorter) and
  classifies each from one clip centred in its window (shifted to stay inside the video when the clip is longer
  than the window) x the spatial crops.
- Many files (`predict_file`, `PredictionWriter`): a file that fails is reported with its reason and the others
  go on; results are written as JSON Lines, one line per file flushed as it finishes.
"""

import dataclasses
import json
import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf

from vivit_jax import sharding, tasks
from vivit_jax.checkpoints.restore import Restored, restore_for_use
from vivit_jax.data import Views
from vivit_jax.data.ingest import video_files, video_io
from vivit_jax.data.transforms import augment, sampling
from vivit_jax.serving.frame_plan import FramePlan, Group, ViewBatches, iter_windows

DEFAULT_FPS = 10.0  # Frame rate of prepare_data and DMVR's generator.
MAX_BATCH_SIZE = 32  # Default cap on views per forward pass.

TopK = List[Tuple[str, float]]
Frames = Union[np.ndarray, Mapping[int, np.ndarray]]


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
  return Predictor.from_restored(restored, batch_size)


def request_problem(top_k: int, window: Optional[float], fps: float) -> Optional[str]:
  """What is wrong with a prediction request ('top_k must be ...'), or None."""
  if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
    return f'top_k must be an integer of at least 1; got {top_k!r}'
  if window is not None and not (math.isfinite(window) and window > 0):
    return f'window must be a positive number of seconds; got {window!r}'
  if not (math.isfinite(fps) and 0 < fps <= video_io.MAX_FPS):
    return f'fps must be a frame rate in (0, {video_io.MAX_FPS:g}]; got {fps!r}'
  return None


@dataclasses.dataclass
class Prediction:
  """A video's prediction, and how its frames were read."""
  result: Any  # TopK; with a window, [{'start_s', 'end_s', 'top_k'}, ...].
  frames: int  # Frames decoded at the requested rate.
  info: video_io.VideoInfo  # Declared and decoded frame counts at the native rate; `info.partial`.
  passes: int = 1  # Decodes: 2 when the container declared no frame count, or a wrong one.
  peak_frames: int = 0  # The most decoded frames held at once.


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
    if self.batch_size < 1:
      raise InferenceError(f'batch_size must be at least 1; got {self.batch_size}')
    self.task = tasks.Task.from_config(config)
    self.activation = self.task.probabilities
    low, high = self.spec['value_range']
    if self.spec.get('mean_rgb') is None and [low, high] not in ([-1.0, 1.0], [0.0, 1.0]):
      raise InferenceError(f"value_range {self.spec['value_range']} is neither [-1, 1] nor [0, 1]")
    self._forward = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))

  @classmethod
  def from_restored(cls, restored: Restored, batch_size: Optional[int] = None) -> 'Predictor':
    """A predictor (or subclass) of a restored checkpoint; classes without names are called 'class_{i}'."""
    names = restored.label_names or [f'class_{i}' for i in range(restored.task.num_classes)]
    return cls(model=restored.model, params=restored.params, config=restored.config, spec=restored.preprocessing,
               label_names=names, batch_size=batch_size)

  @property
  def clip_shape(self) -> Tuple[int, int, int, int]:
    """[T, crop, crop, 3] of one model input."""
    crop = self.spec['crop_size']
    return (self.spec['num_frames'], crop, crop, 3)

  def normalize(self, frames: Any) -> np.ndarray:
    """uint8 (0..255) frames -> the model's float32 input, as the evaluation pipeline normalises."""
    return augment.normalize(frames, zero_centering=self.spec['value_range'][0] < 0,
                             mean_rgb=self.spec.get('mean_rgb'), std_rgb=self.spec.get('std_rgb')).numpy()

  def views(self, frames: Frames, indices: np.ndarray) -> np.ndarray:
    """float32 [K * crops, T, crop, crop, 3]: each row of `indices` [K, T] x the spatial crops, normalised.

    `frames` is uint8 [N, H, W, 3], or a mapping from frame index to [H, W, 3] holding at least `indices`."""
    clips = []
    for row in np.asarray(indices):
      clip = np.stack([frames[int(i)] for i in row])
      crops = augment.eval_preprocess(tf.constant(clip), min_resize=self.spec['min_resize'],
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

  def summarize(self, outputs: np.ndarray, top_k: int) -> Any:
    """A clip group's result from the model outputs of its views [V, C]: the top-k of their mean's
    probabilities. (A subclass whose model outputs something else, e.g. features, summarises it otherwise.)"""
    return self.top_k(self.probabilities(outputs), top_k)

  def top_k(self, probabilities: np.ndarray, k: int) -> TopK:
    """The k most probable (label, probability), most probable first (ties: lower class index first)."""
    order = np.argsort(-probabilities, kind='stable')[:max(1, k)]
    return [(self.label_names[i], float(probabilities[i])) for i in order]

  def groups(self, count: int, fps: float, window: Optional[float]) -> Iterable[Group]:
    """The clip groups of a video of `count` frames: the multi-view test's views, or one clip per window."""
    num_frames, stride, mode = self.spec['num_frames'], self.spec['stride'], self.short_video_mode
    if window is None:
      indices = sampling.multi_view_indices(count, num_frames, stride, self.num_test_clips, mode=mode)
      return [(None, np.asarray(indices, np.int32))]
    return (((start, end), indices[None]) for start, end, indices in
            iter_windows(count, fps, window, num_frames, stride, mode))

  def _feed(self, frames: Iterable[Tuple[int, Optional[np.ndarray]]], plan: FramePlan, top_k: int,
            window: Optional[float]) -> Tuple[int, Optional[Any]]:
    """Runs each group as its last frame arrives: (frames seen, result); result None when the plan's count
    proved not to be the number of frames."""
    keys: Dict[int, Any] = {}
    results: Dict[int, Any] = {}

    def finish(number: int, logits: np.ndarray) -> None:
      top, key = self.summarize(logits, top_k), keys.pop(number)
      results[number] = top if key is None else {'start_s': key[0], 'end_s': key[1], 'top_k': top}

    batches, seen = ViewBatches(self.logits, self.batch_size, finish), 0
    for index, frame in frames:
      seen = index + 1
      if plan.count is not None and seen > plan.count:
        plan.abandon()  # The count was wrong: go on counting, keeping nothing.
      for number in plan.add(index, frame):
        keys[number], indices = plan.active[number]
        batches.add(number, self.views(plan.frames, indices))
        plan.release(number)
    if seen != plan.count:
      return seen, None
    batches.run()
    if plan.active or len(results) != plan.registered:
      raise RuntimeError(f'{len(plan.active)} clip groups of a {seen}-frame video were never run')
    ordered = [results[n] for n in range(plan.registered)]
    return seen, ordered[0] if window is None else ordered

  def predict_frames(self, frames: np.ndarray, top_k: int = 5, window: Optional[float] = None,
                     fps: float = DEFAULT_FPS) -> Any:
    """`predict_video` of decoded uint8 frames [N, H, W, 3] at `fps`."""
    problem = request_problem(top_k, window, fps)
    if problem or not len(frames):
      raise ValueError(problem or 'no frames to predict from')
    plan = FramePlan(lambda count: self.groups(count, fps, window), len(frames))(None)
    stream = ((i, frames[i] if i in plan else None) for i in range(len(frames)))
    return self._feed(stream, plan, top_k, window)[1]

  def predict_stream(self, path: str, top_k: int = 5, window: Optional[float] = None,
                     fps: float = DEFAULT_FPS) -> Prediction:
    """`predict_video` with how the frames were read; see the module docstring for the decoding passes."""
    problem = request_problem(top_k, window, fps)
    if problem:
      raise ValueError(problem)

    def decode(count: Optional[int]) -> Tuple[int, Optional[Any], FramePlan, video_io.VideoInfo]:
      plan, info = FramePlan(lambda n: self.groups(n, fps, window), count), video_io.VideoInfo()
      stream = video_io.stream_video(path, plan, fps=fps, short_side=self.spec['min_resize'], info=info)
      return (*self._feed(stream, plan, top_k, window), plan, info)

    seen, result, plan, info = decode(None)
    if result is not None:
      return Prediction(result, seen, info, passes=1, peak_frames=plan.peak)
    # The container declared no frame count, or a wrong one: decode again, knowing it.
    again, result, second, info = decode(seen)
    if result is None:
      raise video_io.VideoDecodeError(path, f'decoded {seen} frames, then {again}: the decoder is not deterministic')
    return Prediction(result, seen, info, passes=2, peak_frames=max(plan.peak, second.peak))

  def predict_video(self, path: str, top_k: int = 5, window: Optional[float] = None,
                    fps: float = DEFAULT_FPS) -> Any:
    """Top-k (label, probability) of a video file, or per-window predictions with `window` seconds.

    Args:
      path: a video file FFmpeg reads.
      top_k: how many labels to return (at least 1).
      window: None: one prediction from `num_test_clips` x crops views; seconds: one per window.
      fps: the frame rate the training videos were prepared at (prepare_data's --fps, default 10).

    Returns:
      [(label, probability), ...] most probable first; with `window`, [{'start_s', 'end_s', 'top_k'}, ...].

    Raises:
      video_io.VideoDecodeError: the file yields no frame (its `reason` says why).
      ValueError: top_k, window or fps out of range.
    """
    return self.predict_stream(path, top_k, window, fps).result


# --- Many files ----------------------------------------------------------------------------------------------


def expand_inputs(paths: Iterable[str]) -> List[str]:
  """Files as given; directories walked (sorted) for files with a `video_files.VIDEO_EXTENSIONS` extension; each path once."""
  out, seen = [], set()
  for path in paths:
    found = [path]
    if os.path.isdir(path):
      found = []
      for root, dirs, files in os.walk(path):
        dirs.sort()
        found.extend(os.path.join(root, f) for f in sorted(files) if f.lower().endswith(video_files.VIDEO_EXTENSIONS))
    for file in found:
      if os.path.normpath(file) not in seen:
        seen.add(os.path.normpath(file))
        out.append(file)
  return out


def _jsonable_top_k(top: TopK) -> List[Dict[str, Any]]:
  return [{'label': label, 'probability': p} for label, p in top]


def predict_file(predictor: Predictor, path: str, top_k: int = 5, window: Optional[float] = None,
                 fps: float = DEFAULT_FPS) -> Dict[str, Any]:
  """One file's JSON-ready result; a failure is a result too, so that the other files go on.

  Returns:
    {'top_k': [{'label', 'probability'}, ...], 'frames': N} or, with `window`, {'windows': [{'start_s', 'end_s',
    'top_k'}, ...], 'frames': N}, N the frames decoded at `fps`; with a 'warning' when the file decodes to
    clearly fewer frames than its container declares (truncated or damaged: predicted from the frames there
    are). {'error': reason} when the file cannot be predicted (missing, empty, not a video, undecodable, or any
    other failure while predicting it, named by its exception type).

  Raises:
    ValueError: top_k, window or fps out of range (a request no file can satisfy).
  """
  problem = request_problem(top_k, window, fps)
  if problem:
    raise ValueError(problem)
  try:
    prediction = predictor.predict_stream(path, top_k=top_k, window=window, fps=fps)
  except video_io.VideoDecodeError as e:
    return {'error': e.reason}
  except Exception as e:  # pylint: disable=broad-except  (one file must not stop the others)
    return {'error': f'{type(e).__name__}: {e}'}
  if window is None:
    out = {'top_k': _jsonable_top_k(prediction.result)}
  else:
    out = {'windows': [{**w, 'top_k': _jsonable_top_k(w['top_k'])} for w in prediction.result]}
  out['frames'] = prediction.frames
  if prediction.info.partial:
    out['warning'] = f'partial: {prediction.info.describe()}; predicted from the frames decoded'
  return out


class PredictionWriter:
  """JSON Lines: one line `{"file": path, <predict_file's result>}` per file, flushed as it is written, so that
  a run that dies keeps every file it finished. `load_predictions` reads it back."""

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._file = open(path, 'w', encoding='utf-8')  # pylint: disable=consider-using-with

  def write(self, file: str, result: Dict[str, Any]) -> None:
    self._file.write(json.dumps({'file': file, **result}) + '\n')
    self._file.flush()

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> 'PredictionWriter':
    return self

  def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
    try:
      self.close()
    except OSError:
      if exc_type is None:  # Else the error already raised says what went wrong; closing fails for the same reason.
        raise


def load_predictions(path: str) -> Dict[str, Dict[str, Any]]:
  """{file: result} of a `PredictionWriter` file, or of the single JSON object {file: result} that vivit-predict
  wrote before. A last line cut off mid-write (a run killed while writing it) is skipped.

  Raises:
    ValueError: a line that is not a JSON object with a 'file', naming the file and line.
  """
  with open(path, encoding='utf-8') as f:
    text = f.read()
  try:
    whole = json.loads(text)
  except json.JSONDecodeError:
    whole = None
  if isinstance(whole, dict) and not isinstance(whole.get('file'), str):
    return whole  # The former format: one JSON object.
  out, lines = {}, text.split('\n')
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      entry = json.loads(line)
    except json.JSONDecodeError as e:
      if number == len(lines):  # No newline after it: cut off while being written.
        break
      raise ValueError(f'{path} line {number}: expected a JSON object per line; found {line[:60]!r} ({e})') from e
    if not isinstance(entry, dict) or not isinstance(entry.get('file'), str):
      raise ValueError(f'{path} line {number}: expected a JSON object with a "file"; found {line[:60]!r}')
    out[entry.pop('file')] = entry
  return out
