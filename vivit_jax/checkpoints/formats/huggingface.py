"""Hugging Face checkpoints: safetensors directories <-> parameter trees in Scenic's naming.

Reads `VivitForVideoClassification` / `VivitModel` (ViViT Model 1) and `ViTForImageClassification` / `ViTModel`
(image ViTs, to initialise a ViViT from) under transformers 4.x or 5.x parameter names; writes ViViT Model 1
under the 5.x names, which `VivitForVideoClassification.from_pretrained` loads. Never imports torch.

Names (inside the `vivit.` / `vit.` prefix of the task models; base models have none), block i:

  5.x `layers.{i}.`        4.x `encoder.layer.{i}.`               Scenic `Transformer/encoderblock_{i}/`
  layernorm_before         layernorm_before                       LayerNorm_0
  attention.{q,k,v}_proj   attention.attention.{query,key,value}  MultiHeadDotProductAttention_0/{query,key,value}
  attention.o_proj         attention.output.dense                 MultiHeadDotProductAttention_0/out
  layernorm_after          layernorm_after                        LayerNorm_1
  mlp.fc1, mlp.fc2         intermediate.dense, output.dense       MlpBlock_0/Dense_0, MlpBlock_0/Dense_1
and in both versions `embeddings.cls_token` -> cls, `embeddings.position_embeddings` ->
Transformer/posembed_input/pos_embedding, `embeddings.patch_embeddings.projection` -> embedding, `layernorm` ->
Transformer/encoder_norm, `pooler.dense` (base models) -> pre_logits, `classifier` -> output_projection (ViViT)
or head (ViT).

Layouts: torch Linear weights are `(out, in)` (flax kernels transposed); q/k/v `(h*dh, d)` are flax's `(d, h, dh)`
and `o_proj` `(d, h*dh)` is flax's `(h, dh, d)`; the Conv3d weight `(d, 3, ft, fh, fw)` is the flax kernel
`(ft, fh, fw, 3, d)` transposed (4, 3, 0, 1, 2) (Conv2d likewise without ft). HF's `tubelet_size` is
`(ft, fh, fw)` where Scenic's `patches.size` is `(fh, fw, ft)`; HF's `pixel_values` are `[B, T, 3, H, W]`
where ours are `[B, T, H, W, 3]`. Tokens are flattened time-major with the class token first in both.

Numerics: HF ViViT's default `hidden_act` 'gelu_fast' (also 'gelu_new', 'gelu_pytorch_tanh') is the tanh
approximation of GELU that our MLP uses (< 1e-6 apart; exact 'gelu' is up to 5e-4 off), and its `layer_norm_eps`
1e-6 is Flax's default. A ViViT with another activation or epsilon loads with a warning; an image ViT (exact
'gelu', eps 1e-12 by default) only initialises a ViViT that is then trained, so it loads silently.
`qkv_bias=False` loads as zero biases.

Preprocessing: `VivitImageProcessor` rescales by 1/127.5 with offset (to [-1, 1]), then normalises with mean and
std 0.5: the model sees (x - 191.25) / 63.75 of 0..255 pixels, the range [-3, 1], not Scenic's [-1, 1].
`load_huggingface` reports it as `mean_rgb` / `std_rgb` on the 0..255 scale (from the directory's preprocessor
config when it has one); `save_huggingface` writes a preprocessor config reproducing our config's normalisation.
"""

import json
import os
import re
import warnings
from typing import Any, Optional

import ml_dtypes
import numpy as np
import safetensors.numpy
from flax import traverse_util

from vivit_jax.checkpoints.manager import CheckpointError

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
INDEX_FILE = 'model.safetensors.index.json'
PROCESSOR_FILES = ('preprocessor_config.json', 'video_preprocessor_config.json')
ARCHITECTURES = {'VivitForVideoClassification': 'vivit', 'VivitModel': 'vivit',
                 'ViTForImageClassification': 'vit', 'ViTModel': 'vit'}
TANH_GELUS = ('gelu_fast', 'gelu_new', 'gelu_pytorch_tanh')
FLAX_LAYER_NORM_EPS = 1e-6


def _entries(modules) -> dict[str, tuple[str, str]]:
  """{'<module>.weight' / '.bias': (Scenic path, layout)} of (HF module, Scenic module, layouts) rows."""
  out = {}
  for hf_module, scenic, layout, bias_layout in modules:
    out[f'{hf_module}.weight'] = (f'{scenic}/{"scale" if layout == "norm" else "kernel"}', layout)
    out[f'{hf_module}.bias'] = (f'{scenic}/bias', bias_layout)
  return out


_ATTENTION = 'MultiHeadDotProductAttention_0'
_TOP = {  # transformers 5.x name (inside the model prefix) -> (Scenic path, layout).
    'embeddings.cls_token': ('cls', 'copy'),
    'embeddings.position_embeddings': ('Transformer/posembed_input/pos_embedding', 'copy'),
    **_entries((('embeddings.patch_embeddings.projection', 'embedding', 'conv', 'copy'),
                ('layernorm', 'Transformer/encoder_norm', 'norm', 'copy'),
                ('pooler.dense', 'pre_logits', 'dense', 'copy'))),
}
_LAYER = _entries((  # Inside `layers.{i}.` -> inside `Transformer/encoderblock_{i}/`.
    ('layernorm_before', 'LayerNorm_0', 'norm', 'copy'),
    ('attention.q_proj', f'{_ATTENTION}/query', 'qkv', 'qkv_bias'),
    ('attention.k_proj', f'{_ATTENTION}/key', 'qkv', 'qkv_bias'),
    ('attention.v_proj', f'{_ATTENTION}/value', 'qkv', 'qkv_bias'),
    ('attention.o_proj', f'{_ATTENTION}/out', 'out', 'copy'),
    ('layernorm_after', 'LayerNorm_1', 'norm', 'copy'),
    ('mlp.fc1', 'MlpBlock_0/Dense_0', 'dense', 'copy'),
    ('mlp.fc2', 'MlpBlock_0/Dense_1', 'dense', 'copy'),
))
_LAYOUTS = {  # layout -> (HF tensor, head count -> Scenic array; Scenic array -> HF tensor).
    'copy': (lambda x, h: x, lambda x: x),
    'norm': (lambda x, h: x, lambda x: x),
    'dense': (lambda x, h: x.T, lambda x: x.T),
    'conv': (lambda x, h: x.transpose(tuple(range(2, x.ndim)) + (1, 0)),  # (d, c, [ft,] fh, fw)
             lambda x: x.transpose((x.ndim - 1, x.ndim - 2) + tuple(range(x.ndim - 2)))),  # ([ft,] fh, fw, c, d)
    'qkv': (lambda x, h: x.T.reshape(x.shape[1], h, -1), lambda x: x.reshape(x.shape[0], -1).T),  # (h*dh, d)
    'qkv_bias': (lambda x, h: x.reshape(h, -1), lambda x: x.reshape(-1)),
    'out': (lambda x, h: x.T.reshape(h, -1, x.shape[0]), lambda x: x.reshape(-1, x.shape[-1]).T),  # (d, h*dh)
}
_LEGACY_LAYER = {  # transformers 4.x module inside `encoder.layer.{i}.` -> 5.x module.
    'attention.attention.query': 'attention.q_proj', 'attention.attention.key': 'attention.k_proj',
    'attention.attention.value': 'attention.v_proj', 'attention.output.dense': 'attention.o_proj',
    'intermediate.dense': 'mlp.fc1', 'output.dense': 'mlp.fc2',
}
_LAYER_KEY = re.compile(r'(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)')
_OPTIONAL = ('pre_logits/', 'output_projection/', 'head/')
_PROCESSOR_DEFAULTS = {  # transformers 5.23's VivitImageProcessor and ViTImageProcessor defaults.
    'vivit': dict(rescale_factor=1 / 127.5, offset=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                  size={'shortest_edge': 256}),
    'vit': dict(rescale_factor=1 / 255, offset=False, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                size={'height': 224, 'width': 224}),
}


# ---------------------------------------------------------------------------------------------------- reading


def is_huggingface_dir(path: str) -> bool:
  """True for a directory with config.json and model.safetensors (or a sharded safetensors index)."""
  return (os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE)) and
          any(os.path.isfile(os.path.join(path, f)) for f in (WEIGHTS_FILE, INDEX_FILE)))


def _read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def _read_safetensors_file(file: str) -> dict[str, np.ndarray]:
  """All tensors of one file as numpy arrays, dtypes as stored (bfloat16, which numpy lacks, via ml_dtypes)."""
  try:
    return safetensors.numpy.load_file(file)
  except TypeError:  # The format: 8-byte header size, JSON header {name: {dtype, shape, data_offsets}}, data.
    with open(file, 'rb') as f:
      header = json.loads(f.read(int.from_bytes(f.read(8), 'little')))
      data = f.read()
  dtypes = {'F32': np.float32, 'F16': np.float16, 'BF16': ml_dtypes.bfloat16, 'F64': np.float64}
  unknown = {name: meta['dtype'] for name, meta in header.items()
             if name != '__metadata__' and meta['dtype'] not in dtypes}
  if unknown:
    raise CheckpointError(f'{file}: tensors with dtypes other than floating point: {unknown}')
  return {name: np.frombuffer(data[slice(*meta['data_offsets'])], dtypes[meta['dtype']]).reshape(meta['shape'])
          for name, meta in header.items() if name != '__metadata__'}


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """The directory's tensors by transformers name, from model.safetensors or the shards its index lists."""
  single = os.path.join(path, WEIGHTS_FILE)
  if os.path.isfile(single):
    return _read_safetensors_file(single)
  shards = sorted(set(_read_json(os.path.join(path, INDEX_FILE))['weight_map'].values()))
  tensors = {}
  for shard in shards:
    tensors.update(_read_safetensors_file(os.path.join(path, shard)))
  return tensors


def _architecture(hf_config: dict, source: str) -> tuple[str, str]:
  """(architecture, model type) of a supported config, else a CheckpointError saying what is supported."""
  model_type = hf_config.get('model_type')
  architecture = (hf_config.get('architectures') or [None])[0]
  if architecture is None and model_type in ('vivit', 'vit'):
    architecture = {'vivit': 'VivitForVideoClassification', 'vit': 'ViTModel'}[model_type]
  if ARCHITECTURES.get(architecture) != model_type:
    raise CheckpointError(
        f'{source}: Hugging Face architecture {architecture!r} (model_type {model_type!r}) is not supported; '
        f'expected one of {sorted(ARCHITECTURES)}')
  return architecture, model_type


def name_map(num_layers: int, head: str, prefix: str = '') -> dict[str, tuple[str, str]]:
  """{transformers 5.x name: (Scenic path, layout)} of a ViT / ViViT with `num_layers` blocks. `prefix`
  (`vivit.`, `vit.`) goes on every name but the classifier's, as in transformers' task models."""
  names = {prefix + hf: entry for hf, entry in _TOP.items()}
  names.update(_entries((('classifier', head, 'dense', 'copy'),)))
  for i in range(num_layers):
    names.update({f'{prefix}layers.{i}.{hf}': (f'Transformer/encoderblock_{i}/{scenic}', layout)
                  for hf, (scenic, layout) in _LAYER.items()})
  return names


def _current_name(key: str, model_type: str) -> str:
  """A transformers 4.x or 5.x parameter name as its 5.x name without the model prefix."""
  name = key.removeprefix(f'{model_type}.')
  match = _LAYER_KEY.fullmatch(name)
  if not match:
    return name
  index, module, kind = match.groups()
  return f'layers.{index}.{_LEGACY_LAYER.get(module, module)}.{kind}'


def hf_to_scenic(tensors: dict[str, np.ndarray], hf_config: dict, source: str = '<tensors>') -> dict:
  """Transformers tensors -> a nested dict in Scenic naming (a ViT's classifier becomes `head`).

  Raises:
    CheckpointError: naming an unknown parameter, or listing the missing ones.
  """
  _, model_type = _architecture(hf_config, source)
  heads, num_layers = hf_config.get('num_attention_heads', 12), hf_config.get('num_hidden_layers', 12)
  names = name_map(num_layers, 'head' if model_type == 'vit' else 'output_projection')
  flat = {}
  for key, value in tensors.items():
    name = _current_name(key, model_type)
    if name not in names:
      raise CheckpointError(f'{source}: unknown Hugging Face {model_type} parameter {key!r} (shape '
                            f'{tuple(value.shape)}); expected ViT/ViViT names of transformers 4.x or 5.x with '
                            f'{num_layers} layers')
    scenic, layout = names[name]
    flat[scenic] = np.ascontiguousarray(_LAYOUTS[layout][0](value, heads))
  for scenic, layout in names.values():  # qkv_bias=False: zero biases.
    kernel = scenic.replace('/bias', '/kernel')
    if layout == 'qkv_bias' and scenic not in flat and kernel in flat and not hf_config.get('qkv_bias', True):
      flat[scenic] = np.zeros(flat[kernel].shape[1:], flat[kernel].dtype)
  missing = sorted(p for p, _ in names.values() if p not in flat and not p.startswith(_OPTIONAL))
  if missing:
    raise CheckpointError(f'{source}: the Hugging Face checkpoint lacks {len(missing)} parameters (Scenic '
                          f'paths): {", ".join(missing[:8])}{" ..." if len(missing) > 8 else ""}')
  return traverse_util.unflatten_dict(flat, sep='/')


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
  if architecture == 'VivitModel':  # No classifier: the number of classes is the user's choice.
    del out['dataset_configs.num_classes']
  return out


def read_info(path: str) -> dict[str, Any]:
  """Architecture, model type, vivit_jax config overrides, label names and preprocessing of an HF directory."""
  hf_config = _read_json(os.path.join(path, CONFIG_FILE))
  architecture, model_type = _architecture(hf_config, path)
  processor = next((_read_json(os.path.join(path, f)) for f in PROCESSOR_FILES
                    if os.path.isfile(os.path.join(path, f))), None)
  return {'architecture': architecture, 'model_type': model_type, 'hf_config': hf_config,
          'config': overrides_from_hf(hf_config, processor), 'label_names': label_names_from_hf(hf_config),
          'preprocessing': preprocessing_from_hf(hf_config, processor)}


def load_huggingface(path: str) -> tuple[dict, dict]:
  """(params in Scenic naming as numpy arrays, info) of an HF ViViT or ViT directory (see `read_info`)."""
  if not is_huggingface_dir(path):
    raise CheckpointError(f'{path}: not a Hugging Face directory (expected {CONFIG_FILE} and {WEIGHTS_FILE} '
                          f'or {INDEX_FILE})')
  info = read_info(path)
  _check_numerics(info['hf_config'], path)
  params = hf_to_scenic(read_tensors(path), info['hf_config'], path)
  if 'pre_logits' in params and info['model_type'] == 'vivit':
    info['config']['model.representation_size'] = int(params['pre_logits']['bias'].shape[0])
  elif 'pre_logits' in params:
    info['config']['init_from.model_config.model.representation_size'] = int(
        params['pre_logits']['bias'].shape[0])
  return params, info


# ---------------------------------------------------------------------------------------------------- writing


def _model1_problems(config) -> list[str]:
  m = config.model
  checks = (('attention_config.type', m.attention_config.type, 'spacetime'), ('classifier', m.classifier, 'token'),
            ('temporal_encoding_config.method', m.temporal_encoding_config.method, '3d_conv'),
            ('representation_size', m.representation_size, None))
  return [f'{key} is {value!r} (expected {want!r})' for key, value, want in checks if value != want]


def hf_config_from(config, label_names: Optional[list[str]] = None) -> dict[str, Any]:
  """The transformers `VivitConfig` (as config.json's dict) of a vivit_jax Model 1 config.

  Raises:
    ValueError: the config is not ViViT Model 1 with a class token, which is all that HF's ViViT implements.
  """
  problems = _model1_problems(config)
  if problems:
    raise ValueError('Hugging Face supports ViViT Model 1 only (spacetime attention, token classifier, 3d_conv '
                     'tubelets, no pre-logits); this config has ' + '; '.join(problems))
  m, d = config.model, config.dataset_configs
  num_classes = d.num_classes
  names = list(label_names) if label_names else [f'LABEL_{i}' for i in range(num_classes)]
  if len(names) != num_classes:
    raise ValueError(f'{len(names)} label names for {num_classes} classes (dataset_configs.num_classes)')
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
      'problem_type': ('multi_label_classification' if config.model_name == 'vivit_multilabel_classification'
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


def scenic_to_hf(params: dict, num_layers: int) -> dict[str, np.ndarray]:
  """A Model 1 tree in Scenic naming -> float32 tensors under VivitForVideoClassification's 5.x names."""
  flat = traverse_util.flatten_dict(params, sep='/')
  names = {hf: entry for hf, entry in name_map(num_layers, 'output_projection', 'vivit.').items()
           if not entry[0].startswith('pre_logits')}
  missing = sorted(scenic for scenic, _ in names.values() if scenic not in flat)
  extra = sorted(flat.keys() - {scenic for scenic, _ in names.values()})
  if missing or extra:
    raise ValueError(f'the parameters are not a ViViT Model 1 tree with {num_layers} blocks: missing '
                     f'{missing or "nothing"}, unexpected {extra or "nothing"}')
  return {hf: np.ascontiguousarray(_LAYOUTS[layout][1](np.asarray(flat[scenic], np.float32)))
          for hf, (scenic, layout) in names.items()}


def save_huggingface(path: str, params: dict, config, label_names: Optional[list[str]] = None) -> None:
  """Writes `path/{config.json, model.safetensors, preprocessor_config.json}` for transformers'
  `VivitForVideoClassification.from_pretrained(path)`.

  Args:
    path: the output directory (created).
    params: the Model 1 parameters in Scenic naming (`params` collection, numpy or jax arrays).
    config: the validated vivit_jax config of the model.
    label_names: class names for id2label; None writes transformers' placeholders 'LABEL_i'.

  Raises:
    ValueError: the model is not ViViT Model 1 with a class token, or the tree does not fit the config.
  """
  hf_config = hf_config_from(config, label_names)
  tensors = scenic_to_hf(params, config.model.num_layers)
  os.makedirs(path, exist_ok=True)
  safetensors.numpy.save_file(tensors, os.path.join(path, WEIGHTS_FILE), metadata={'format': 'pt'})
  for name, value in ((CONFIG_FILE, hf_config), (PROCESSOR_FILES[0], processor_config_from(config))):
    with open(os.path.join(path, name), 'w') as f:
      json.dump(value, f, indent=2)
      f.write('\n')
