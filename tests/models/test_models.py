"""The four variants: parameter trees (pinned to Scenic's), shapes, jit/grad, dtypes, train-mode randomness."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tiny import randomise, tiny_config
from vivit_jax.models import create_model

VIDEO = (2, 8, 16, 16, 3)


def flat_shapes(params):
  return {'/'.join(k): tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(params).items()}


def init(config, shape=VIDEO, seed=0):
  """(model, params, video); one compiled initialisation (op by op, it compiles each operation on its own)."""
  model = create_model(config)
  video = jax.random.normal(jax.random.PRNGKey(seed + 1), shape)
  return model, jax.jit(model.init)(jax.random.PRNGKey(seed), video)['params'], video


def param_shapes(config, shape=VIDEO):
  """The parameter tree's shapes, from tracing alone (nothing is compiled)."""
  return flat_shapes(abstract_params_and_logits(config, shape)[0])


def abstract_params_and_logits(config, shape=VIDEO):
  """The parameters and the logits as shapes and dtypes, from tracing alone."""
  model = create_model(config)
  video = jax.ShapeDtypeStruct(shape, jnp.float32)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), video)['params']
  return params, jax.eval_shape(lambda p, v: model.apply({'params': p}, v), params, video)


def block_tree(prefix, attention=('MultiHeadDotProductAttention_0',), norms=('LayerNorm_0', 'LayerNorm_1'),
               mlp='MlpBlock_0', d=12, heads=2, mlp_dim=24):
  tree = {}
  for norm in norms:
    tree.update({f'{prefix}/{norm}/scale': (d,), f'{prefix}/{norm}/bias': (d,)})
  for a in attention:
    for proj in ('query', 'key', 'value'):
      tree.update({f'{prefix}/{a}/{proj}/kernel': (d, heads, d // heads),
                   f'{prefix}/{a}/{proj}/bias': (heads, d // heads)})
    tree.update({f'{prefix}/{a}/out/kernel': (heads, d // heads, d), f'{prefix}/{a}/out/bias': (d,)})
  tree.update({f'{prefix}/{mlp}/Dense_0/kernel': (d, mlp_dim), f'{prefix}/{mlp}/Dense_0/bias': (mlp_dim,),
               f'{prefix}/{mlp}/Dense_1/kernel': (mlp_dim, d), f'{prefix}/{mlp}/Dense_1/bias': (d,)})
  return tree


def encoder_tree(name, tokens, layers, **block_kwargs):
  tree = {f'{name}/posembed_input/pos_embedding': (1, tokens, 12),
          f'{name}/encoder_norm/scale': (12,), f'{name}/encoder_norm/bias': (12,)}
  for i in range(layers):
    tree.update(block_tree(f'{name}/encoderblock_{i}', **block_kwargs))
  return tree


HEAD = {'embedding/kernel': (2, 4, 4, 3, 12), 'embedding/bias': (12,), 'output_projection/kernel': (12, 5),
        'output_projection/bias': (5,)}
M3_BLOCK = dict(attention=('MultiHeadDotProductAttention_time', 'MultiHeadDotProductAttention_space'),
                norms=('LayerNorm_time', 'LayerNorm_space', 'LayerNorm_mlp'), mlp='MlpBlock')

EXPECTED_TREES = {
    ('spacetime', 'token'): {**HEAD, 'cls': (1, 1, 12), **encoder_tree('Transformer', 65, 2)},
    ('spacetime', '0'): {**HEAD, **encoder_tree('Transformer', 64, 2)},
    ('spacetime', 'gap'): {**HEAD, **encoder_tree('Transformer', 64, 2)},
    ('factorized_encoder', 'token'): {
        **HEAD, 'cls_SpatialTransformer': (1, 1, 12), 'cls_TemporalTransformer': (1, 1, 12),
        **encoder_tree('SpatialTransformer', 17, 1), **encoder_tree('TemporalTransformer', 5, 1)},
    ('factorized_encoder', 'gap'): {
        **HEAD, **encoder_tree('SpatialTransformer', 16, 1), **encoder_tree('TemporalTransformer', 4, 1)},
    ('factorized_self_attention_block', 'gap'): {**HEAD, **encoder_tree('Transformer', 64, 2, **M3_BLOCK)},
    ('factorized_dot_product_attention', 'gap'): {**HEAD, **encoder_tree('Transformer', 64, 2)},
}


@pytest.mark.parametrize('kind,classifier', sorted(EXPECTED_TREES))
def test_parameter_tree_is_scenics(kind, classifier):
  assert param_shapes(tiny_config(kind, classifier)) == EXPECTED_TREES[kind, classifier]


def test_representation_size_adds_pre_logits_and_spatial_only_drops_temporal_encoder():
  shapes = param_shapes(tiny_config('spacetime', model__representation_size=7))
  assert shapes['pre_logits/kernel'] == (12, 7) and shapes['output_projection/kernel'] == (7, 5)
  shapes = param_shapes(tiny_config('factorized_encoder', model__attention_config__spatial_only_baseline=True))
  assert not any(k.startswith(('TemporalTransformer', 'cls_Temporal')) for k in shapes)


@pytest.mark.parametrize('kind', ['spacetime', 'factorized_encoder', 'factorized_self_attention_block',
                                  'factorized_dot_product_attention'])
def test_jit_grad_and_initial_logits(kind):
  model, params, video = init(tiny_config(kind))
  logits = jax.jit(lambda p, v: model.apply({'params': p}, v))(params, video)
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32
  np.testing.assert_array_equal(logits, 0.0)  # output_projection is zero-initialised.
  loss = lambda p: jnp.sum(model.apply({'params': p}, video) * jnp.arange(5.0))
  grads = jax.jit(jax.grad(loss))(params)
  assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
  assert float(jnp.abs(grads['output_projection']['kernel']).sum()) > 0


@pytest.mark.parametrize('shape,overrides,tokens', [
    ((1, 8, 16, 24, 3), {}, 4 * 4 * 6 + 1),  # non-square frames
    ((1, 8, 16, 16, 3), {'model__patches__size': (4, 4, 4)}, 2 * 16 + 1),  # tubelet 4x4x4
    ((1, 8, 16, 16, 3), {'model__temporal_encoding_config__method': 'temporal_sampling',
                         'model__temporal_encoding_config__n_sampled_frames': 3,
                         'model__patches__size': (4, 4)}, 3 * 16 + 1),
])
def test_token_counts_and_logit_shapes(shape, overrides, tokens):
  params, logits = abstract_params_and_logits(tiny_config('spacetime', **overrides), shape)
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (1, tokens, 12)
  assert logits.shape == (1, 5)


def test_temporal_sampling_kernel_is_2d():
  shapes = param_shapes(tiny_config('factorized_encoder', model__patches__size=(4, 4),
                                    model__temporal_encoding_config__method='temporal_sampling',
                                    model__temporal_encoding_config__n_sampled_frames=3))
  assert shapes['embedding/kernel'] == (4, 4, 3, 12)
  assert shapes['TemporalTransformer/posembed_input/pos_embedding'] == (1, 4, 12)


def test_bfloat16_computes_in_bfloat16_with_float32_params():
  config = tiny_config('spacetime', model_dtype_str='bfloat16')
  model, params, video = init(config)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(params))
  _, state = jax.jit(lambda p: model.apply({'params': p}, video, capture_intermediates=True,
                                           mutable=['intermediates']))(params)
  inner = state['intermediates']
  assert inner['embedding']['__call__'][0].dtype == jnp.bfloat16
  assert inner['Transformer']['encoderblock_0']['__call__'][0].dtype == jnp.bfloat16
  grads = jax.jit(jax.grad(lambda p: model.apply({'params': p}, video).sum()))(params)
  assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads))


def test_multihead_model_returns_all_heads_logits():
  config = tiny_config('factorized_encoder', num_classes=None, model_name='vivit_multihead_classification',
                       dataset_configs__class_splits=(3, 4), dataset_configs__split_names=('noun', 'verb'))
  assert config.dataset_configs.num_classes == 7
  assert abstract_params_and_logits(config)[1].shape == (2, 7)


@pytest.mark.parametrize('kind', ['spacetime', 'factorized_encoder', 'factorized_self_attention_block',
                                  'factorized_dot_product_attention'])
def test_dropout_and_stochastic_depth_act_only_in_train_mode(kind):
  config = tiny_config(kind, model__dropout_rate=0.3, model__attention_dropout_rate=0.3,
                       model__stochastic_droplayer_rate=0.5)
  model, params, video = init(config)
  params = randomise(params)
  evaluate = jax.jit(lambda p: model.apply({'params': p}, video, train=False))
  eval_a, eval_b = evaluate(params), evaluate(params)
  np.testing.assert_array_equal(eval_a, eval_b)  # deterministic and needs no rng
  trained = jax.jit(lambda p, key: model.apply({'params': p}, video, train=True, rngs={'dropout': key}))
  train = lambda seed: trained(params, jax.random.PRNGKey(seed))
  assert not np.allclose(train(0), eval_a)
  assert not np.allclose(train(0), train(1))
  np.testing.assert_array_equal(train(3), train(3))


def test_remat_changes_nothing_but_memory():
  plain = tiny_config('factorized_self_attention_block')
  model, params, video = init(plain)
  params = randomise(params)
  remat_model = create_model(tiny_config('factorized_self_attention_block', model__remat=True))
  assert param_shapes(tiny_config('factorized_self_attention_block', model__remat=True)) == flat_shapes(params)
  loss = lambda m: lambda p: m.apply({'params': p}, video).sum()
  g_plain, g_remat = (jax.jit(jax.grad(loss(m)))(params) for m in (model, remat_model))
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g_plain,
                         g_remat)


@pytest.mark.parametrize('shape,message', [
    ((2, 8, 16, 16), 'rank 5'),
    ((2, 8, 18, 16, 3), 'height a multiple of 4'),
    ((2, 8, 16, 15, 3), 'width a multiple of 4'),
    ((2, 7, 16, 16, 3), 'frames a multiple of 2'),
])
def test_bad_video_shape_names_expected_and_found(shape, message):
  model = create_model(tiny_config('spacetime'))
  with pytest.raises(ValueError, match=message) as err:
    model.init(jax.random.PRNGKey(0), jnp.zeros(shape))
  assert str(tuple(shape)) in str(err.value)


def test_attention_kernels_zero_init_for_model_3():
  _, params, _ = init(tiny_config('factorized_self_attention_block',
                                  model__attention_config__attention_kernel_init_method='zero'))
  block = params['Transformer']['encoderblock_0']
  for axis in ('time', 'space'):
    for proj in ('query', 'key', 'value', 'out'):
      assert not np.any(block[f'MultiHeadDotProductAttention_{axis}'][proj]['kernel'])
  assert np.any(block['MlpBlock']['Dense_0']['kernel'])


def test_forced_xla_attention_matches_default():
  model, params, video = init(tiny_config('spacetime'))
  params = randomise(params)
  forced = create_model(tiny_config('spacetime', model__attention_implementation='xla'))
  np.testing.assert_allclose(model.apply({'params': params}, video),
                             forced.apply({'params': params}, video), rtol=1e-6, atol=1e-6)
