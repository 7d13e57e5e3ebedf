"""Checkpoint conversion between vivit_jax (Orbax), Scenic (Flax msgpack) and Hugging Face (safetensors).

1. The source is restored for use (`restore.py`): its params in Scenic naming, its model config (the given one,
   else the one saved with a vivit_jax checkpoint, else a Hugging Face ViViT's config.json; Scenic checkpoints
   carry none), its preprocessing spec and its class names. The params must fit the model.
2. The target is written: a vivit_jax checkpoint (step 0, with the config, the preprocessing spec and the label
   names as metadata: a Hugging Face source keeps HF's normalisation as mean_rgb / std_rgb), a Scenic checkpoint
   `DIR/checkpoint_0` (optax layout), or a Hugging Face directory (ViViT Model 1 only).
3. Both models classify the same random clip and the max |logit difference| is reported. A Hugging Face side
   (source or target) runs in transformers on torch when both are importable (with `pixel_values` transposed
   to `[B, T, 3, H, W]`); otherwise, and for the other formats, our model runs on the params read back from
   the written checkpoint.
"""

import json
import os
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from vivit_jax import sharding
from vivit_jax.checkpoints.formats import huggingface
from vivit_jax.checkpoints.formats.scenic import save_scenic
from vivit_jax.checkpoints.loading import load_params, save_vivit_jax
from vivit_jax.checkpoints.manager import CheckpointError
from vivit_jax.checkpoints.restore import Restored, restore_for_use
from vivit_jax.models import create_model
from vivit_jax.models.shapes import input_shape

TARGETS = ('vivit_jax', 'scenic', 'huggingface')


def write_target(source: Restored, params: dict, output: str, to: str) -> None:
  """Writes `source` with its float32 host `params` to `output` in format `to` (one of TARGETS)."""
  if to == 'vivit_jax':
    metadata = {'config': json.loads(source.config.to_json_best_effort()), 'preprocessing': source.preprocessing,
                'label_names': source.label_names, 'converted_from': os.path.abspath(source.path)}
    save_vivit_jax(output, params, metadata, step=0)
  elif to == 'scenic':
    os.makedirs(output, exist_ok=True)
    save_scenic(output, params, step=0, layout='optax')
  elif to == 'huggingface':
    huggingface.save_huggingface(output, params, source.config, source.label_names)
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


def compare_logits(source: Restored, params: dict, output: str, to: str, seed: int = 0) -> dict[str, Any]:
  """Max |logit difference| between the source model and the converted one, and what computed each side."""
  clip = random_clip(source.config, seed)
  before = transformers_logits(source.path, clip) if source.is_huggingface else None
  source_side = 'transformers' if before is not None else 'vivit_jax'
  if before is None:
    before = our_logits(source.config, params, clip)
  after = transformers_logits(output, clip) if to == 'huggingface' else None
  converted_side = 'transformers' if after is not None else 'vivit_jax'
  if after is None:
    reloaded = jax.tree.map(lambda x: np.asarray(x, np.float32), load_params(output))
    after = our_logits(source.config, reloaded, clip)
  return {'max_abs_logit_diff': float(np.max(np.abs(before - after))), 'source_side': source_side,
          'converted_side': converted_side, 'num_classes': int(before.shape[-1])}


def prepare(input_path: str, to: str, config_path: Optional[str] = None) -> Restored:
  """The source restored for use, refused before anything is written when format `to` cannot hold it.

  Raises:
    CheckpointError: the source is unreadable or does not fit its config, or a Hugging Face target is asked
      for a model other than ViViT Model 1 (or with label names that do not name every class).
    ValueError: an unknown `to`.
  """
  if to not in TARGETS:
    raise ValueError(f'unknown target format {to!r}; expected one of {TARGETS}')
  source = restore_for_use(input_path, config_path, mesh=sharding.single_device_mesh())
  if to == 'huggingface':
    try:
      huggingface.hf_config_from(source.config, source.label_names)
    except CheckpointError as e:
      raise CheckpointError(f'Cannot convert {input_path} to Hugging Face: {e}') from e
  return source


def write_and_compare(source: Restored, output: str, to: str) -> dict[str, Any]:
  """Writes a `prepare`d source into `output` (format `to`) and returns the logit comparison."""
  params = source.host_params(np.float32)
  write_target(source, params, output, to)
  return compare_logits(source, params, output, to)


def convert(input_path: str, output: str, to: str, config_path: Optional[str] = None) -> dict[str, Any]:
  """Converts `input_path` into `output` (format `to`) and returns the logit comparison (`prepare`, then
  `write_and_compare`)."""
  return write_and_compare(prepare(input_path, to, config_path), output, to)
