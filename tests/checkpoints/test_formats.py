"""load_params, detect_format, load_metadata, check_params_fit and the writers, on a tiny ViViT and a tiny ViT."""

import json
import os

import jax
import msgpack
import numpy as np
import optax
import pytest
from flax import serialization, traverse_util

from tests.tiny import randomise, tiny_config
from vivit_jax.checkpoints import (CheckpointError, CheckpointManager, check_params_fit, detect_format,
                                   load_metadata, load_params, save_scenic, save_vivit_jax)
from vivit_jax.checkpoints.formats import vit_npz
from vivit_jax.models import create_model
from vivit_jax.train.state import TrainState

VIDEO_SHAPE = (1, 8, 16, 16, 3)
METADATA = {'config': {'model': {'hidden_size': 12}}, 'preprocessing': {'num_frames': 8, 'crop_size': 16}}


@pytest.fixture(scope='module')
def tiny():
  """(apply: params -> logits, randomised params as numpy, their logits, other params, abstract params)."""
  model = create_model(tiny_config('spacetime'))
  init = lambda: model.init(jax.random.PRNGKey(0), np.zeros(VIDEO_SHAPE, np.float32), train=False)['params']
  abstract = jax.eval_shape(init)
  params = jax.tree.map(np.asarray, randomise(init(), seed=1))
  other = jax.tree.map(np.asarray, randomise(abstract, seed=2))
  video = np.random.default_rng(0).uniform(-1, 1, VIDEO_SHAPE).astype(np.float32)
  apply = jax.jit(lambda p: model.apply({'params': p}, video, train=False))
  return apply, params, np.asarray(apply(params)), other, abstract


def flat(tree):
  return traverse_util.flatten_dict(tree, sep='/')


def assert_same_tree(loaded, expected):
  """Same paths, and each leaf a numpy array equal to the expected one, with its dtype."""
  loaded, expected = flat(loaded), flat(expected)
  assert sorted(loaded) == sorted(expected)
  for path, value in expected.items():
    assert isinstance(loaded[path], np.ndarray), path
    assert loaded[path].dtype == np.asarray(value).dtype, path
    np.testing.assert_array_equal(loaded[path], value, err_msg=path)


def assert_same_logits(tiny, loaded):
  apply, params, logits, _, _ = tiny
  assert_same_tree(loaded, params)
  np.testing.assert_array_equal(np.asarray(apply(loaded)), logits)


# ------------------------------------------------------------------------------------------------- Scenic


@pytest.mark.parametrize('layout', ['optax', 'flax_optim'])
def test_scenic_file_round_trip(tiny, tmp_path, layout):
  path = str(tmp_path / 'checkpoint')
  save_scenic(path, tiny[1], step=7, layout=layout)
  with open(path, 'rb') as f:
    state = serialization.msgpack_restore(f.read())
  assert int(state['global_step']) == 7
  assert ('params' in state) == (layout == 'optax')
  assert ('optimizer' in state) == (layout == 'flax_optim')
  assert detect_format(path) == 'scenic'
  assert_same_logits(tiny, load_params(path))
  assert_same_logits(tiny, load_params(path, format='scenic'))
  assert load_metadata(path) is None


def test_scenic_directory_reads_newest_step(tiny, tmp_path):
  save_scenic(str(tmp_path), tiny[3], step=5)
  save_scenic(str(tmp_path), tiny[1], step=10, layout='flax_optim')
  save_scenic(str(tmp_path), tiny[3], step=9)
  (tmp_path / 'checkpoint').write_text('model_checkpoint_path: "ckpt-1"\n')  # A TensorFlow index: ignored.
  (tmp_path / 'checkpoint_11tmp').write_bytes(b'\x81')  # Not a checkpoint_<step> name: ignored.
  assert sorted(os.listdir(tmp_path))[:3] == ['checkpoint', 'checkpoint_10', 'checkpoint_11tmp']
  assert detect_format(str(tmp_path)) == 'scenic'
  assert_same_logits(tiny, load_params(str(tmp_path)))
  assert_same_tree(load_params(str(tmp_path / 'checkpoint_5')), tiny[3])


def test_scenic_zoo_directory_and_other_state_layouts(tiny, tmp_path):
  zoo = tmp_path / 'zoo'
  save_scenic(str(zoo / 'checkpoint'), tiny[1], layout='flax_optim')
  assert detect_format(str(zoo)) == 'scenic'
  assert_same_logits(tiny, load_params(str(zoo)))
  states = {'big_vision': {'opt': {'target': tiny[1]}, 'step': 3},
            'linen_variables': {'optimizer': {'target': {'params': tiny[1]}}},
            'bare': tiny[1]}
  for name, state in states.items():
    path = tmp_path / name
    path.write_bytes(serialization.msgpack_serialize(state))
    assert detect_format(str(path)) == 'scenic', name
    assert_same_logits(tiny, load_params(str(path)))


def test_scenic_without_params_names_what_was_looked_for(tmp_path):
  path = tmp_path / 'checkpoint_1'
  path.write_bytes(serialization.msgpack_serialize({'global_step': 1, 'rng': np.zeros(2, np.uint32)}))
  with pytest.raises(CheckpointError, match=r'checkpoint_1.*optimizer/target.*global_step'):
    load_params(str(path))


def test_msgpack_with_object_or_unknown_types_is_refused(tmp_path):
  object_array = msgpack.ExtType(1, msgpack.packb(((1,), 'object', b'\0' * 8), use_bin_type=True))
  unknown = msgpack.ExtType(42, b'\x80\x04payload')
  for leaf, message in ((object_array, 'OBJECT array'), (unknown, 'embedding/kernel has dtype')):
    path = tmp_path / 'checkpoint'
    path.write_bytes(msgpack.packb({'params': {'embedding': {'kernel': leaf}}}, use_bin_type=True))
    with pytest.raises(CheckpointError, match=message):
      load_params(str(path))


# ------------------------------------------------------------------------------------------------- vivit_jax


@pytest.fixture(scope='module')
def workdir(tiny, tmp_path_factory):
  """A workdir with step 1 (the other params, no metadata) and step 3 (the params, METADATA)."""
  path = str(tmp_path_factory.mktemp('workdir'))
  save_vivit_jax(path, tiny[3], {}, step=1)
  save_vivit_jax(path, tiny[1], METADATA, step=3)
  os.makedirs(os.path.join(path, 'checkpoints', '4.orbax-checkpoint-tmp-123', 'state'))  # Unfinished save.
  return path


@pytest.mark.parametrize('where', ['workdir', 'checkpoints', 'checkpoints/3'])
def test_vivit_jax_round_trip(tiny, workdir, where):
  path = workdir if where == 'workdir' else os.path.join(workdir, where)
  assert detect_format(path) == 'vivit_jax'
  assert_same_logits(tiny, load_params(path))
  assert load_metadata(path) == METADATA


def test_vivit_jax_step_directory_reads_that_step(tiny, workdir):
  step_1 = os.path.join(workdir, 'checkpoints', '1')
  assert_same_tree(load_params(step_1, format='vivit_jax'), tiny[3])
  assert load_metadata(step_1) == {}


def test_vivit_jax_training_state_gives_params_not_ema(tiny, tmp_path):
  params = jax.tree.map(jax.numpy.asarray, tiny[1])
  tx = optax.sgd(0.1, momentum=0.9)
  state = TrainState(step=jax.numpy.asarray(2, jax.numpy.int32), params=params, opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(3), ema_params=jax.tree.map(lambda x: x * 2, params))
  with CheckpointManager(str(tmp_path), async_save=False) as manager:
    manager.save(2, state, METADATA, force=True)
  assert_same_logits(tiny, load_params(str(tmp_path)))


def test_save_vivit_jax_never_overwrites(tiny, workdir):
  with pytest.raises(CheckpointError, match='already exists'):
    save_vivit_jax(workdir, tiny[3], {}, step=3)
  assert_same_tree(load_params(workdir), tiny[1])


def test_vivit_jax_workdir_without_steps(tmp_path):
  (tmp_path / 'checkpoints').mkdir()
  assert detect_format(str(tmp_path)) == 'vivit_jax'
  with pytest.raises(CheckpointError, match=f'{tmp_path}.*no step directories'):
    load_params(str(tmp_path))


# ------------------------------------------------------------------------------------------------- .npz


def tiny_vit_flat(rng, pre_linen=True, layers=2, d=12, heads=2, mlp=24, grid=16, classes=10):
  """The flat '/'-keyed arrays of a tiny image ViT (patch 4 on 16x16 images, [cls] token, pre_logits)."""
  names = (('LayerNorm_0', 'MultiHeadDotProductAttention_1', 'LayerNorm_2', 'MlpBlock_3') if pre_linen else
           ('LayerNorm_0', 'MultiHeadDotProductAttention_0', 'LayerNorm_1', 'MlpBlock_0'))
  shapes = {'embedding/kernel': (4, 4, 3, d), 'embedding/bias': (d,), 'cls': (1, 1, d),
            'Transformer/posembed_input/pos_embedding': (1, 1 + grid, d),
            'Transformer/encoder_norm/scale': (d,), 'Transformer/encoder_norm/bias': (d,),
            'pre_logits/kernel': (d, d), 'pre_logits/bias': (d,), 'head/kernel': (d, classes),
            'head/bias': (classes,)}
  for i in range(layers):
    block = f'Transformer/encoderblock_{i}'
    for norm in (names[0], names[2]):
      shapes.update({f'{block}/{norm}/scale': (d,), f'{block}/{norm}/bias': (d,)})
    for proj in ('query', 'key', 'value'):
      shapes.update({f'{block}/{names[1]}/{proj}/kernel': (d, heads, d // heads),
                     f'{block}/{names[1]}/{proj}/bias': (heads, d // heads)})
    shapes.update({f'{block}/{names[1]}/out/kernel': (heads, d // heads, d), f'{block}/{names[1]}/out/bias': (d,),
                   f'{block}/{names[3]}/Dense_0/kernel': (d, mlp), f'{block}/{names[3]}/Dense_0/bias': (mlp,),
                   f'{block}/{names[3]}/Dense_1/kernel': (mlp, d), f'{block}/{names[3]}/Dense_1/bias': (d,)})
  return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def test_original_vit_npz(tiny, tmp_path):
  flat_vit = tiny_vit_flat(np.random.default_rng(0))
  path = str(tmp_path / 'ViT-Ti_4.npz')
  np.savez(path, **flat_vit)
  assert detect_format(path) == 'vit_npz'
  loaded = load_params(path)
  assert_same_tree(loaded, traverse_util.unflatten_dict(flat_vit, sep='/'))
  assert set(loaded['Transformer']['encoderblock_1']) == {
      'LayerNorm_0', 'MultiHeadDotProductAttention_1', 'LayerNorm_2', 'MlpBlock_3'}
  assert set(load_params(path, format='big_vision')) == set(loaded)  # One reader for both .npz flavours.
  # Renumbered, a ViT block has exactly the paths and shapes of a ViViT block of the same width.
  linen = vit_npz.convert_pre_linen(loaded)
  vivit_block = tiny[4]['Transformer']['encoderblock_0']
  check_params_fit(linen['Transformer']['encoderblock_0'], vivit_block, source=path)
  assert vit_npz.convert_pre_linen(linen) == linen


def test_big_vision_npz_of_a_vivit_with_params_prefix(tiny, tmp_path):
  path = str(tmp_path / 'bv.npz')
  arrays = {f'params/{k}': v for k, v in flat(tiny[1]).items()}
  arrays.update({f'opt/state/mu/{k}': v * 0 for k, v in flat(tiny[1]).items()})  # Other state: not params.
  np.savez(path, **arrays)
  assert detect_format(path) == 'big_vision'
  assert_same_logits(tiny, load_params(path))


def test_big_vision_vit_layout_is_normalised(tmp_path):
  """opt/target prefix, Linen names, scanned blocks and a top-level posemb without the [cls] row."""
  flat_vit = tiny_vit_flat(np.random.default_rng(1), pre_linen=False)
  posemb = flat_vit.pop('Transformer/posembed_input/pos_embedding')[:, 1:]  # big_vision: grid rows only.
  blocks = [{k.split('/', 2)[2]: v for k, v in flat_vit.items() if k.startswith(f'Transformer/encoderblock_{i}/')}
            for i in range(2)]
  arrays = {f'opt/target/{k}': v for k, v in flat_vit.items() if '/encoderblock_' not in k}
  arrays.update({f'opt/target/Transformer/encoderblock/{k}': np.stack([b[k] for b in blocks]) for k in blocks[0]})
  arrays['opt/target/pos_embedding'] = posemb
  arrays['opt/state/count'] = np.asarray(5)
  path = str(tmp_path / 'bv_vit.npz')
  np.savez(path, **arrays)
  assert detect_format(path) == 'big_vision'
  loaded = load_params(path)
  expected = dict(flat_vit)
  expected['Transformer/posembed_input/pos_embedding'] = np.concatenate([np.zeros((1, 1, 12), np.float32),
                                                                         posemb], axis=1)
  assert_same_tree(loaded, traverse_util.unflatten_dict(expected, sep='/'))


class _Payload:
  """Unpickling this would create `path`."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (open, (self.path, 'w'))


def test_pickled_arrays_are_refused_without_running_them(tmp_path):
  marker = tmp_path / 'unpickled'
  evil = np.empty(1, dtype=object)
  evil[0] = _Payload(str(marker))
  npz = str(tmp_path / 'evil.npz')
  np.savez(npz, **{'embedding/kernel': evil, 'cls': np.zeros((1, 1, 4), np.float32)})
  npy = str(tmp_path / 'evil.npy')
  np.save(npy, evil, allow_pickle=True)
  for fmt in ('auto', 'vit_npz', 'big_vision'):
    with pytest.raises(CheckpointError, match=r'evil\.npz.*embedding/kernel.*unpickling'):
      load_params(npz, format=fmt)
  with pytest.raises(CheckpointError, match=r'evil\.npy'):
    load_params(npy)
  with pytest.raises(CheckpointError, match=r'evil\.npy.*not an \.npz'):
    load_params(npy, format='vit_npz')
  assert not marker.exists()


# ------------------------------------------------------------------------------------------------- errors


def test_missing_garbage_and_unknown_paths_are_named(tiny, tmp_path):
  missing = str(tmp_path / 'nowhere')
  for call in (detect_format, load_params, load_metadata):
    with pytest.raises(CheckpointError, match=f'{missing}.*no such file'):
      call(missing)
  garbage = tmp_path / 'garbage.bin'
  garbage.write_bytes(b'hello, not a checkpoint' * 10)
  with pytest.raises(CheckpointError, match=r'garbage\.bin.*looked for'):
    load_params(str(garbage))
  with pytest.raises(CheckpointError, match=r'garbage\.bin.*not a readable Flax msgpack'):
    load_params(str(garbage), format='scenic')
  truncated = tmp_path / 'checkpoint'
  save_scenic(str(truncated), tiny[1])
  truncated.write_bytes(truncated.read_bytes()[:1000])
  with pytest.raises(CheckpointError, match=f'{truncated}.*not a readable Flax msgpack'):
    load_params(str(truncated))
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(CheckpointError, match=f'{empty}.*looked for.*Scenic msgpack'):
    load_params(str(empty))
  with pytest.raises(CheckpointError, match=f'No Scenic checkpoint in {empty}'):
    load_params(str(empty), format='scenic')
  with pytest.raises(ValueError, match="format must be 'auto' or one of"):
    load_params(str(truncated), format='pickle')


def test_huggingface_directory_is_detected(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  (tmp_path / 'config.json').write_text(json.dumps({'model_type': 'vivit',
                                                    'architectures': ['VivitForVideoClassification']}))
  save_file({'vivit.embeddings.cls_token': np.zeros((1, 1, 12), np.float32)}, str(tmp_path / 'model.safetensors'))
  assert detect_format(str(tmp_path)) == 'huggingface'
  assert detect_format(str(tmp_path / 'model.safetensors')) == 'huggingface'
  assert load_metadata(str(tmp_path)) is None


def test_check_params_fit_lists_every_difference(tiny):
  _, params, _, _, abstract = tiny
  check_params_fit(params, abstract, source='ok')
  bad = flat(params)
  del bad['Transformer/encoder_norm/scale']
  bad['Transformer/extra/kernel'] = np.zeros((3, 4), np.float32)
  bad['output_projection/kernel'] = np.zeros((12, 7), np.float32)
  with pytest.raises(CheckpointError) as error:
    check_params_fit(traverse_util.unflatten_dict(bad, sep='/'), abstract, source='/ckpts/k400')
  message = str(error.value)
  assert '/ckpts/k400' in message and '3 problems' in message
  assert 'shape mismatch: output_projection/kernel: checkpoint (12, 7), model (12, 5)' in message
  assert 'missing from the checkpoint (model only): Transformer/encoder_norm/scale (12,)' in message
  assert 'unexpected in the checkpoint (not in the model): Transformer/extra/kernel (3, 4)' in message
