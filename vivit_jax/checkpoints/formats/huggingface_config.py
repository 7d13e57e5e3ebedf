"""Hugging Face config.json and preprocessor configs <-> vivit_jax configs, label names and preprocessing
specs (the numerics and value-range facts are in huggingface.py's docstring)."""

import math
import warnings
from typing import Any, Optional

import numpy as np

from vivit_jax import tasks
from vivit_jax.checkpoints.manager import CheckpointError

ARCHITECTURES = {'VivitForVideoClassification': 'vivit', 'VivitModel': 'vivit',
                 'ViTForImageClassification': 'vit', 'ViTModel': 'vit'}
TANH_GELUS = ('gelu_fast', 'gelu_new', 'gelu_pytorch_tanh')
FLAX_LAYER_NORM_EPS = 1e-6
_PROCESSOR_DEFAULTS = {  # transformers 5.23's VivitImageProcessor and ViTImageProcessor defaults.
    'vivit': dict(rescale_factor=1 / 127.5, offset=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                  size={'shortest_edge': 256}),
    'vit': dict(rescale_factor=1 / 255, offset=False, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                size={'height': 224, 'width': 224}),
}

# Integer fields of config.json: (lowest, highest) sane value. Beyond these no ViT has been trained, and a model
# built from them would not fit in memory.
INT_LIMITS = {'hidden_size': (1, 65536), 'num_hidden_layers': (1, 1024), 'num_attention_heads': (1, 1024),
              'intermediate_size': (1, 1 << 20), 'num_frames': (1, 4096), 'head_dim': (1, 65536),
              'num_labels': (1, 1_000_000)}
MAX_IMAGE_SIZE = 16384


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  """A finite JSON number (not a boolean)."""
  return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _int_problems(hf_config: dict) -> list[str]:
  """The integer fields out of `INT_LIMITS`, and a width that the heads do not divide."""
  problems = []
  for key, (low, high) in INT_LIMITS.items():
    value = hf_config.get(key)
    optional = value is None and key in ('head_dim', 'num_labels')  # transformers writes these as null.
    if key in hf_config and not optional and not (_is_int(value) and low <= value <= high):
      problems.append(f'{key} is {value!r}; expected an integer in [{low}, {high}]')
  if hf_config.get('num_channels', 3) != 3:
    problems.append(f"num_channels is {hf_config['num_channels']!r}; expected 3 (vivit_jax models take RGB)")
  d, heads = hf_config.get('hidden_size', 768), hf_config.get('num_attention_heads', 12)
  head_dim = hf_config.get('head_dim')
  if not problems and d % heads:
    problems.append(f'hidden_size {d} is not divisible by num_attention_heads {heads}')
  elif not problems and head_dim is not None and head_dim * heads != d:
    problems.append(f'head_dim {head_dim} x {heads} heads is not hidden_size {d}; vivit_jax needs d = h * dh')
  return problems


def _pair(value: Any, length: int) -> list[int] | None:
  """`value` as `length` positive ints (a single int repeated), or None when it is not that."""
  values = [value] * length if _is_int(value) else value
  if isinstance(values, list) and len(values) == length and all(_is_int(v) and v >= 1 for v in values):
    return values
  return None


def _size_problems(hf_config: dict) -> list[str]:
  """image_size, patch_size and tubelet_size: positive ints that fit inside the image and the clip."""
  image = _pair(hf_config.get('image_size', 224), 2)
  if image is None or max(image) > MAX_IMAGE_SIZE:
    return [f"image_size is {hf_config.get('image_size')!r}; expected an integer or [height, width] in "
            f'[1, {MAX_IMAGE_SIZE}]']
  problems = []
  if 'patch_size' in hf_config:
    patch = _pair(hf_config['patch_size'], 2)
    if patch is None or patch[0] > image[0] or patch[1] > image[1]:
      problems.append(f"patch_size is {hf_config['patch_size']!r}; expected positive integers no larger than "
                      f'image_size {image}')
  if 'tubelet_size' in hf_config:
    tubelet, frames = _pair(hf_config['tubelet_size'], 3), hf_config.get('num_frames', 32)
    tubelet = tubelet if isinstance(hf_config['tubelet_size'], list) else None
    if tubelet is None or (_is_int(frames) and tubelet[0] > frames) or tubelet[1] > image[0] or tubelet[2] > image[1]:
      problems.append(f"tubelet_size is {hf_config['tubelet_size']!r}; expected 3 positive integers [frames, "
                      f'height, width] no larger than num_frames {frames} and image_size {image}')
  return problems


def _other_problems(hf_config: dict) -> list[str]:
  """Probabilities, epsilon, activation, qkv_bias, and id2label (indices 0..n-1 naming n classes)."""
  problems = []
  for key in ('hidden_dropout_prob', 'attention_probs_dropout_prob'):
    if key in hf_config and not (_is_number(hf_config[key]) and 0 <= hf_config[key] < 1):
      problems.append(f'{key} is {hf_config[key]!r}; expected a number in [0, 1)')
  eps = hf_config.get('layer_norm_eps', FLAX_LAYER_NORM_EPS)
  if not (_is_number(eps) and 0 < eps < 1):
    problems.append(f'layer_norm_eps is {eps!r}; expected a number in (0, 1)')
  if not isinstance(hf_config.get('hidden_act', 'gelu_fast'), str):
    problems.append(f"hidden_act is {hf_config['hidden_act']!r}; expected an activation name")
  if not isinstance(hf_config.get('qkv_bias', True), bool):
    problems.append(f"qkv_bias is {hf_config['qkv_bias']!r}; expected true or false")
  id2label = hf_config.get('id2label')
  if id2label is None:
    return problems
  keys = list(id2label) if isinstance(id2label, dict) else None
  if keys is None or sorted(keys, key=lambda k: (len(k), k)) != [str(i) for i in range(len(keys))] or \
      not all(isinstance(v, str) for v in id2label.values()):
    problems.append(f'id2label is not an object {{"0": name, ..., "n-1": name}} (found {str(id2label)[:80]})')
  elif _is_int(hf_config.get('num_labels')) and hf_config['num_labels'] != len(keys):
    problems.append(f"num_labels is {hf_config['num_labels']} but id2label names {len(keys)} classes")
  return problems


def check_hf_config(hf_config: dict, source: str) -> None:
  """Bounds-checks the config.json values a model is built from (before anything is allocated).

  Raises:
    CheckpointError: naming `source` and every value out of range: the sizes in `INT_LIMITS` (positive ints,
      hidden_size divisible by the heads), image / patch / tubelet sizes, probabilities, epsilon, id2label.
  """
  problems = _int_problems(hf_config) + _size_problems(hf_config) + _other_problems(hf_config)
  if problems:
    raise CheckpointError(f'{source}: ' + '; '.join(problems))


def _channels(value: Any) -> list[float] | None:
  """A per-channel value (a number, or 3 numbers) as 3 floats, or None when it is not one."""
  values = [value] * 3 if _is_number(value) else value
  if isinstance(values, list) and len(values) == 3 and all(_is_number(v) for v in values):
    return [float(v) for v in values]
  return None


def check_processor_config(processor: dict, source: str) -> None:
  """Checks the preprocessor config values `preprocessing_from_hf` divides by and resizes to.

  Raises:
    CheckpointError: naming `source` and each bad value (rescale_factor, image_mean, image_std, size, crop_size).
  """
  problems = []
  if 'rescale_factor' in processor and not (_is_number(processor['rescale_factor']) and
                                            processor['rescale_factor'] > 0):
    problems.append(f"rescale_factor is {processor['rescale_factor']!r}; expected a positive number")
  for key, positive in (('image_mean', False), ('image_std', True)):
    values = _channels(processor.get(key, 0.5))
    if values is None or (positive and min(values) <= 0):
      problems.append(f'{key} is {processor.get(key)!r}; expected a {"positive " if positive else ""}number or '
                      'three of them')
  for key in ('size', 'crop_size'):
    value = processor.get(key) or {}
    if not isinstance(value, dict) or not all(_is_int(v) and 1 <= v <= MAX_IMAGE_SIZE for v in value.values()):
      problems.append(f'{key} is {value!r}; expected an object of sizes in [1, {MAX_IMAGE_SIZE}]')
  if problems:
    raise CheckpointError(f'{source}: ' + '; '.join(problems))


def _architecture(hf_config: dict, source: str) -> tuple[str, str]:
  """(architecture, model type) of a supported config, else a CheckpointError saying what is supported."""
  model_type = hf_config.get('model_type')
  architectures = hf_config.get('architectures')
  architecture = architectures[0] if isinstance(architectures, list) and architectures else None
  listed = architectures is None or (isinstance(architectures, list) and all(isinstance(a, str) for a in architectures))
  if not isinstance(model_type, str) or not listed:
    raise CheckpointError(f'{source}: model_type {model_type!r} and architectures {architectures!r}; expected a '
                          f'model_type string and a list of architecture names from {sorted(ARCHITECTURES)}')
  if architecture is None and model_type in ('vivit', 'vit'):
    architecture = {'vivit': 'VivitForVideoClassification', 'vit': 'ViTModel'}[model_type]
  if ARCHITECTURES.get(architecture) != model_type:
    raise CheckpointError(
        f'{source}: Hugging Face architecture {architecture!r} (model_type {model_type!r}) is not supported; '
        f'expected one of {sorted(ARCHITECTURES)}')
  return architecture, model_type


# --------------------------------------------------------------------------------------- configs and labels


def label_names_from_hf(hf_config: dict) -> Optional[list[str]]:
  """id2label in index order, or None when absent or only transformers' placeholders 'LABEL_i'."""
  id2label = hf_config.get('id2label') or {}
  names = [id2label[k] for k in sorted(id2label, key=int)]
  if not names or all(name == f'LABEL_{i}' for i, name in enumerate(names)):
    return None
  return names


def preprocessing_from_hf(hf_config: dict, processor: Optional[dict] = None) -> dict[str, Any]:
  """What the HF model expects, as mean_rgb / std_rgb on the 0..255 scale: x_model = (x - mean) / std.

  HF: x_model = (x * rescale_factor - offset - image_mean) / image_std, so mean = (offset + image_mean) /
  rescale_factor and std = image_std / rescale_factor (VivitImageProcessor's defaults: 191.25 and 63.75).
  """
  model_type = hf_config.get('model_type', 'vivit')
  p = {**_PROCESSOR_DEFAULTS.get(model_type, _PROCESSOR_DEFAULTS['vivit']), **(processor or {})}
  do_rescale, do_normalize = p.get('do_rescale', True), p.get('do_normalize', True)
  scale = p['rescale_factor'] if do_rescale else 1.0
  offset = 1.0 if (do_rescale and p.get('offset', False)) else 0.0
  per_channel = lambda v: [float(v)] * 3 if np.isscalar(v) else [float(x) for x in v]
  mean = per_channel(p['image_mean']) if do_normalize else [0.0] * 3
  std = per_channel(p['image_std']) if do_normalize else [1.0] * 3
  mean_rgb = [round((offset + m) / scale, 6) for m in mean]
  std_rgb = [round(s / scale, 6) for s in std]
  low = min((0 - m) / s for m, s in zip(mean_rgb, std_rgb))
  high = max((255 - m) / s for m, s in zip(mean_rgb, std_rgb))
  size, crop = p.get('size') or {}, p.get('crop_size') or {}
  image_size = hf_config.get('image_size', 224)
  labels = label_names_from_hf(hf_config)
  return {'source': 'huggingface', 'num_frames': hf_config.get('num_frames'),
          'min_resize': size.get('shortest_edge') or size.get('height'),
          'crop_size': crop.get('height') or (image_size[0] if isinstance(image_size, list) else image_size),
          'value_range': [round(low, 6), round(high, 6)], 'mean_rgb': mean_rgb, 'std_rgb': std_rgb,
          'num_classes': len(labels) if labels else len(hf_config.get('id2label') or {}) or None,
          'label_names': labels}


def _check_numerics(hf_config: dict, source: str) -> None:
  """Warns where the HF model computes something our modules do not (activation, LayerNorm epsilon)."""
  if hf_config.get('model_type') != 'vivit':  # An image ViT only initialises a ViViT that is then trained.
    return
  act, eps = hf_config.get('hidden_act', 'gelu_fast'), hf_config.get('layer_norm_eps', FLAX_LAYER_NORM_EPS)
  if act not in TANH_GELUS:
    warnings.warn(f"{source}: hidden_act {act!r}; vivit_jax's MLP uses GELU's tanh approximation "
                  f'({"/".join(TANH_GELUS)}), so outputs differ slightly', UserWarning, stacklevel=3)
  if not np.isclose(eps, FLAX_LAYER_NORM_EPS):
    warnings.warn(f'{source}: layer_norm_eps {eps}; vivit_jax uses LayerNorm epsilon {FLAX_LAYER_NORM_EPS}',
                  UserWarning, stacklevel=3)


def overrides_from_hf(hf_config: dict, processor: Optional[dict] = None) -> dict[str, Any]:
  """vivit_jax config overrides (flat dotted keys) for the model of an HF config.

  ViViT: the whole Model 1 architecture, clip shape, classes and normalisation. ViT: the encoder width and
  depth plus `init_from.model_config` (a ViViT to initialise from it; patches and frames are the user's).
  """
  architecture, model_type = _architecture(hf_config, '<config.json>')
  head_dim = hf_config.get('head_dim')
  d, heads = hf_config.get('hidden_size', 768), hf_config.get('num_attention_heads', 12)
  if head_dim is not None and head_dim * heads != d:
    raise CheckpointError(f'head_dim {head_dim} x {heads} heads != hidden_size {d}; vivit_jax needs d = h * dh')
  if hf_config.get('num_channels', 3) != 3:
    raise CheckpointError(f"num_channels {hf_config['num_channels']}; vivit_jax models take RGB (3 channels)")
  out = {'model.hidden_size': d, 'model.num_heads': heads,
         'model.mlp_dim': hf_config.get('intermediate_size', 3072),
         'model.num_layers': hf_config.get('num_hidden_layers', 12)}
  if model_type == 'vit':
    out.update({'init_from.checkpoint_format': 'huggingface', 'init_from.model_config.model.classifier': 'token'})
    return out
  image_size = hf_config.get('image_size', 224)
  height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
  if height != width:
    raise CheckpointError(f'image_size {image_size}: vivit_jax crops are square (dataset_configs.crop_size)')
  ft, fh, fw = hf_config.get('tubelet_size', (2, 16, 16))
  pre = preprocessing_from_hf(hf_config, processor)
  out.update({
      'model.patches.size': (fh, fw, ft), 'model.classifier': 'token',
      'model.attention_config.type': 'spacetime', 'model.temporal_encoding_config.method': '3d_conv',
      'model.representation_size': None,
      'model.dropout_rate': float(hf_config.get('hidden_dropout_prob', 0.0)),
      'model.attention_dropout_rate': float(hf_config.get('attention_probs_dropout_prob', 0.0)),
      'dataset_configs.num_frames': hf_config.get('num_frames', 32), 'dataset_configs.crop_size': height,
      'dataset_configs.num_classes': pre['num_classes'], 'dataset_configs.mean_rgb': pre['mean_rgb'],
      'dataset_configs.std_rgb': pre['std_rgb']})
  if pre['min_resize']:
    out['dataset_configs.min_resize'] = pre['min_resize']
  if hf_config.get('problem_type') == 'multi_label_classification':
    out['model_name'] = tasks.MULTILABEL
  if architecture == 'VivitModel':  # No classifier: the number of classes is the user's choice.
    del out['dataset_configs.num_classes']
  return out



def _model1_problems(config) -> list[str]:
  m = config.model
  checks = (('attention_config.type', m.attention_config.type, 'spacetime'), ('classifier', m.classifier, 'token'),
            ('temporal_encoding_config.method', m.temporal_encoding_config.method, '3d_conv'),
            ('representation_size', m.representation_size, None))
  return [f'{key} is {value!r} (expected {want!r})' for key, value, want in checks if value != want]


def hf_config_from(config, label_names: Optional[list[str]] = None) -> dict[str, Any]:
  """The transformers `VivitConfig` (as config.json's dict) of a vivit_jax Model 1 config.

  Raises:
    CheckpointError: the config is not ViViT Model 1 with a class token, which is all that HF's ViViT implements,
      or `label_names` does not name every class.
  """
  problems = _model1_problems(config)
  if problems:
    raise CheckpointError('Hugging Face supports ViViT Model 1 only (spacetime attention, token classifier, 3d_conv '
                          'tubelets, no pre-logits); this config has ' + '; '.join(problems))
  m, d = config.model, config.dataset_configs
  num_classes = d.num_classes
  names = list(label_names) if label_names else [f'LABEL_{i}' for i in range(num_classes)]
  if len(names) != num_classes:
    raise CheckpointError(f'{len(names)} label names for {num_classes} classes (dataset_configs.num_classes)')
  fh, fw, ft = m.patches.size
  return {
      'architectures': ['VivitForVideoClassification'], 'model_type': 'vivit',
      'image_size': d.crop_size, 'num_frames': d.num_frames, 'tubelet_size': [ft, fh, fw], 'num_channels': 3,
      'hidden_size': m.hidden_size, 'num_hidden_layers': m.num_layers, 'num_attention_heads': m.num_heads,
      'intermediate_size': m.mlp_dim, 'hidden_act': 'gelu_fast', 'layer_norm_eps': FLAX_LAYER_NORM_EPS,
      'hidden_dropout_prob': m.dropout_rate, 'attention_probs_dropout_prob': m.attention_dropout_rate,
      'initializer_range': 0.02, 'qkv_bias': True, 'dtype': 'float32',
      'id2label': {str(i): name for i, name in enumerate(names)},
      'label2id': {name: i for i, name in enumerate(names)},
      'problem_type': ('multi_label_classification' if tasks.Task.from_config(config).multi_label
                       else 'single_label_classification'),
  }


def processor_config_from(config) -> dict[str, Any]:
  """A `VivitImageProcessor` config reproducing the config's normalisation: (x / 255 - mean) / std."""
  d = config.dataset_configs
  if d.mean_rgb:
    mean, std = list(d.mean_rgb), list(d.std_rgb)
  else:
    mean, std = ([127.5] * 3, [127.5] * 3) if d.zero_centering else ([0.0] * 3, [255.0] * 3)
  return {'image_processor_type': 'VivitImageProcessor', 'do_resize': True,
          'size': {'shortest_edge': d.min_resize}, 'resample': 2, 'do_center_crop': True,
          'crop_size': {'height': d.crop_size, 'width': d.crop_size}, 'do_rescale': True,
          'rescale_factor': 1 / 255, 'offset': False, 'do_normalize': True,
          'image_mean': [m / 255 for m in mean], 'image_std': [s / 255 for s in std]}
