"""`init_from_pretrained`: kernel inflation, posemb surgery, every variant from a hand-built tiny image ViT,
ViViT to ViViT across frame counts, the flags, the report, mismatch errors and the trainer's `init_from`."""

import jax
import numpy as np
import pytest
import scipy.ndimage
from flax import traverse_util

from tests.tiny import randomise, tiny_config
from tests.train_testing import assert_trees_equal, host_tree, train_config
from vivit_jax.train import state as state_lib
from vivit_jax import train
from vivit_jax.checkpoints import (CheckpointManager, PretrainedMismatchError, inflate_kernel,
                                   init_from_pretrained, init_from_pretrained_with_report, load_params,
                                   save_scenic, save_vivit_jax)
from vivit_jax.checkpoints import pretrained_posemb as posemb_lib
from vivit_jax.models import create_model
from vivit_jax.models.complexity import abstract_params
from vivit_jax.models.shapes import input_shape
from vivit_jax.models.embedding import arp_coefficients

D, HEADS, MLP, GRID = 12, 2, 24, 4  # Tiny image ViT: patch 4 on 16x16 images -> 4x4 patches.
CENTRAL = dict(model__temporal_encoding_config__kernel_init_method='central_frame_initializer')


def flat(tree):
  return traverse_util.flatten_dict(tree, sep='/')


def image_vit(pre_linen=False, classifier='token', head='head', representation=None, hidden=D, seed=0):
  """A tiny image ViT params tree as `load_params` returns it (random values)."""
  rng = np.random.default_rng(seed)
  arr = lambda *shape: rng.standard_normal(shape).astype(np.float32)
  ln0, attn, ln1, mlp = (('LayerNorm_0', 'MultiHeadDotProductAttention_1', 'LayerNorm_2', 'MlpBlock_3')
                         if pre_linen else
                         ('LayerNorm_0', 'MultiHeadDotProductAttention_0', 'LayerNorm_1', 'MlpBlock_0'))
  dh = hidden // HEADS
  dense = lambda a, b: {'kernel': arr(a, b), 'bias': arr(b)}
  qkv = {'kernel': arr(hidden, HEADS, dh), 'bias': arr(HEADS, dh)}

  def block():
    return {ln0: {'scale': arr(hidden), 'bias': arr(hidden)},
            attn: {'query': dict(qkv), 'key': {'kernel': arr(hidden, HEADS, dh), 'bias': arr(HEADS, dh)},
                   'value': {'kernel': arr(hidden, HEADS, dh), 'bias': arr(HEADS, dh)},
                   'out': {'kernel': arr(HEADS, dh, hidden), 'bias': arr(hidden)}},
            ln1: {'scale': arr(hidden), 'bias': arr(hidden)},
            mlp: {'Dense_0': dense(hidden, MLP), 'Dense_1': dense(MLP, hidden)}}

  cls = 1 if classifier == 'token' else 0
  tree = {'embedding': {'kernel': arr(4, 4, 3, hidden), 'bias': arr(hidden)},
          'Transformer': {'posembed_input': {'pos_embedding': arr(1, cls + GRID * GRID, hidden)},
                          'encoderblock_0': block(), 'encoderblock_1': block(),
                          'encoder_norm': {'scale': arr(hidden), 'bias': arr(hidden)}},
          head: dense(representation or hidden, 7)}
  if cls:
    tree['cls'] = arr(1, 1, hidden)
  if representation:
    tree['pre_logits'] = dense(hidden, representation)
  return tree


def fresh_params(config, seed=5):
  abstract = abstract_params(create_model(config), input_shape(config))
  return jax.tree.map(np.asarray, randomise(abstract, seed))


def linen_block(source, i):
  return flat(source['Transformer'][f'encoderblock_{i}'])


# ---------------------------------------------------------------------------------------------- inflation


@pytest.mark.parametrize('method', ['central_frame_initializer', 'average_frame_initializer',
                                    'average_arp_frame_initializer'])
def test_inflation_methods(method):
  kernel = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4) - 20
  out = inflate_kernel(kernel, 3, method)
  assert out.shape == (3, 2, 2, 3, 4) and out.dtype == np.float32
  for i in range(3):
    if method == 'central_frame_initializer':
      np.testing.assert_array_equal(out[i], kernel if i == 1 else 0)
    elif method == 'average_frame_initializer':
      np.testing.assert_allclose(out[i], kernel / 3, rtol=1e-6)
    else:
      np.testing.assert_allclose(out[i], kernel * arp_coefficients(3)[i] / 3, rtol=1e-6)
  with pytest.raises(ValueError, match='kernel_init_method'):
    inflate_kernel(kernel, 3, None)


# ---------------------------------------------------------------------------------------------- posemb


def table(rows, d=2, seed=0):
  return np.random.default_rng(seed).standard_normal((1, rows, d)).astype(np.float32)


def adapt(source, target, method='tile', source_cls=False, target_cls=False, hw=(2, 2), per_frame=True):
  return posemb_lib.adapt_posemb(source, target, source_cls=source_cls, target_cls=target_cls, target_hw=hw,
                                 method=method, per_frame=per_frame, source_grid=None, where='test')[0]


def test_tile_repeats_the_frame_table_over_time():
  source = table(4)
  out = adapt(source, table(12))
  np.testing.assert_array_equal(out[0], np.concatenate([source[0]] * 3))


@pytest.mark.parametrize('method', ['resize', 'resize_tile'])
def test_image_resize_is_per_axis_zoom_then_repeat(method):
  source = table(4)  # 2x2 grid -> 3x3 grid over 2 frames.
  out = adapt(source, table(18), method, hw=(3, 3))
  grid = source[0].reshape(2, 2, 2)
  zoomed = scipy.ndimage.zoom(scipy.ndimage.zoom(grid, (1.5, 1, 1), order=1), (1, 1.5, 1), order=1)
  np.testing.assert_allclose(out[0].reshape(2, 3, 3, 2), np.stack([zoomed] * 2), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(zoomed[0, 0], grid[0, 0])  # Corner-aligned: the corners stay.
  np.testing.assert_allclose(zoomed[2, 2], grid[1, 1], rtol=1e-6)


def test_video_resize_zooms_time_and_resize_tile_tiles_it():
  source = table(8)  # 2 frames of 2x2 -> 4 frames of 2x2.
  grid = source[0].reshape(2, 2, 2, 2)
  out = adapt(source, table(16), 'resize', per_frame=False)
  np.testing.assert_allclose(out[0].reshape(4, 2, 2, 2), scipy.ndimage.zoom(grid, (2, 1, 1, 1), order=1),
                             rtol=1e-6)
  out = adapt(source, table(16), 'resize_tile', per_frame=False)
  np.testing.assert_array_equal(out[0].reshape(4, 2, 2, 2), np.concatenate([grid, grid]))


def test_tile_refuses_a_spatial_change():
  with pytest.raises(ValueError, match='resize'):
    adapt(table(4), table(18), 'tile', hw=(3, 3))


def test_cls_rows_for_every_classifier_pair():
  source, target = table(5), table(9)
  out = adapt(source, target, source_cls=True, target_cls=True)  # token -> token: the source's row.
  np.testing.assert_array_equal(out[0, 0], source[0, 0])
  np.testing.assert_array_equal(out[0, 1:], np.concatenate([source[0, 1:]] * 2))
  out = adapt(source, table(8), source_cls=True, target_cls=False)  # token -> gap: dropped.
  np.testing.assert_array_equal(out[0], np.concatenate([source[0, 1:]] * 2))
  out = adapt(source[:, 1:], target, source_cls=False, target_cls=True)  # gap -> token: the target's row.
  np.testing.assert_array_equal(out[0, 0], target[0, 0])
  np.testing.assert_array_equal(out[0, 1:], np.concatenate([source[0, 1:]] * 2))


def test_temporal_table_resizes_in_1d():
  source = table(5)  # CLS + 4 frames -> CLS + 8 frames.
  out, _ = posemb_lib.adapt_temporal_posemb(source, table(9), source_cls=True, target_cls=True, where='t')
  np.testing.assert_array_equal(out[0, 0], source[0, 0])
  np.testing.assert_allclose(out[0, 1:], scipy.ndimage.zoom(source[0, 1:], (2, 1), order=1), rtol=1e-6)


# ---------------------------------------------------------------------------------------------- variants


FE = {'model__spatial_transformer__num_layers': 2}
VARIANTS = [('spacetime', {}), ('factorized_encoder', FE),
            ('factorized_encoder', {**FE, 'model__attention_config__spatial_only_baseline': True}),
            ('factorized_self_attention_block', {}), ('factorized_dot_product_attention', {})]


@pytest.mark.parametrize('kind,extra', VARIANTS)
@pytest.mark.parametrize('pre_linen', [False, True])
def test_every_variant_from_an_image_vit(kind, extra, pre_linen):
  config = tiny_config(kind, **CENTRAL, **extra)
  source, fresh = image_vit(pre_linen=pre_linen), fresh_params(config)
  linen = image_vit(pre_linen=False)  # The same values under Linen names.
  out, report = init_from_pretrained_with_report(fresh, source, config, log=None)
  assert jax.tree.map(lambda x: (x.shape, x.dtype), out) == jax.tree.map(lambda x: (x.shape, x.dtype), fresh)
  got, src, new = flat(out), flat(linen), flat(fresh)
  np.testing.assert_array_equal(got['embedding/kernel'][1], src['embedding/kernel'])
  np.testing.assert_array_equal(got['embedding/kernel'][0], 0)
  np.testing.assert_array_equal(got['embedding/bias'], src['embedding/bias'])
  for key in ('output_projection/kernel', 'output_projection/bias'):
    np.testing.assert_array_equal(got[key], new[key])
    assert report.status(key) == 'fresh'
  grid = src['Transformer/posembed_input/pos_embedding'][0, 1:]
  if kind == 'factorized_encoder':
    np.testing.assert_array_equal(got['cls_SpatialTransformer'], src['cls'])
    np.testing.assert_array_equal(got['SpatialTransformer/posembed_input/pos_embedding'],
                                  src['Transformer/posembed_input/pos_embedding'])
    for i in range(2):
      assert_trees_equal(out['SpatialTransformer'][f'encoderblock_{i}'], linen['Transformer'][f'encoderblock_{i}'])
    temporal = [k for k in new if k.startswith(('TemporalTransformer/', 'cls_TemporalTransformer'))]
    assert bool(temporal) != ('model__attention_config__spatial_only_baseline' in extra)
    for key in temporal:
      np.testing.assert_array_equal(got[key], new[key])
      assert report.status(key) == 'fresh'
    return
  posemb = got['Transformer/posembed_input/pos_embedding'][0]
  if kind == 'spacetime':
    np.testing.assert_array_equal(got['cls'], src['cls'])
    np.testing.assert_array_equal(posemb[0], src['Transformer/posembed_input/pos_embedding'][0, 0])
    posemb = posemb[1:]
  np.testing.assert_array_equal(posemb, np.concatenate([grid] * 4))  # 8 frames / tubelet 2: tiled 4 times.
  np.testing.assert_array_equal(got['Transformer/encoder_norm/scale'], src['Transformer/encoder_norm/scale'])
  for i in range(2):
    block, image = flat(out['Transformer'][f'encoderblock_{i}']), linen_block(linen, i)
    if kind != 'factorized_self_attention_block':
      assert block.keys() == image.keys()
      for key in block:
        np.testing.assert_array_equal(block[key], image[key])
      continue
    for target, origin in (('MultiHeadDotProductAttention_space', 'MultiHeadDotProductAttention_0'),
                           ('MultiHeadDotProductAttention_time', 'MultiHeadDotProductAttention_0'),
                           ('LayerNorm_space', 'LayerNorm_0'), ('LayerNorm_time', 'LayerNorm_0'),
                           ('LayerNorm_mlp', 'LayerNorm_1'), ('MlpBlock', 'MlpBlock_0')):
      for key in block:
        if key.startswith(target + '/'):
          np.testing.assert_array_equal(block[key], image[origin + key[len(target):]], err_msg=key)


def test_pre_logits_and_head_handling():
  source = image_vit(pre_linen=True, head='head', representation=6)
  config = tiny_config('spacetime', **CENTRAL, model__representation_size=6, num_classes=7,
                       init_from__restore_output_projection=True)
  out, report = init_from_pretrained_with_report(fresh_params(config), source, config, log=None)
  np.testing.assert_array_equal(out['pre_logits']['kernel'], source['pre_logits']['kernel'])
  np.testing.assert_array_equal(out['output_projection']['kernel'], source['head']['kernel'])
  assert report.entry('output_projection/kernel').source == 'output_projection/kernel'
  config = tiny_config('spacetime', **CENTRAL)  # No pre-logits in the target: the source's are dropped.
  _, report = init_from_pretrained_with_report(fresh_params(config), source, config, log=None)
  assert 'pre_logits/kernel' in report.unused and 'output_projection/kernel' in report.unused


def test_gap_image_vit_to_token_target_keeps_the_fresh_cls():
  config = tiny_config('spacetime', **CENTRAL, init_from__model_config__model__classifier='gap')
  source, fresh = image_vit(classifier='gap'), fresh_params(config)
  out = init_from_pretrained(fresh, source, config, log=None)
  np.testing.assert_array_equal(out['cls'], fresh['cls'])
  posemb = out['Transformer']['posembed_input']['pos_embedding'][0]
  np.testing.assert_array_equal(posemb[0], fresh['Transformer']['posembed_input']['pos_embedding'][0, 0])
  np.testing.assert_array_equal(posemb[1:17], source['Transformer']['posembed_input']['pos_embedding'][0])


def test_model3_flags_keep_time_or_space_fresh():
  source = image_vit()
  config = tiny_config('factorized_self_attention_block', **CENTRAL, init_from__init_temporal_transformer=False)
  fresh = fresh_params(config)
  out, report = init_from_pretrained_with_report(fresh, source, config, log=None)
  block, new = out['Transformer']['encoderblock_0'], fresh['Transformer']['encoderblock_0']
  assert_trees_equal(block['MultiHeadDotProductAttention_time'], new['MultiHeadDotProductAttention_time'])
  assert_trees_equal(block['LayerNorm_time'], new['LayerNorm_time'])
  assert_trees_equal(block['MultiHeadDotProductAttention_space'],
                     source['Transformer']['encoderblock_0']['MultiHeadDotProductAttention_0'])
  assert 'init_temporal_transformer=False' in report.entry(
      'Transformer/encoderblock_0/LayerNorm_time/scale').how
  config = tiny_config('factorized_self_attention_block', **CENTRAL, init_from__init_spatial_transformer=False)
  out = init_from_pretrained(fresh, source, config, log=None)
  assert_trees_equal(out['Transformer']['encoderblock_0']['MultiHeadDotProductAttention_space'],
                     new['MultiHeadDotProductAttention_space'])
  assert_trees_equal(out['Transformer']['encoderblock_0']['LayerNorm_time'],
                     source['Transformer']['encoderblock_0']['LayerNorm_0'])


def test_fe_init_spatial_transformer_false_keeps_the_spatial_blocks_fresh():
  config = tiny_config('factorized_encoder', **CENTRAL, init_from__init_spatial_transformer=False)
  fresh = fresh_params(config)
  out = init_from_pretrained(fresh, image_vit(), config, log=None)
  assert_trees_equal(out['SpatialTransformer']['encoderblock_0'], fresh['SpatialTransformer']['encoderblock_0'])
  np.testing.assert_array_equal(out['embedding']['bias'], image_vit()['embedding']['bias'])


# ---------------------------------------------------------------------------------------------- ViViT sources


@pytest.mark.parametrize('method', ['tile', 'resize'])
def test_vivit_fe_8_to_16_frames(method):
  source_config = tiny_config('factorized_encoder')
  source = fresh_params(source_config, seed=11)
  config = tiny_config('factorized_encoder', dataset_configs__num_frames=16,
                       init_from__positional_embed_size_change=method)
  out, report = init_from_pretrained_with_report(fresh_params(config), source, config, log=None)
  for name in ('SpatialTransformer', 'embedding', 'cls_SpatialTransformer', 'cls_TemporalTransformer'):
    assert_trees_equal(out[name], source[name])
  assert_trees_equal(out['TemporalTransformer']['encoderblock_0'], source['TemporalTransformer']['encoderblock_0'])
  old = source['TemporalTransformer']['posembed_input']['pos_embedding']  # CLS + 4 frames -> CLS + 8.
  new = out['TemporalTransformer']['posembed_input']['pos_embedding']
  np.testing.assert_array_equal(new[0, 0], old[0, 0])
  np.testing.assert_allclose(new[0, 1:], scipy.ndimage.zoom(old[0, 1:], (2, 1), order=1), rtol=1e-6)
  assert report.status('TemporalTransformer/posembed_input/pos_embedding') == 'adapted'


@pytest.mark.parametrize('method', ['tile', 'resize'])
def test_vivit_spacetime_8_to_16_frames(method):
  source = fresh_params(tiny_config('factorized_dot_product_attention'), seed=11)
  config = tiny_config('factorized_dot_product_attention', dataset_configs__num_frames=16,
                       init_from__positional_embed_size_change=method)
  out = init_from_pretrained(fresh_params(config), source, config, log=None)
  assert_trees_equal(out['Transformer']['encoderblock_1'], source['Transformer']['encoderblock_1'])
  grid = source['Transformer']['posembed_input']['pos_embedding'][0].reshape(4, 4, 4, D)
  want = (np.concatenate([grid, grid]) if method == 'tile' else
          scipy.ndimage.zoom(grid, (2, 1, 1, 1), order=1))
  np.testing.assert_allclose(out['Transformer']['posembed_input']['pos_embedding'][0].reshape(8, 4, 4, D),
                             want, rtol=1e-6)


def test_same_model_copies_everything_but_the_head_unless_asked():
  config = tiny_config('factorized_self_attention_block')
  source, fresh = fresh_params(config, seed=3), fresh_params(config)
  out, report = init_from_pretrained_with_report(fresh, source, config, log=None)
  assert_trees_equal({k: v for k, v in out.items() if k != 'output_projection'},
                     {k: v for k, v in source.items() if k != 'output_projection'})
  assert_trees_equal(out['output_projection'], fresh['output_projection'])
  assert not report.adapted and len(report.fresh) == 2
  config = tiny_config('factorized_self_attention_block', init_from__restore_output_projection=True)
  assert_trees_equal(init_from_pretrained(fresh, source, config, log=None), source)


# ---------------------------------------------------------------------------------------------- report, errors


def test_report_lists_loaded_adapted_and_fresh():
  config = tiny_config('spacetime', **CENTRAL)
  lines = []
  _, report = init_from_pretrained_with_report(fresh_params(config), image_vit(representation=6), config,
                                               log=lines.append)
  assert report.status('Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel') == 'loaded'
  kernel = report.entry('embedding/kernel')
  assert (kernel.old_shape, kernel.new_shape) == ((4, 4, 3, D), (2, 4, 4, 3, D))
  assert 'central_frame_initializer' in kernel.how
  posemb = report.entry('Transformer/posembed_input/pos_embedding')
  assert report.status(posemb.path) == 'adapted' and posemb.old_shape == (1, 17, D)
  assert posemb.new_shape == (1, 65, D) and 'tile' in posemb.how
  assert 'restore_output_projection=False' in report.entry('output_projection/kernel').how
  assert 'pre_logits/kernel' in report.unused and 'head/kernel' not in report.unused
  text = lines[0]
  assert text == report.format() and 'adapted: embedding/kernel <- embedding/kernel (4, 4, 3, 12) ->' in text
  assert 'fresh: output_projection/bias' in text


def test_hidden_size_mismatch_is_an_error_naming_the_paths():
  config = tiny_config('spacetime', **CENTRAL)
  with pytest.raises(PretrainedMismatchError) as error:
    init_from_pretrained(fresh_params(config), image_vit(hidden=16), config, log=None)
  message = str(error.value)
  assert 'embedding/kernel' in message and '(4, 4, 3, 16)' in message and '(2, 4, 4, 3, 12)' in message
  assert 'Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel' in message and '(16, 24)' in message


def test_patch_size_mismatch_is_an_error():
  config = tiny_config('spacetime', **CENTRAL, model__patches__size=(8, 8, 2))
  with pytest.raises(PretrainedMismatchError, match='patch size'):
    init_from_pretrained(fresh_params(config), image_vit(), config, log=None)


# ---------------------------------------------------------------------------------------------- trainer


def _first_state(config, workdir):
  run = train.setup(config, workdir)
  state, metadata = train.restore_or_initialise(run, CheckpointManager(workdir))
  assert metadata == {} and int(state.step) == 0
  fresh = host_tree(state_lib.create_state(run.init, run.shardings).params)
  return host_tree(state.params), fresh


def test_trainer_initialises_from_a_scenic_image_vit(tmp_path):
  path = str(tmp_path / 'vit_checkpoint')
  save_scenic(path, image_vit(pre_linen=True))
  config = train_config('factorized_encoder', **CENTRAL, init_from__checkpoint_path=path,
                        init_from__checkpoint_format='auto')
  params, fresh = _first_state(config, str(tmp_path / 'target'))
  expected = init_from_pretrained(fresh, load_params(path, 'scenic'), config, log=None)
  assert_trees_equal(params, expected)
  np.testing.assert_array_equal(params['cls_SpatialTransformer'], image_vit()['cls'])


def test_trainer_initialises_from_a_vivit_jax_workdir(tmp_path):
  source_dir = str(tmp_path / 'source')
  config = train_config('factorized_encoder', init_from__checkpoint_path=source_dir,
                        init_from__checkpoint_format='vivit_jax')
  source = fresh_params(config, seed=9)
  save_vivit_jax(source_dir, source, {})
  params, fresh = _first_state(config, str(tmp_path / 'target'))
  assert_trees_equal(params, init_from_pretrained(fresh, source, config, log=None))
  assert_trees_equal(params['TemporalTransformer'], source['TemporalTransformer'])
  assert_trees_equal(params['output_projection'], fresh['output_projection'])
