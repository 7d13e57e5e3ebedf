"""Exporting a checkpoint as a TensorFlow SavedModel (jax2tf, native serialization) and checking it.

  predictor = predict.load_for_inference('runs/k400')
  export_saved_model(predictor, 'export/k400')            # batch dimension polymorphic
  verify_saved_model('export/k400', predictor)            # max |TF - JAX| of the probabilities; raises > 1e-4

The serving signature `serving_default` takes `clips`: uint8 [B, T, crop, crop, 3], RGB on 0..255, already
sampled and cropped as the checkpoint's preprocessing says (`num_frames` frames `stride` apart at the training
frame rate, short side resized to `min_resize`, a `crop_size` square crop; `predict.Predictor.views` does
this before normalising), and returns `{'probabilities': float32 [B, C]}`. Normalisation (the value range or
mean/std of the spec) runs inside the graph, then the model and its activation (softmax; per-head softmax or
sigmoid for multi-head and multi-label models). One clip gives one prediction: averaging over temporal views
and crops is the caller's.

The params are saved as (non-trainable) tf.Variables. `assets/vivit_export.json` holds the label names, the
preprocessing spec and the input and output description (`read_export_info`). The graph is StableHLO lowered
for `platforms` (default CPU and CUDA); a SavedModel loads only on a platform it was lowered for.
"""

import json
import os
import tempfile
from typing import Any, Callable, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from jax.experimental import jax2tf

from vivit_jax.serving.predict import Predictor

DEFAULT_PLATFORMS = ('cpu', 'cuda')
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')  # What jax2tf lowers for.
INFO_FILE = 'vivit_export.json'
SIGNATURE = 'serving_default'
TOLERANCE = 1e-4


class ExportError(RuntimeError):
  """An export that cannot be written, or whose SavedModel disagrees with the JAX model."""


def normalize_fn(spec: Dict[str, Any]) -> Callable[[jax.Array], jax.Array]:
  """uint8 clips -> float32 model input, the jnp twin of `augment.normalize` for the spec."""
  mean, std = spec.get('mean_rgb'), spec.get('std_rgb')
  if mean is not None:
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    return lambda x: (x.astype(jnp.float32) - mean) / std
  if spec['value_range'][0] < 0:
    return lambda x: x.astype(jnp.float32) * (2.0 / 255.0) - 1.0
  return lambda x: x.astype(jnp.float32) / 255.0


def serving_fn(predictor: Predictor) -> Callable[[Any, jax.Array], jax.Array]:
  """(params, uint8 clips [B, T, crop, crop, 3]) -> float32 probabilities [B, C], in JAX."""
  normalize, model, activation = normalize_fn(predictor.spec), predictor.model, predictor.activation

  def serve(params: Any, clips: jax.Array) -> jax.Array:
    logits = model.apply({'params': params}, normalize(clips), train=False)
    return activation(logits.astype(jnp.float32))
  return serve


def export_info(predictor: Predictor, batch_size: Optional[int]) -> Dict[str, Any]:
  """What `assets/vivit_export.json` holds."""
  return {'label_names': predictor.label_names, 'preprocessing': predictor.spec,
          'model_name': predictor.task.model_name, 'task': predictor.task.describe(),
          'signature': SIGNATURE,
          'input': {'name': 'clips', 'dtype': 'uint8', 'shape': [batch_size, *predictor.clip_shape],
                    'description': 'RGB 0..255 clips, already sampled, resized and cropped'},
          'output': {'name': 'probabilities', 'dtype': 'float32',
                     'shape': [batch_size, len(predictor.label_names)]}}


def _module(predictor: Predictor, batch_size: Optional[int], platforms: Sequence[str],
            info_path: str) -> tf.Module:
  """A tf.Module holding the params as variables, the converted function and the info asset."""
  host = jax.tree_util.tree_map(np.asarray, jax.device_get(predictor.params))
  variables = tf.nest.map_structure(lambda x: tf.Variable(x, trainable=False), host)
  batch = 'b' if batch_size is None else str(batch_size)
  converted = jax2tf.convert(serving_fn(predictor), with_gradient=False,
                             polymorphic_shapes=[None, f'({batch}, ...)'],
                             native_serialization_platforms=tuple(platforms))
  signature = tf.TensorSpec([batch_size, *predictor.clip_shape], tf.uint8, name='clips')

  def serve(clips: tf.Tensor) -> Dict[str, tf.Tensor]:
    return {'probabilities': converted(variables, clips)}

  module = tf.Module()
  module.params = variables
  module.serve = tf.function(serve, input_signature=[signature], autograph=False)
  module.export_info = tf.saved_model.Asset(info_path)
  return module


def export_saved_model(predictor: Predictor, output_dir: str, batch_size: Optional[int] = None,
                       platforms: Sequence[str] = DEFAULT_PLATFORMS) -> str:
  """Writes the SavedModel to `output_dir` (see the module docstring); returns `output_dir`.

  Args:
    predictor: the loaded model (`predict.load_for_inference`).
    output_dir: created if needed; an existing SavedModel there is overwritten.
    batch_size: a fixed batch size, or None for a polymorphic batch dimension.
    platforms: jax2tf lowering platforms ('cpu', 'cuda', 'rocm', 'tpu').
  """
  if batch_size is not None and batch_size < 1:
    raise ExportError(f'batch_size must be positive or None (polymorphic), not {batch_size}')
  with tempfile.TemporaryDirectory() as tmp:
    info_path = os.path.join(tmp, INFO_FILE)
    with open(info_path, 'w') as f:
      json.dump(export_info(predictor, batch_size), f, indent=2)
    module = _module(predictor, batch_size, platforms, info_path)
    try:
      tf.saved_model.save(module, output_dir, signatures={SIGNATURE: module.serve})
    except Exception as e:  # pylint: disable=broad-except  (jax2tf lowering errors have many types)
      raise ExportError(f'{output_dir}: jax2tf could not convert the model for {list(platforms)}: '
                        f'{type(e).__name__}: {e}') from e
  return output_dir


def read_export_info(output_dir: str) -> Dict[str, Any]:
  """The label names, preprocessing and signature description saved with an export."""
  with open(os.path.join(output_dir, 'assets', INFO_FILE)) as f:
    return json.load(f)


def verify_saved_model(output_dir: str, predictor: Predictor, batch_size: int = 2, seed: int = 0,
                       tolerance: float = TOLERANCE) -> float:
  """Runs the reloaded SavedModel and the JAX model on random uint8 clips; returns the max |difference|.

  The JAX side normalises with `augment.normalize` (the evaluation pipeline's), so the check also covers the
  normalisation inside the exported graph.

  Raises:
    ExportError: the difference exceeds `tolerance`, or the outputs' shapes differ.
  """
  clips = np.random.default_rng(seed).integers(0, 256, (batch_size, *predictor.clip_shape), dtype=np.uint8)
  loaded = tf.saved_model.load(output_dir)
  exported = loaded.signatures[SIGNATURE](clips=tf.constant(clips))['probabilities'].numpy()
  logits = predictor.logits(predictor.normalize(clips))
  expected = np.asarray(predictor.activation(jnp.asarray(logits)), np.float32)
  return compare_with_jax(exported, expected, output_dir, 'the SavedModel', tolerance)


def compare_with_jax(exported: np.ndarray, expected: np.ndarray, where: str, what: str, tolerance: float) -> float:
  """max |exported - expected| of the probabilities; raises ExportError naming `where` when the shapes differ or
  the difference exceeds `tolerance` (the one check of every export format)."""
  if exported.shape != expected.shape:
    raise ExportError(f'{where}: {what} returns {exported.shape}; the JAX model {expected.shape}')
  difference = float(np.max(np.abs(exported - expected)))
  if not difference <= tolerance:  # Also catches NaN.
    raise ExportError(f'{where}: {what} differs from the JAX model by {difference:.3g} '
                      f'(max |probability difference|; tolerance {tolerance:g})')
  return difference
