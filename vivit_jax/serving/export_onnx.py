"""Exporting a checkpoint as an ONNX model (jax2onnx) and checking it with ONNX Runtime.

  predictor = predict.load_for_inference('runs/k400')
  difference = write_onnx(predictor, 'export/k400.onnx')   # converts, checks, and only then writes the file

The model has the SavedModel's contract (`serving/export.py`): input `clips`, uint8 [batch, T, crop, crop, 3]
(RGB 0..255, already sampled, resized and cropped as the preprocessing spec says); output `probabilities`,
float32 [batch, C], after the normalisation and the task's activation (softmax; per-head softmax or sigmoid),
all inside the graph. The batch dimension is dynamic ('batch') unless a fixed `batch_size` is given. The
metadata property `vivit_export` holds, as JSON, what the SavedModel's `assets/vivit_export.json` holds (label
names, preprocessing, task, input and output) plus the format, opset and converter (`read_onnx_info`).

Decisions:
- jax2onnx converts the JAX serving function itself. tf2onnx from our SavedModel is not an option: with this
  JAX, jax2tf always serialises natively, and tf2onnx cannot read the resulting XlaCallModule op.
- jax2onnx has no 3D convolution, so while converting, the tubelet embedding (a convolution whose stride is its
  window) runs as what it computes: the clip cut into tubelets, flattened, times the flattened kernel. The check
  below compares the result with the model's own convolution.
- The graph computes in float32 with XLA attention: the params are float32, and ONNX Runtime's CPU kernels
  refuse bfloat16 (Einsum), so a `bfloat16` config is exported in float32 and checked against the JAX model
  run in float32. Rematerialisation, a training-time memory saving, is turned off.
- Params above 1.875 GiB (ViViT-H) go to `OUTPUT.data` beside the file: a protobuf holds at most 2 GiB. ViViT-L
  (355M params) is one 1.3 GiB file.
- `write_onnx` writes into a temporary folder beside `path` and moves the files into place only when ONNX
  Runtime (CPUExecutionProvider) agrees with the JAX model within `TOLERANCE` on random clips; a model that
  fails the check is removed and never replaces an earlier export.

jax2onnx, onnx and onnxruntime are the optional extra `vivit_jax[onnx]`; without them `require_onnx` raises
`OnnxUnavailable` saying how to install them.
"""

import contextlib
import importlib
import importlib.metadata
import json
import logging
import os
import pathlib
import shutil
import tempfile
import warnings
from typing import Any, Callable, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.models.embedding import TokenEmbedding, uniform_frame_indices
from vivit_jax.serving.export import TOLERANCE, ExportError, compare_with_jax, export_info, normalize_fn
from vivit_jax.serving.predict import Predictor

OPSET = 20  # Gelu, which jax2onnx writes, is an opset 20 op (ONNX Runtime 1.17 and later).
METADATA_KEY = 'vivit_export'
INPUT, OUTPUT = 'clips', 'probabilities'
BATCH = 'batch'  # The name of the dynamic batch dimension.
EXTERNAL_DATA_BYTES = 2**31 - 2**27  # Params above this go to OUTPUT.data: a protobuf holds at most 2 GiB.
REQUIRED = ('jax2onnx', 'onnx', 'onnxruntime')
INSTALL = "pip install 'vivit_jax[onnx]'"
_CONVERTER_LOGGERS = ('jax2onnx', 'onnx_ir')  # Plugin-import and serialisation warnings of no use to a user.


class OnnxUnavailable(ExportError):
  """The ONNX extra (jax2onnx, onnx, onnxruntime) is not installed."""


def require_onnx() -> Dict[str, Any]:
  """{name: module} of jax2onnx, onnx and onnxruntime; raises OnnxUnavailable naming the missing ones."""
  modules, missing = {}, []
  for name in REQUIRED:
    try:
      modules[name] = importlib.import_module(name)
    except ImportError:
      missing.append(name)
  if missing:
    raise OnnxUnavailable(f'--format=onnx needs {", ".join(REQUIRED)}; not installed: {", ".join(missing)}. '
                          f'Install them with: {INSTALL}')
  return modules


@contextlib.contextmanager
def _quiet_converter(quiet: bool):
  """Raises the converter's loggers to ERROR and hides its deprecation warnings while it runs (when `quiet`)."""
  loggers = [logging.getLogger(name) for name in _CONVERTER_LOGGERS] if quiet else []
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.ERROR)
  try:
    with warnings.catch_warnings():
      if quiet:
        warnings.simplefilter('ignore', DeprecationWarning)
      yield
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)


def _load_plugins() -> None:
  """Registers jax2onnx's plugins for JAX primitives and flax.linen only. By default its first conversion imports
  every plugin, examples included, and those build and compile dozens of example models (15 s on 2 cores).
  Uses jax2onnx's private loader where it has one (0.13 to 0.17); elsewhere jax2onnx loads its plugins as usual."""
  plugins = importlib.import_module('jax2onnx.plugins.plugin_system')
  load = getattr(plugins, '_import_tree', None)
  if load is None or getattr(plugins, '_already_imported_plugins', True):
    return
  root = pathlib.Path(plugins.__file__).parent
  for tree in ('jax', 'flax/linen'):
    load(root / tree, 'jax2onnx.plugins.' + tree.replace('/', '.'))
  plugins._already_imported_plugins = True  # pylint: disable=protected-access


def _tubelets_times_kernel(module: TokenEmbedding, video: jax.Array) -> jax.Array:
  """TokenEmbedding's output without a convolution: [B, T, H, W, C] -> [B, T', H', W', d]."""
  kernel, bias = module.get_variable('params', 'kernel'), module.get_variable('params', 'bias')
  if module.method == 'temporal_sampling':
    video, kernel = video[:, uniform_frame_indices(video.shape[1], module.n_sampled_frames)], kernel[None]
  ft, fh, fw, channels, width = kernel.shape
  _, t, h, w, _ = video.shape
  grid = (t // ft, h // fh, w // fw)
  x = video[:, :grid[0] * ft, :grid[1] * fh, :grid[2] * fw].astype(module.dtype)
  x = x.reshape(-1, grid[0], ft, grid[1], fh, grid[2], fw, channels).transpose(0, 1, 3, 5, 2, 4, 6, 7)
  x = x.reshape(-1, *grid, ft * fh * fw * channels) @ kernel.reshape(-1, width).astype(module.dtype)
  return x + bias.astype(module.dtype)


def _embed_without_conv(next_fun, args, kwargs, context):
  """flax method interceptor: TokenEmbedding.__call__ by `_tubelets_times_kernel`, everything else as is."""
  if isinstance(context.module, TokenEmbedding) and context.method_name == '__call__':
    return _tubelets_times_kernel(context.module, *args, **kwargs)
  return next_fun(*args, **kwargs)


def export_model(predictor: Predictor) -> nn.Module:
  """The predictor's model as exported: float32 computation, XLA attention, no rematerialisation."""
  return predictor.model.clone(dtype=jnp.float32, attention_implementation='xla', remat=False)


def onnx_serving_fn(predictor: Predictor) -> Callable[[jax.Array], jax.Array]:
  """uint8 clips [B, T, crop, crop, 3] -> float32 probabilities [B, C], with the params as constants and the
  tubelet embedding written without a convolution (the function jax2onnx converts)."""
  normalize, model, activation = normalize_fn(predictor.spec), export_model(predictor), predictor.activation
  params = jax.tree_util.tree_map(np.asarray, jax.device_get(predictor.params))

  def serve(clips: jax.Array) -> jax.Array:
    with nn.intercept_methods(_embed_without_conv):
      logits = model.apply({'params': params}, normalize(clips), train=False)
    return activation(logits.astype(jnp.float32))
  return serve


def onnx_info(predictor: Predictor, batch_size: Optional[int], opset: int, converter: str) -> Dict[str, Any]:
  """What the `vivit_export` metadata property holds: the SavedModel's export info, for ONNX."""
  info = export_info(predictor, batch_size)
  del info['signature']
  info['input']['name'], info['output']['name'] = INPUT, OUTPUT
  info.update({'format': 'onnx', 'opset': opset, 'converter': converter, 'compute_dtype': 'float32'})
  return info


def _version(name: str) -> str:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return 'unknown'


def convert_to_onnx(predictor: Predictor, batch_size: Optional[int] = None, opset: int = OPSET,
                    quiet: bool = True) -> Any:
  """The predictor's serving function as an `onnx.ModelProto` with its `vivit_export` metadata.

  Args:
    predictor: the loaded model (`predict.load_for_inference`).
    batch_size: a fixed batch size, or None for a dynamic batch dimension.
    opset: the ONNX opset to target (default `OPSET`).
    quiet: keep the converter's warnings (plugins it cannot load, untyped shape values) off the console.

  Raises:
    OnnxUnavailable: the `onnx` extra is not installed. ExportError: a bad batch size, or the conversion failed.
  """
  libs = require_onnx()
  if batch_size is not None and batch_size < 1:
    raise ExportError(f'batch_size must be positive or None (dynamic), not {batch_size}')
  shape = (BATCH if batch_size is None else batch_size, *predictor.clip_shape)
  try:
    with _quiet_converter(quiet):
      _load_plugins()
      proto = libs['jax2onnx'].to_onnx(onnx_serving_fn(predictor), [jax.ShapeDtypeStruct(shape, jnp.uint8)],
                                       model_name='vivit', opset=opset, input_names=[INPUT],
                                       output_names=[OUTPUT])
  except Exception as e:  # pylint: disable=broad-except  (the converter's failures have many types)
    raise ExportError(f'jax2onnx could not convert the {predictor.config.model.attention_config.type} model '
                      f'(opset {opset}): {type(e).__name__}: {e}') from e
  converter = f'jax2onnx {_version("jax2onnx")}'
  info = onnx_info(predictor, batch_size, opset, converter)
  libs['onnx'].helper.set_model_props(proto, {METADATA_KEY: json.dumps(info)})
  proto.doc_string = (f'ViViT ({predictor.task.model_name}): uint8 clips {info["input"]["shape"]} -> '
                      f'probabilities {info["output"]["shape"]}; metadata {METADATA_KEY!r} holds labels and '
                      'preprocessing (JSON)')
  return proto


def save_onnx(proto: Any, path: str, external: bool) -> None:
  """Writes `proto` to `path`; with `external`, its tensors go to `path`.data beside it (one file)."""
  onnx = require_onnx()['onnx']
  onnx.save_model(proto, path, save_as_external_data=external, all_tensors_to_one_file=True,
                  location=os.path.basename(path) + '.data', size_threshold=1024)


def read_onnx_info(path: str) -> Dict[str, Any]:
  """The label names, preprocessing and input/output description saved in an exported model's metadata."""
  onnx = require_onnx()['onnx']
  props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
  if METADATA_KEY not in props:
    raise ExportError(f'{path}: no {METADATA_KEY!r} metadata property; found {sorted(props) or "none"}')
  return json.loads(props[METADATA_KEY])


def reference_probabilities(predictor: Predictor, clips: np.ndarray) -> np.ndarray:
  """float32 [B, C]: the JAX model (as exported: float32, XLA attention) on uint8 clips, normalised by the
  evaluation pipeline's `augment.normalize`, so that the check covers the normalisation inside the graph."""
  model = export_model(predictor)
  logits = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))(predictor.params,
                                                                           predictor.normalize(clips))
  return np.asarray(predictor.activation(jnp.asarray(logits, jnp.float32)), np.float32)


def run_onnx(path: str, clips: np.ndarray) -> np.ndarray:
  """The exported model's probabilities for uint8 clips, from ONNX Runtime on the CPU."""
  ort = require_onnx()['onnxruntime']
  options = ort.SessionOptions()
  options.log_severity_level = 3  # Errors only: no notes about initializers it folded.
  try:
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    return session.run([OUTPUT], {INPUT: clips})[0]
  except Exception as e:  # pylint: disable=broad-except  (ONNX Runtime raises its own exception types)
    raise ExportError(f'{path}: ONNX Runtime {_version("onnxruntime")} cannot run it: {type(e).__name__}: '
                      f'{str(e).strip().splitlines()[0] if str(e).strip() else ""}') from e


def verify_onnx(path: str, predictor: Predictor, batch_size: int = 2, seed: int = 0,
                tolerance: float = TOLERANCE) -> float:
  """Runs the ONNX model (ONNX Runtime, CPU) and the JAX model on random uint8 clips; returns the max
  |difference| of the probabilities.

  Raises:
    ExportError: the difference exceeds `tolerance`, the outputs' shapes differ, or ONNX Runtime fails.
  """
  clips = np.random.default_rng(seed).integers(0, 256, (batch_size, *predictor.clip_shape), dtype=np.uint8)
  exported = run_onnx(path, clips)
  expected = reference_probabilities(predictor, clips)
  return compare_with_jax(exported, expected, path, 'the ONNX model', tolerance)


def write_onnx(predictor: Predictor, path: str, batch_size: Optional[int] = None, opset: int = OPSET,
               tolerance: float = TOLERANCE, quiet: bool = True) -> float:
  """Converts, checks with `verify_onnx` (on `batch_size` clips, 2 when dynamic) and only then writes `path`
  (and `path`.data for params above `EXTERNAL_DATA_BYTES`); returns the max |ONNX Runtime - JAX| probability
  difference.

  Raises:
    OnnxUnavailable, ExportError: as `convert_to_onnx` and `verify_onnx`; `path` is then left as it was.
  """
  proto = convert_to_onnx(predictor, batch_size, opset, quiet)
  external = sum(x.nbytes for x in jax.tree_util.tree_leaves(predictor.params)) > EXTERNAL_DATA_BYTES
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  staging = tempfile.mkdtemp(prefix='.vivit_onnx_', dir=directory)
  try:
    staged = os.path.join(staging, os.path.basename(path))
    save_onnx(proto, staged, external)
    del proto
    try:
      difference = verify_onnx(staged, predictor, batch_size or 2, tolerance=tolerance)
    except ExportError as e:
      raise ExportError(f'{str(e).replace(staged, path)}; {path} was not written') from e
    sidecar = os.path.abspath(path) + '.data'
    if not external and os.path.isfile(sidecar):
      os.remove(sidecar)  # An earlier export's params: this model holds its own.
    for name in sorted(os.listdir(staging), key=lambda n: n.endswith('.data'), reverse=True):
      os.replace(os.path.join(staging, name), os.path.join(directory, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return difference
