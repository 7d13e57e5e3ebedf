"""load_params refuses, in every format and through one check, params trees that hold no arrays, integer or
boolean weights, or NaN / inf values, naming the parameter path and the file."""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import traverse_util

from tests.tiny import randomise, tiny_config
from vivit_jax.checkpoints import CheckpointError, load_params, restore_for_use, save_scenic, save_vivit_jax
from vivit_jax.checkpoints.formats import huggingface
from vivit_jax.models import create_model

FORMATS = ('vivit_jax', 'scenic', 'vit_npz', 'big_vision', 'huggingface')
BAD_PATH = 'Transformer/encoderblock_1/MlpBlock_0/Dense_0/kernel'


@pytest.fixture(scope='module')
def tiny():
  """(config, randomised Model 1 params as a flat {path: np.ndarray})."""
  config = tiny_config('spacetime')
  abstract = jax.eval_shape(lambda: create_model(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 16, 16, 3))))
  params = jax.tree.map(np.asarray, randomise(abstract['params'], seed=4))
  return config, traverse_util.flatten_dict(params, sep='/')


def write(fmt: str, flat: dict, directory: str, config=None) -> tuple[str, str]:
  """Saves the flat tree with the project's own writers (Hugging Face: tensors written as given);
  returns (the path to load, the file or directory the error must name)."""
  tree = traverse_util.unflatten_dict(flat, sep='/')
  if fmt == 'vivit_jax':
    save_vivit_jax(directory, tree, {'note': 'test'}, step=1)
    return directory, os.path.join(directory, 'checkpoints', '1', 'state')
  if fmt == 'scenic':
    path = os.path.join(directory, 'checkpoint')
    save_scenic(path, tree)
    return path, path
  if fmt in ('vit_npz', 'big_vision'):
    path = os.path.join(directory, 'model.npz')
    np.savez(path, **{('params/' if fmt == 'big_vision' else '') + k: v for k, v in flat.items()})
    return path, path
  huggingface.save_huggingface(directory, tree, config)  # Written as float32 ...
  weights = os.path.join(directory, huggingface.WEIGHTS_FILE)
  tensors = safetensors.numpy.load_file(weights)
  hf_name, = [name for name, (scenic_path, _) in huggingface.name_map(config.model.num_layers, 'output_projection',
                                                                       'vivit.').items() if scenic_path == BAD_PATH]
  tensors[hf_name] = np.ascontiguousarray(flat[BAD_PATH].T)  # ... so the tested kernel goes back as it is.
  safetensors.numpy.save_file(tensors, weights, metadata={'format': 'pt'})
  return directory, weights


@pytest.mark.parametrize('fmt', FORMATS)
def test_good_params_load_in_every_format(tiny, tmp_path, fmt):
  config, flat = tiny
  path, _ = write(fmt, flat, str(tmp_path), config)
  loaded = traverse_util.flatten_dict(load_params(path), sep='/')
  np.testing.assert_array_equal(loaded[BAD_PATH], flat[BAD_PATH])


@pytest.mark.parametrize('fmt', FORMATS)
@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
def test_non_finite_weights_name_the_parameter_and_the_file(tiny, tmp_path, fmt, value):
  config, flat = tiny
  kernel = flat[BAD_PATH].copy()
  kernel[0, :3] = value
  path, named = write(fmt, {**flat, BAD_PATH: kernel}, str(tmp_path), config)
  with pytest.raises(CheckpointError, match=re.escape(named)) as error:
    load_params(path)
  message = str(error.value)
  assert f'{BAD_PATH} (3 of {kernel.size} values)' in message and 'NaN or inf' in message


@pytest.mark.parametrize('fmt', FORMATS)
@pytest.mark.parametrize('dtype', [np.int32, np.int64, np.uint8, np.bool_])
def test_integer_and_boolean_weights_are_refused(tiny, tmp_path, fmt, dtype):
  config, flat = tiny
  path, named = write(fmt, {**flat, BAD_PATH: (flat[BAD_PATH] > 0).astype(dtype)}, str(tmp_path), config)
  with pytest.raises(CheckpointError, match=re.escape(named)) as error:
    load_params(path)
  assert 'expected floating-point weights' in str(error.value)
  assert f'{BAD_PATH} ({np.dtype(dtype)})' in str(error.value)


@pytest.mark.parametrize('params', [{}, {'embedding': {}}, {'Transformer': {'encoderblock_0': {}}}])
@pytest.mark.parametrize('fmt', ['vivit_jax', 'scenic'])
def test_a_tree_without_arrays_is_refused(tmp_path, fmt, params):
  if fmt == 'vivit_jax':
    save_vivit_jax(str(tmp_path), params, {'note': 'empty'}, step=1)
    path, named = str(tmp_path), os.path.join(str(tmp_path), 'checkpoints', '1', 'state')
  else:
    path = named = str(tmp_path / 'checkpoint_3')
    save_scenic(path, params)
  with pytest.raises(CheckpointError, match=re.escape(named) + '.*holds no parameter arrays'):
    load_params(path)


def test_huggingface_safetensors_without_tensors_is_refused(tiny, tmp_path):
  config, flat = tiny
  write('huggingface', flat, str(tmp_path), config)
  safetensors.numpy.save_file({}, str(tmp_path / huggingface.WEIGHTS_FILE))
  with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / 'config.json')) + '.*0 encoder layers'):
    load_params(str(tmp_path))


def test_restore_for_use_refuses_non_finite_weights_before_placing_them(tiny, tmp_path):
  config, flat = tiny
  kernel = flat[BAD_PATH].copy()
  kernel[1, 1] = np.nan
  scenic = str(tmp_path / 'checkpoint')
  save_scenic(scenic, traverse_util.unflatten_dict({**flat, BAD_PATH: kernel}, sep='/'))
  with pytest.raises(CheckpointError, match=re.escape(scenic) + '.*' + re.escape(BAD_PATH)):
    restore_for_use(scenic, config)


def test_scanned_blocks_of_different_depths_name_the_file(tmp_path):
  path = str(tmp_path / 'big_vision.npz')
  block = 'params/Transformer/encoderblock/LayerNorm_0'
  np.savez(path, **{f'{block}/scale': np.ones((2, 4), np.float32), f'{block}/bias': np.ones((3, 4), np.float32)})
  with pytest.raises(CheckpointError, match=re.escape(path) + re.escape(': the scanned Transformer/encoderblock '
                                                                        'leaves have leading (depth) axes [2, 3]')):
    load_params(path)
