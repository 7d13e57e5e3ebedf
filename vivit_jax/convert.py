"""Checkpoint conversion between vivit_jax (Orbax), Scenic (Flax msgpack) and Hugging Face (safetensors).

  python scripts/convert_checkpoint.py --input=PATH --output=DIR --to={vivit_jax,scenic,huggingface} \\
      [--config=FILE]

1. The params come from `checkpoints.load_params(PATH)` (any format it reads, in Scenic naming).
2. The model config is `--config` when given, else the config saved with a vivit_jax checkpoint, else for a
   Hugging Face ViViT its config.json (through `overrides_from_hf` onto configs/default.py). Scenic checkpoints
   carry no config: they need `--config`. The params must fit the model (`check_params_fit`).
3. The target is written: a vivit_jax checkpoint (step 0, with the config, the preprocessing spec and the label
   names as metadata: a Hugging Face source keeps HF's normalisation as mean_rgb / std_rgb), a Scenic checkpoint
   `DIR/checkpoint_0` (optax layout), or a Hugging Face directory (ViViT Model 1 only).
4. Both models classify the same random clip and the max |logit difference| is reported. A Hugging Face side
   (source or target) runs in transformers on torch when both are importable (with `pixel_values` transposed
   to `[B, T, 3, H, W]`); otherwise, and for the other formats, our model runs on the params read back from
   the written checkpoint.
"""

import argparse
import dataclasses
import json
import os
from typing import Any, Mapping, Optional, Sequence

import jax
import ml_collections
import numpy as np

from vivit_jax import checkpoints
from vivit_jax.checkpoints.formats import huggingface
from vivit_jax.config import load_config, validate_config
from vivit_jax.data.pipeline import Pipeline
from vivit_jax.models import create_model
from vivit_jax.models.complexity import abstract_params, input_shape

TARGETS = ('vivit_jax', 'scenic', 'huggingface')


@dataclasses.dataclass
class Source:
  """A checkpoint read for conversion: float32 params in Scenic naming and everything needed to use them."""
  path: str
  params: dict
  config: ml_collections.ConfigDict
  label_names: Optional[list[str]]
  preprocessing: dict[str, Any]
  is_huggingface: bool


def config_from_overrides(overrides: Mapping[str, Any], source: str = '<overrides>') -> ml_collections.ConfigDict:
  """configs/default.py with flat dotted-key overrides ({'model.num_heads': 2, ...}), validated."""
  nested: dict[str, Any] = {}
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = nested
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = list(value) if isinstance(value, tuple) else value
  return validate_config(nested, source=source)


def preprocessing_spec(config: ml_collections.ConfigDict, label_names: Optional[list[str]]) -> dict[str, Any]:
  """The preprocessing spec training with `config` saves, with the label names."""
  spec = dict(Pipeline(config, process_index=0, process_count=1).preprocessing)
  spec['label_names'] = list(label_names) if label_names else None
  return spec


def _source_config(path: str, config_path: Optional[str], metadata: Optional[dict],
                   info: Optional[dict]) -> ml_collections.ConfigDict:
  if config_path:
    return load_config(config_path)
  if info is not None:
    return config_from_overrides(info['config'], f'{path} (Hugging Face config.json)')
  if metadata and metadata.get('config'):
    return validate_config(metadata['config'], source=f'{path} (saved config)')
  raise ValueError(f'{path}: the checkpoint carries no model config (a Scenic checkpoint, or one written '
                   'without metadata); pass --config=FILE')


def load_source(path: str, config_path: Optional[str] = None) -> Source:
  """Reads a checkpoint of any format `load_params` reads, with its config; checks the params fit it."""
  info = huggingface.read_info(path) if huggingface.is_huggingface_dir(path) else None
  if info is not None and info['architecture'] != 'VivitForVideoClassification':
    raise ValueError(f"{path}: a Hugging Face {info['architecture']} has no video classifier to convert; "
                     'expected VivitForVideoClassification (a ViT initialises a ViViT through config.init_from)')
  metadata = None if info is not None else checkpoints.load_metadata(path)
  config = _source_config(path, config_path, metadata, info)
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), checkpoints.load_params(path))
  model = create_model(config)
  checkpoints.check_params_fit(params, abstract_params(model, input_shape(config)), path)
  saved = (metadata or {}).get('preprocessing') or {}
  labels = (info or {}).get('label_names') or saved.get('label_names') or (metadata or {}).get('label_names')
  spec = {**preprocessing_spec(config, labels), **saved}
  if info is not None:  # The weights expect HF's normalisation, whatever --config says.
    spec.update({key: info['preprocessing'][key] for key in ('mean_rgb', 'std_rgb')})
  return Source(path=path, params=params, config=config, label_names=labels, preprocessing=spec,
                is_huggingface=info is not None)


def write_target(source: Source, output: str, to: str) -> None:
  """Writes `source` to `output` in format `to` (one of TARGETS)."""
  if to == 'vivit_jax':
    metadata = {'config': json.loads(source.config.to_json_best_effort()), 'preprocessing': source.preprocessing,
                'label_names': source.label_names, 'converted_from': os.path.abspath(source.path)}
    checkpoints.save_vivit_jax(output, source.params, metadata, step=0)
  elif to == 'scenic':
    os.makedirs(output, exist_ok=True)
    checkpoints.save_scenic(output, source.params, step=0, layout='optax')
  elif to == 'huggingface':
    huggingface.save_huggingface(output, source.params, source.config, source.label_names)
  else:
    raise ValueError(f'unknown target format {to!r}; expected one of {TARGETS}')


def random_clip(config: ml_collections.ConfigDict, seed: int = 0) -> np.ndarray:
  """A standard-normal clip `[1, T, H, W, 3]` of the config's shape."""
  return np.random.default_rng(seed).standard_normal(input_shape(config)).astype(np.float32)


def our_logits(config: ml_collections.ConfigDict, params: dict, clip: np.ndarray) -> np.ndarray:
  return np.asarray(create_model(config).apply({'params': params}, clip, train=False))


def transformers_logits(path: str, clip: np.ndarray) -> Optional[np.ndarray]:
  """Logits of `VivitForVideoClassification.from_pretrained(path)` on our `[B, T, H, W, 3]` clip, or None
  when torch or transformers is not installed."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  model = transformers.VivitForVideoClassification.from_pretrained(path).eval()
  with torch.no_grad():
    pixel_values = torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 1, 4, 2, 3)))
    return model(pixel_values=pixel_values).logits.numpy()


def compare_logits(source: Source, output: str, to: str, seed: int = 0) -> dict[str, Any]:
  """Max |logit difference| between the source model and the converted one, and what computed each side."""
  clip = random_clip(source.config, seed)
  before = transformers_logits(source.path, clip) if source.is_huggingface else None
  source_side = 'transformers' if before is not None else 'vivit_jax'
  if before is None:
    before = our_logits(source.config, source.params, clip)
  after = transformers_logits(output, clip) if to == 'huggingface' else None
  converted_side = 'transformers' if after is not None else 'vivit_jax'
  if after is None:
    reloaded = jax.tree.map(lambda x: np.asarray(x, np.float32), checkpoints.load_params(output))
    after = our_logits(source.config, reloaded, clip)
  return {'max_abs_logit_diff': float(np.max(np.abs(before - after))), 'source_side': source_side,
          'converted_side': converted_side, 'num_classes': int(before.shape[-1])}


def convert(input_path: str, output: str, to: str, config_path: Optional[str] = None) -> dict[str, Any]:
  """Converts `input_path` into `output` (format `to`) and returns the logit comparison."""
  if to not in TARGETS:
    raise ValueError(f'unknown target format {to!r}; expected one of {TARGETS}')
  source = load_source(input_path, config_path)
  write_target(source, output, to)
  return compare_logits(source, output, to)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Command line: see the module docstring."""
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--input', required=True, help='checkpoint: vivit_jax workdir/step, Scenic file or '
                      'directory, or Hugging Face directory')
  parser.add_argument('--output', required=True, help='output directory')
  parser.add_argument('--to', required=True, choices=TARGETS, help='output format')
  parser.add_argument('--config', default=None, help='model config file[:preset] (needed for Scenic inputs)')
  args = parser.parse_args(argv)
  report = convert(args.input, args.output, args.to, args.config)
  print(f'wrote {args.to} checkpoint to {args.output}')
  print(f"max |logit difference| (source: {report['source_side']}, converted: {report['converted_side']}, "
        f"{report['num_classes']} classes, random clip): {report['max_abs_logit_diff']:.3g}")
  return 0
