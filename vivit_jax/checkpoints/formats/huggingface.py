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

Untrusted input: the files are read by `huggingface_files` (malformed JSON or safetensors headers and shard paths
leaving the directory are errors naming the file); config.json is bounds-checked (`check_hf_config`) before
anything is built from it, and the number of layers is the one the tensors hold (`layer_count`).
"""

import json
import os
import re
from typing import Any, Optional

import numpy as np
import safetensors.numpy
from flax import traverse_util

from vivit_jax.checkpoints.formats.huggingface_config import (  # noqa: F401  (re-exported)
    ARCHITECTURES, FLAX_LAYER_NORM_EPS, TANH_GELUS, _architecture, _check_numerics, check_hf_config,
    check_processor_config, hf_config_from, label_names_from_hf, overrides_from_hf, preprocessing_from_hf,
    processor_config_from)
from vivit_jax.checkpoints.formats.huggingface_files import (  # noqa: F401  (re-exported)
    CONFIG_FILE, INDEX_FILE, WEIGHTS_FILE, read_json, read_tensors, weights_source)
from vivit_jax.checkpoints.manager import CheckpointError

PROCESSOR_FILES = ('preprocessor_config.json', 'video_preprocessor_config.json')


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
_LAYER_INDEX = re.compile(r'(?:encoder\.layer|layers)\.(\d+)\.')
_OPTIONAL = ('pre_logits/', 'output_projection/', 'head/')


# ---------------------------------------------------------------------------------------------------- reading


def is_huggingface_dir(path: str) -> bool:
  """True for a directory with config.json and model.safetensors (or a sharded safetensors index)."""
  return (os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE)) and
          any(os.path.isfile(os.path.join(path, f)) for f in (WEIGHTS_FILE, INDEX_FILE)))


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


def layer_count(tensors: dict[str, np.ndarray], hf_config: dict, model_type: str, source: str) -> int:
  """The number of encoder layers the tensors hold (never config.json's claim, which only has to agree).

  Raises:
    CheckpointError: the layer indices are not 0..n-1, or config.json's num_hidden_layers is not n.
  """
  found = set()
  for key in tensors:
    match = _LAYER_INDEX.match(key.removeprefix(f'{model_type}.'))
    if match:
      found.add(int(match.group(1)))
  indices = sorted(found)
  if indices != list(range(len(indices))):
    gaps = sorted(set(range(len(indices))) - found)[:8]
    raise CheckpointError(f'{source}: the weights hold encoder layers {indices[:8]}{" ..." if len(indices) > 8 else ""}'
                          f'; expected layers 0..{len(indices) - 1} (missing {gaps})')
  claimed = hf_config.get('num_hidden_layers', 12)
  if claimed != len(indices):
    said = ('has no num_hidden_layers (transformers\' default: 12)' if 'num_hidden_layers' not in hf_config else
            f'says num_hidden_layers {claimed!r}')
    raise CheckpointError(f'{os.path.join(source, CONFIG_FILE)} {said}, but the weights hold {len(indices)} '
                          'encoder layers; expected the two to agree')
  return len(indices)


def hf_to_scenic(tensors: dict[str, np.ndarray], hf_config: dict, source: str = '<tensors>') -> dict:
  """Transformers tensors -> a nested dict in Scenic naming (a ViT's classifier becomes `head`).

  Raises:
    CheckpointError: naming an unknown parameter, or listing the missing ones.
  """
  _, model_type = _architecture(hf_config, source)
  heads = hf_config.get('num_attention_heads', 12)
  num_layers = layer_count(tensors, hf_config, model_type, source)
  names = name_map(num_layers, 'head' if model_type == 'vit' else 'output_projection')
  flat = {}
  for key, value in tensors.items():
    name = _current_name(key, model_type)
    if name not in names:
      raise CheckpointError(f'{source}: unknown Hugging Face {model_type} parameter {key!r} (shape '
                            f'{tuple(value.shape)}); expected ViT/ViViT names of transformers 4.x or 5.x with '
                            f'{num_layers} layers')
    scenic, layout = names[name]
    try:
      flat[scenic] = np.ascontiguousarray(_LAYOUTS[layout][0](value, heads))
    except (ValueError, IndexError) as e:  # A tensor whose rank or size its layout cannot take.
      raise CheckpointError(f'{source}: Hugging Face parameter {key!r} has shape {tuple(value.shape)}, which is not '
                            f'a {layout} tensor of a model with {heads} heads ({e})') from e
  for scenic, layout in names.values():  # qkv_bias=False: zero biases.
    kernel = scenic.replace('/bias', '/kernel')
    if layout == 'qkv_bias' and scenic not in flat and kernel in flat and not hf_config.get('qkv_bias', True):
      flat[scenic] = np.zeros(flat[kernel].shape[1:], flat[kernel].dtype)
  missing = sorted(p for p, _ in names.values() if p not in flat and not p.startswith(_OPTIONAL))
  if missing:
    raise CheckpointError(f'{source}: the Hugging Face checkpoint lacks {len(missing)} parameters (Scenic '
                          f'paths): {", ".join(missing[:8])}{" ..." if len(missing) > 8 else ""}')
  return traverse_util.unflatten_dict(flat, sep='/')


def read_info(path: str) -> dict[str, Any]:
  """Architecture, model type, vivit_jax config overrides, label names and preprocessing of an HF directory."""
  config_file = os.path.join(path, CONFIG_FILE)
  hf_config = read_json(config_file)
  architecture, model_type = _architecture(hf_config, config_file)
  check_hf_config(hf_config, config_file)
  processor_file = next((os.path.join(path, f) for f in PROCESSOR_FILES if os.path.isfile(os.path.join(path, f))),
                        None)
  processor = None
  if processor_file is not None:
    processor = read_json(processor_file)
    check_processor_config(processor, processor_file)
  try:
    overrides = overrides_from_hf(hf_config, processor)
  except CheckpointError as e:
    raise CheckpointError(f'{config_file}: {e}') from e
  return {'architecture': architecture, 'model_type': model_type, 'hf_config': hf_config,
          'config': overrides, 'label_names': label_names_from_hf(hf_config),
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


def scenic_to_hf(params: dict, num_layers: int) -> dict[str, np.ndarray]:
  """A Model 1 tree in Scenic naming -> float32 tensors under VivitForVideoClassification's 5.x names."""
  flat = traverse_util.flatten_dict(params, sep='/')
  names = {hf: entry for hf, entry in name_map(num_layers, 'output_projection', 'vivit.').items()
           if not entry[0].startswith('pre_logits')}
  missing = sorted(scenic for scenic, _ in names.values() if scenic not in flat)
  extra = sorted(flat.keys() - {scenic for scenic, _ in names.values()})
  if missing or extra:
    raise CheckpointError(f'the parameters are not a ViViT Model 1 tree with {num_layers} blocks: missing '
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
    CheckpointError: the model is not ViViT Model 1 with a class token, or the tree does not fit the config.
  """
  hf_config = hf_config_from(config, label_names)
  tensors = scenic_to_hf(params, config.model.num_layers)
  os.makedirs(path, exist_ok=True)
  safetensors.numpy.save_file(tensors, os.path.join(path, WEIGHTS_FILE), metadata={'format': 'pt'})
  for name, value in ((CONFIG_FILE, hf_config), (PROCESSOR_FILES[0], processor_config_from(config))):
    with open(os.path.join(path, name), 'w') as f:
      json.dump(value, f, indent=2)
      f.write('\n')
