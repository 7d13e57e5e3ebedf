"""Restore-for-use: any checkpoint `load_params` reads -> its config, its params placed on a mesh, the
preprocessing spec and the class names. The one path that evaluation, prediction, export and conversion take.

Where each part comes from:
- Config: the given config (a file `path.py[:preset]` or a ConfigDict), else the config saved in a vivit_jax
  checkpoint's metadata, else (a Hugging Face ViViT directory) its config.json translated onto the defaults.
  Scenic and ViT files carry none and need one. `overrides` ('KEY=VALUE') apply on top of any of these.
- Params: `load_params`, checked against the model (`check_params_fit`: every missing, unexpected and mis-shaped
  path is named), cast to the model's dtypes and placed on the mesh by the sharding rules.
- Preprocessing: the spec saved with the checkpoint, else `data.preprocessing_spec(config)`; an override of one
  of the `dataset_configs` keys a spec field comes from replaces that field, and a saved spec that disagrees with
  the model config in frames, crop or classes is an error. A Hugging Face source keeps HF's normalisation.
- Label names: `label_map` (a JSON file), else the names saved with the checkpoint (training saves the names
  its data has: TFDS features, a DMVR label_map.json), else a Hugging Face directory's id2label, else None. The
  data is never opened: a foreign checkpoint (Scenic, ViT) is named by `label_map` only.
"""

import dataclasses
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import jax
import ml_collections
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh

from vivit_jax import sharding as sharding_lib
from vivit_jax import tasks
from vivit_jax.checkpoints.loading import check_params_fit, detect_format, load_checkpoint
from vivit_jax.checkpoints.manager import CheckpointError
from vivit_jax.config import apply_overrides, load_config, validate_config
from vivit_jax.config.overrides import overridden_keys, set_path
from vivit_jax.data import preprocessing_spec, read_label_map
from vivit_jax.models import create_model
from vivit_jax.models.complexity import abstract_params
from vivit_jax.models.shapes import input_shape

ConfigSpec = Union[str, ml_collections.ConfigDict, None]
# Preprocessing spec field -> the dataset_configs keys it is derived from.
SPEC_SOURCES = {'num_frames': ('num_frames',), 'stride': ('stride',), 'min_resize': ('min_resize',),
                'crop_size': ('crop_size',), 'value_range': ('zero_centering',), 'mean_rgb': ('mean_rgb',),
                'std_rgb': ('std_rgb',)}


@dataclasses.dataclass
class Restored:
  """A checkpoint ready for use (see the module docstring)."""
  path: str
  format: str
  config: ml_collections.ConfigDict
  task: tasks.Task
  model: Any
  params: Any  # Placed on `mesh` in the model's dtypes.
  mesh: Mesh
  preprocessing: Dict[str, Any]  # preprocessing_spec's fields; 'label_names' as below.
  label_names: Optional[List[str]]
  metadata: Optional[Dict[str, Any]]  # A vivit_jax checkpoint's JSON metadata; None for other formats.

  @property
  def is_huggingface(self) -> bool:
    return self.format == 'huggingface'

  def host_params(self, dtype: Any = None) -> Any:
    """The params as numpy arrays on this host (`dtype` to cast them)."""
    return jax.tree.map(lambda x: np.asarray(x, dtype), jax.device_get(self.params))


def restore_for_use(path: str, config: ConfigSpec = None, overrides: Sequence[str] = (),
            label_map: Optional[str] = None, mesh: Optional[Mesh] = None,
            devices: Optional[Sequence[Any]] = None) -> Restored:
  """Restores `path` for use.

  Args:
    path: a vivit_jax workdir or step, a Scenic msgpack file or directory, a ViT .npz, a Hugging Face directory.
    config: the model config (`file.py[:preset]` or a ConfigDict); None: the one the checkpoint carries.
    overrides: 'KEY=VALUE' config overrides.
    label_map: a JSON label map naming the classes (`{'names': [...]}` or a list).
    mesh: where the params go; None: `config.mesh` over `devices` (default: all devices).
    devices: the devices of the default mesh.

  A workdir means its newest readable step: a newer step that cannot be read is skipped with the warning the
  trainer gives (`manager.warn_unreadable`), and the params, config and spec all come from the step read.

  Raises:
    CheckpointError, ConfigError, DataError: naming the file, key or parameter path that is wrong.
  """
  path = os.fspath(path)
  checkpoint_format = detect_format(path)
  loaded = load_checkpoint(path, checkpoint_format)
  metadata, hf_info = loaded.metadata, loaded.hf_info
  config = _config(path, config, overrides, metadata, hf_info)
  model = create_model(config)
  mesh = mesh if mesh is not None else sharding_lib.create_mesh(config.mesh, devices)
  params = place_params(loaded.params, abstract_params(model, input_shape(config)), mesh, source=loaded.source)
  saved = dict((metadata or {}).get('preprocessing') or {})
  names = _label_names(path, config, label_map, metadata, hf_info)
  spec = _spec(config, saved, overrides, path, names)
  if hf_info is not None:  # The weights expect HF's normalisation, whatever the config says.
    spec.update({key: hf_info['preprocessing'][key] for key in ('mean_rgb', 'std_rgb')})
  return Restored(path=path, format=checkpoint_format, config=config, task=tasks.Task.from_config(config),
                  model=model, params=params, mesh=mesh, preprocessing=spec, label_names=names, metadata=metadata)


def place_params(params: Any, abstract: Any, mesh: Mesh, source: str = '') -> Any:
  """`params` checked against `abstract` (the model's), cast to its dtypes and placed by the sharding rules."""
  check_params_fit(params, abstract, source=source)
  shardings = traverse_util.flatten_dict(sharding_lib.state_shardings(abstract, mesh))
  stored = traverse_util.flatten_dict(params)
  wanted = traverse_util.flatten_dict(abstract)

  def place(key):
    value = np.asarray(stored[key], dtype=wanted[key].dtype)
    return jax.make_array_from_callback(value.shape, shardings[key], lambda index: value[index])
  return traverse_util.unflatten_dict({key: place(key) for key in wanted})


def _config(path: str, config: ConfigSpec, overrides: Sequence[str], metadata: Optional[Dict[str, Any]],
            hf_info: Optional[Dict[str, Any]]) -> ml_collections.ConfigDict:
  """The given config, else the saved one, else an HF config.json's; overrides on top."""
  if config is not None:
    return load_config(config, overrides=list(overrides))
  if metadata and metadata.get('config'):
    user, source = ml_collections.ConfigDict(metadata['config'], type_safe=False), f'{path} (saved config)'
  elif hf_info is not None:
    if hf_info['architecture'] != 'VivitForVideoClassification':
      raise CheckpointError(f"{path}: a Hugging Face {hf_info['architecture']} has no video classifier; expected "
                            'VivitForVideoClassification (an image ViT initialises a ViViT through config.init_from)')
    user, source = nested_config(hf_info['config']), f'{path} (Hugging Face config.json)'
  else:
    raise CheckpointError(f'{path}: the checkpoint carries no model config (a Scenic or ViT file, or one written '
                          'without metadata); pass the model config with --config=FILE')
  if overrides:
    user = apply_overrides(user, list(overrides), source)
  return validate_config(user, source=source)


def config_from_overrides(flat: Dict[str, Any], source: str = '<overrides>') -> ml_collections.ConfigDict:
  """The defaults with flat dotted-key overrides ({'model.num_heads': 2, ...}), validated."""
  return validate_config(nested_config(flat), source=source)


def nested_config(flat: Dict[str, Any]) -> ml_collections.ConfigDict:
  """{'model.num_heads': 2, ...} -> a nested ConfigDict."""
  nested = ml_collections.ConfigDict(type_safe=False)
  for key, value in flat.items():
    set_path(nested, key, list(value) if isinstance(value, tuple) else value)
  return nested


def _label_names(path: str, config: ml_collections.ConfigDict, label_map: Optional[str],
                 metadata: Optional[Dict[str, Any]], hf_info: Optional[Dict[str, Any]]) -> Optional[List[str]]:
  num_classes = config.dataset_configs.num_classes
  saved = ((metadata or {}).get('preprocessing') or {}).get('label_names') or (metadata or {}).get('label_names')
  if label_map:
    names, where = read_label_map(label_map), label_map
  elif saved:
    names, where = list(saved), f'{path} (saved label names)'
  elif hf_info is not None and hf_info.get('label_names'):
    names, where = list(hf_info['label_names']), f'{path} (Hugging Face id2label)'
  else:
    return None
  if len(names) != num_classes:
    raise CheckpointError(f'{where}: {len(names)} label names for a model with {num_classes} classes')
  return names


def _spec(config: ml_collections.ConfigDict, saved: Dict[str, Any], overrides: Sequence[str], source: str,
          label_names: Optional[List[str]]) -> Dict[str, Any]:
  """The checkpoint's saved spec (else the config's), with overridden fields taken from the config."""
  derived = preprocessing_spec(config, label_names)
  if not saved:
    return derived
  spec = {**derived, **saved, 'label_names': derived['label_names']}
  overridden = set(overridden_keys(overrides))
  for field, keys in SPEC_SOURCES.items():
    if any(f'dataset_configs.{k}' in overridden for k in keys):
      spec[field] = derived[field]
  differing = [f'{f}: saved {spec[f]}, config {derived[f]}' for f in SPEC_SOURCES if spec[f] != derived[f]]
  if differing:
    logging.warning('%s: using the preprocessing saved with the checkpoint where the config differs (%s)',
                    source, '; '.join(differing))
  d = config.dataset_configs
  for field, expected in (('num_frames', d.num_frames), ('crop_size', d.crop_size),
                          ('num_classes', d.num_classes)):
    if spec[field] != expected:
      raise CheckpointError(f'{source}: the preprocessing spec has {field}={spec[field]}, but the model config '
                            f'has {expected}; override dataset_configs.{field} to match the model')
  return spec
