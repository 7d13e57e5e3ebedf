"""Hostile Hugging Face directories: config.json values out of bounds, a layer count the tensors do not back,
malformed JSON and safetensors headers, and shard paths that leave the directory. Each is a CheckpointError
naming the file (and the key), raised before anything large is allocated."""

import json
import os
import re
import shutil
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from tests.tiny import randomise, tiny_config
from vivit_jax.checkpoints import CheckpointError, load_params, restore_for_use
from vivit_jax.checkpoints.formats import huggingface
from vivit_jax.models import create_model

CONFIG, WEIGHTS, INDEX = huggingface.CONFIG_FILE, huggingface.WEIGHTS_FILE, huggingface.INDEX_FILE


@pytest.fixture(scope='module')
def hf_dir(tmp_path_factory):
  """A tiny ViViT Model 1 (2 layers, d=12, 2 heads) written by save_huggingface."""
  config = tiny_config('spacetime')
  abstract = jax.eval_shape(lambda: create_model(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 16, 16, 3))))
  path = str(tmp_path_factory.mktemp('hf') / 'model')
  huggingface.save_huggingface(path, jax.tree.map(np.asarray, randomise(abstract['params'], seed=5)), config)
  return path


@pytest.fixture
def copy(hf_dir, tmp_path):
  """A fresh copy of `hf_dir` to damage."""
  return shutil.copytree(hf_dir, str(tmp_path / 'model'))


def edit_config(directory: str, **changes) -> str:
  path = os.path.join(directory, CONFIG)
  with open(path) as f:
    config = json.load(f)
  config.update(changes)
  with open(path, 'w') as f:
    json.dump(config, f)
  return path


def test_the_intact_directory_loads(copy):
  assert load_params(copy)['embedding']['kernel'].shape == (2, 4, 4, 3, 12)


@pytest.mark.parametrize('changes, named', [
    ({'num_hidden_layers': 10 ** 9}, 'num_hidden_layers is 1000000000; expected an integer in [1, 1024]'),
    ({'num_hidden_layers': 0}, 'num_hidden_layers is 0'),
    ({'num_hidden_layers': True}, 'num_hidden_layers is True'),
    ({'hidden_size': None}, 'hidden_size is None'),
    ({'tubelet_size': 2}, 'tubelet_size is 2;'),
    ({'hidden_size': 0}, 'hidden_size is 0'),
    ({'hidden_size': 10 ** 12}, 'hidden_size is 1000000000000'),
    ({'hidden_size': 13}, 'hidden_size 13 is not divisible by num_attention_heads 2'),
    ({'num_attention_heads': -2}, 'num_attention_heads is -2'),
    ({'intermediate_size': '24'}, "intermediate_size is '24'"),
    ({'intermediate_size': 2.5}, 'intermediate_size is 2.5'),
    ({'num_frames': 10 ** 7}, 'num_frames is 10000000'),
    ({'head_dim': 5}, 'head_dim 5 x 2 heads is not hidden_size 12'),
    ({'num_channels': 4}, 'num_channels is 4; expected 3'),
    ({'image_size': 0}, 'image_size is 0'),
    ({'image_size': [16, 10 ** 9]}, 'image_size is [16, 1000000000]'),
    ({'tubelet_size': [2, 4]}, 'tubelet_size is [2, 4]'),
    ({'tubelet_size': [2, 0, 4]}, 'tubelet_size is [2, 0, 4]'),
    ({'tubelet_size': [16, 4, 4]}, 'tubelet_size is [16, 4, 4]; expected 3 positive integers'),
    ({'tubelet_size': [2, 32, 32]}, 'no larger than num_frames 8 and image_size [16, 16]'),
    ({'layer_norm_eps': -1e-6}, 'layer_norm_eps is -1e-06'),
    ({'hidden_dropout_prob': 1.5}, 'hidden_dropout_prob is 1.5; expected a number in [0, 1)'),
    ({'attention_probs_dropout_prob': None}, 'attention_probs_dropout_prob is None'),
    ({'qkv_bias': 'yes'}, "qkv_bias is 'yes'"),
    ({'hidden_act': 3}, 'hidden_act is 3'),
    ({'id2label': {'0': 'a', '7': 'b'}}, 'id2label is not an object'),
    ({'id2label': ['a', 'b']}, 'id2label is not an object'),
    ({'id2label': {str(i): str(i) for i in range(5)}, 'num_labels': 9}, 'num_labels is 9 but id2label names 5'),
    ({'architectures': 'VivitForVideoClassification'}, 'architectures'),
    ({'architectures': [{'x': 1}]}, 'architectures'),
])
def test_config_values_are_bounds_checked(copy, changes, named):
  config_file = edit_config(copy, **changes)
  for load in (load_params, restore_for_use):
    with pytest.raises(CheckpointError, match=re.escape(config_file)) as error:
      load(copy)
    assert named in str(error.value)


def test_a_huge_claimed_layer_count_is_refused_without_allocating_it(copy):
  config_file = edit_config(copy, num_hidden_layers=1000)
  with pytest.raises(CheckpointError, match=re.escape(config_file) + '.*num_hidden_layers 1000, but the weights '
                     'hold 2 encoder layers'):
    load_params(copy)


def test_the_layer_count_comes_from_the_tensors(copy):
  weights = os.path.join(copy, WEIGHTS)
  tensors = safetensors.numpy.load_file(weights)
  renamed = {k.replace('layers.1.', 'layers.999999999999.'): v for k, v in tensors.items()}
  safetensors.numpy.save_file(renamed, weights)
  with pytest.raises(CheckpointError, match=re.escape(copy) + r'.*encoder layers \[0, 999999999999\]; expected '
                     r'layers 0..1 \(missing \[1\]\)'):
    load_params(copy)
  safetensors.numpy.save_file({k: v for k, v in tensors.items() if 'layers.1.' not in k}, weights)
  with pytest.raises(CheckpointError, match='num_hidden_layers 2, but the weights hold 1 encoder layers'):
    load_params(copy)


def test_a_tensor_that_its_layout_cannot_take_is_named(copy):
  weights = os.path.join(copy, WEIGHTS)
  tensors = safetensors.numpy.load_file(weights)
  tensors['vivit.layers.0.attention.q_proj.weight'] = np.zeros((7,), np.float32)
  safetensors.numpy.save_file(tensors, weights)
  with pytest.raises(CheckpointError, match=re.escape("'vivit.layers.0.attention.q_proj.weight' has shape (7,)")):
    load_params(copy)


@pytest.mark.parametrize('file', [CONFIG, 'preprocessor_config.json'])
@pytest.mark.parametrize('text, found', [
    ('{"hidden_size": 12,', 'JSONDecodeError'), ('', 'JSONDecodeError'), ('[1, 2]', 'found a JSON list'),
    ('"text"', 'found a JSON str'), (b'\xff\xfe{}', 'UnicodeDecodeError'), ('[' * 100000, 'nested too deeply'),
])
def test_malformed_json_is_named(copy, file, text, found):
  path = os.path.join(copy, file)
  with open(path, 'wb') as f:
    f.write(text if isinstance(text, bytes) else text.encode())
  with pytest.raises(CheckpointError, match=re.escape(path) + '.*expected a JSON object') as error:
    load_params(copy)
  assert found in str(error.value)


@pytest.mark.parametrize('changes, named', [
    ({'rescale_factor': 0}, 'rescale_factor is 0'), ({'image_std': [0.5, 0.0, 0.5]}, 'image_std is [0.5, 0.0, 0.5]'),
    ({'image_mean': 'grey'}, "image_mean is 'grey'"), ({'size': {'shortest_edge': -1}}, 'size is'),
])
def test_preprocessor_values_are_checked(copy, changes, named):
  path = os.path.join(copy, 'preprocessor_config.json')
  with open(path) as f:
    processor = json.load(f)
  with open(path, 'w') as f:
    json.dump({**processor, **changes}, f)
  with pytest.raises(CheckpointError, match=re.escape(path)) as error:
    restore_for_use(copy)
  assert named in str(error.value)


def _header(header, data: bytes = b'') -> bytes:
  text = header if isinstance(header, bytes) else json.dumps(header).encode()
  return struct.pack('<Q', len(text)) + text + data


_F32 = {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}


@pytest.mark.parametrize('content, found', [
    (b'', 'header too small'),
    (b'\x05\x00', 'header too small'),
    (struct.pack('<Q', 4096) + b'{}', 'invalid header length'),
    (struct.pack('<Q', 2 ** 63) + b'{}', 'header too large'),
    (_header(b'not json at all'), 'invalid JSON'),
    (_header(b'\xff\xfe\xfd'), 'invalid UTF-8'),
    (_header([1, 2]), 'invalid JSON'),
    (_header({'w': {**_F32, 'data_offsets': [0, 4096]}}, b'\0' * 8), ''),
    (_header({'w': {**_F32, 'shape': [3]}}, b'\0' * 8), 'invalid shape, data type, or offset'),
    (_header({'w': {**_F32, 'dtype': 'F99'}}, b'\0' * 8), 'unknown variant `F99`'),
    (_header({'w': {**_F32, 'shape': [-2]}}, b'\0' * 8), 'invalid value'),
])
def test_malformed_safetensors_headers_are_named(copy, content, found):
  weights = os.path.join(copy, WEIGHTS)
  with open(weights, 'wb') as f:
    f.write(content)
  with pytest.raises(CheckpointError, match=re.escape(weights) + '.*not a readable safetensors file') as error:
    load_params(copy)
  assert found in str(error.value)


def test_a_dtype_numpy_cannot_hold_is_named(copy):
  weights = os.path.join(copy, WEIGHTS)
  with open(weights, 'wb') as f:
    f.write(_header({'vivit.embeddings.cls_token': {'dtype': 'F8_E4M3', 'shape': [1], 'data_offsets': [0, 1]}},
                    b'\0'))
  with pytest.raises(CheckpointError, match=re.escape(weights) + ".*'vivit.embeddings.cls_token' has dtype F8_E4M3"):
    load_params(copy)


def shard(directory: str, weight_map: dict) -> str:
  """Replaces model.safetensors with an index naming `weight_map`'s shard files."""
  os.remove(os.path.join(directory, WEIGHTS))
  index = os.path.join(directory, INDEX)
  with open(index, 'w') as f:
    json.dump({'metadata': {}, 'weight_map': weight_map}, f)
  return index


def test_shards_inside_the_directory_load(hf_dir, copy):
  tensors = safetensors.numpy.load_file(os.path.join(copy, WEIGHTS))
  names = sorted(tensors)
  os.makedirs(os.path.join(copy, 'shards'))
  for i, part in enumerate((names[::2], names[1::2])):
    safetensors.numpy.save_file({n: tensors[n] for n in part}, os.path.join(copy, 'shards', f'{i}.safetensors'))
  shard(copy, {n: f'shards/{i % 2}.safetensors' for i, n in enumerate(names)})
  np.testing.assert_array_equal(load_params(copy)['cls'], load_params(hf_dir)['cls'])


@pytest.mark.parametrize('how', ['dotdot', 'absolute', 'symlink', 'symlinked_single_file', 'not_a_string'])
def test_shard_paths_outside_the_directory_are_refused(copy, tmp_path, how):
  outside = str(tmp_path / 'outside.safetensors')
  shutil.copy(os.path.join(copy, WEIGHTS), outside)
  if how == 'symlinked_single_file':
    os.remove(os.path.join(copy, WEIGHTS))
    os.symlink(outside, os.path.join(copy, WEIGHTS))
    named, listed = WEIGHTS, copy
  else:
    names = {'dotdot': '../outside.safetensors', 'absolute': outside, 'symlink': 'link.safetensors',
             'not_a_string': ['a.safetensors']}
    if how == 'symlink':
      os.symlink(outside, os.path.join(copy, 'link.safetensors'))
    named = names[how]
    listed = shard(copy, {'vivit.embeddings.cls_token': named})
  with pytest.raises(CheckpointError, match=re.escape(listed)) as error:
    load_params(copy)
  assert repr(named) in str(error.value)
  assert 'refusing to read it' in str(error.value) or how == 'not_a_string'


def test_the_hub_cache_layout_reads_its_blobs(hf_dir, tmp_path):
  """snapshots/<revision>/ holds symlinks into the repository's blobs/, as huggingface_hub downloads them."""
  repo = tmp_path / 'models--someone--vivit'
  snapshot = repo / 'snapshots' / 'abc123'
  os.makedirs(repo / 'blobs')
  os.makedirs(snapshot)
  for name in os.listdir(hf_dir):
    shutil.copy(os.path.join(hf_dir, name), repo / 'blobs' / f'sha-{name}')
    os.symlink(os.path.join('..', '..', 'blobs', f'sha-{name}'), snapshot / name)
  np.testing.assert_array_equal(load_params(str(snapshot))['cls'], load_params(hf_dir)['cls'])
