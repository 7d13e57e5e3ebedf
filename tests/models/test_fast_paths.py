"""The speed levers compute the same function: chunked and einsum attention (the CPU's), the fused QKV projection,
padding the tokens once per encoder (cuDNN's), the CPU's tubelet matmul, remat policies and the last block that
computes only the class token each give the logits and gradients of the plain path."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.test_layers import naive_attention
from tests.tiny import randomise, tiny_config
from vivit_jax.config import load_config
from vivit_jax.models import attention, blocks, chunked_attention, complexity, create_model, embedding

VARIANTS = ('spacetime', 'factorized_encoder', 'factorized_self_attention_block',
            'factorized_dot_product_attention')


@pytest.mark.parametrize('shape,group_bytes', [((2, 13, 3, 8), 4 << 20), ((2, 13, 3, 8), 1),
                                               ((3, 9, 4, 4), 2 * 4 * 81)])
def test_chunked_attention_equals_softmax_attention_in_values_and_gradients(shape, group_bytes, monkeypatch):
  # group_bytes 1: one (example, head) pair per scan step; 2 * 4 * 81: two pairs per step; 4 MiB: all in one.
  monkeypatch.setattr(chunked_attention, 'GROUP_BYTES', group_bytes)
  q, k, v = (jax.random.normal(jax.random.PRNGKey(i), shape) for i in range(3))
  np.testing.assert_allclose(chunked_attention.chunked_attention(q, k, v), naive_attention(q, k, v),
                             rtol=1e-5, atol=1e-5)
  loss = lambda fn: (lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v))))
  for got, want in zip(jax.grad(loss(chunked_attention.chunked_attention), argnums=(0, 1, 2))(q, k, v),
                       jax.grad(loss(naive_attention), argnums=(0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_chunked_attention_groups_fit_the_budget_and_divide_the_pairs():
  assert chunked_attention._group_size(24, 785) == 2  # 2.4 MB of scores per pair: two at a time.
  assert chunked_attention._group_size(24, 1569) == 1  # 9.8 MB: one at a time.
  assert chunked_attention._group_size(24, 65) == 24  # Small: all in one step.
  assert chunked_attention._group_size(7, 300) == 7  # 360 KB each, 11 would fit: the divisor 7.
  assert chunked_attention._group_size(12, 400) == 6  # 640 KB each, 6 fit and divide 12.


def test_chunked_attention_keeps_bfloat16():
  q = jnp.ones((1, 5, 2, 8), jnp.bfloat16)
  assert chunked_attention.chunked_attention(q, q, q).dtype == jnp.bfloat16


def _logits_and_grads(config, params, video):
  model = create_model(config)
  loss = lambda p: jnp.sum(jnp.sin(model.apply({'params': p}, video, train=False)))
  return jax.jit(lambda p: (model.apply({'params': p}, video, train=False), jax.grad(loss)(p)))(params)


def _close(a, b, tol):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


@pytest.mark.parametrize('kind,levers', [(kind, ('chunked', 'einsum')) for kind in VARIANTS[2:]]
                         + [('factorized_encoder', ('chunked', 'einsum', 'pad_once')),
                            ('spacetime', ('chunked', 'einsum', 'fused', 'remat', 'pad_once'))])
def test_every_lever_gives_the_plain_paths_logits_and_gradients(kind, levers):
  plain = tiny_config(kind, model__attention_implementation='xla', model__fused_qkv=False)
  video = jax.random.uniform(jax.random.PRNGKey(0), (2, 4, 16, 16, 3), minval=-1, maxval=1)
  params = jax.jit(lambda v: create_model(plain).init(jax.random.PRNGKey(1), v)['params'])(video[:1])
  params = jax.tree_util.tree_map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  want = _logits_and_grads(plain, params, video)
  overrides = {'chunked': ['model.attention_implementation=chunked'], 'fused': ['model.fused_qkv=True'],
               'einsum': ['model.attention_implementation=einsum'],
               'remat': ['model.remat=True', 'model.remat_policy=dots_saveable'],
               'pad_once': ['model.attention_padding=once']}  # 33 tokens -> 40 (Model 2: 17 -> 24 and 3 -> 8).
  for lever in levers:
    _close(_logits_and_grads(load_config(plain, overrides[lever]), params, video), want, 1e-5)


@pytest.mark.parametrize('kind,overrides', [
    ('spacetime', ()),  # The CPU's defaults: fused QKV, einsum attention (tiny scores).
    ('spacetime', ('model.attention_implementation=chunked',)),
    ('spacetime', ('model.fused_qkv=False', "model.classifier='0'", 'model.remat=True',
                   'model.attention_implementation=xla', 'model.attention_padding=once')),
    ('factorized_encoder', ('model.representation_size=6',))])
def test_the_last_block_computing_only_the_class_token_changes_nothing_but_the_flops(kind, overrides):
  # In training, with dropout and stochastic depth: they draw the full block's masks for the tokens it keeps.
  base = tiny_config(kind, model__dropout_rate=0.3, model__stochastic_droplayer_rate=0.4,
                     model__num_layers=3, model__spatial_transformer__num_layers=2)
  full, short = (load_config(base, list(overrides) + [f'model.last_block_class_token_only={flag}'])
                 for flag in (False, True))
  video = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 16, 16, 3), minval=-1, maxval=1)
  params = randomise(jax.eval_shape(lambda: create_model(full).init(jax.random.PRNGKey(1), video[:1]))['params'])

  def outputs(config):
    model = create_model(config)
    apply = lambda p: model.apply({'params': p}, video, train=True, rngs={'dropout': jax.random.PRNGKey(5)})
    macs = complexity.count_jaxpr_macs(jax.make_jaxpr(apply)(params).jaxpr)
    return jax.jit(lambda p: (apply(p), jax.grad(lambda p: jnp.sum(jnp.sin(apply(p))))(p)))(params), macs

  (want, full_macs), (got, short_macs) = outputs(full), outputs(short)
  _close(got, want, 2e-5)
  assert short_macs < 0.9 * full_macs, (short_macs, full_macs)


def test_attention_dropout_or_a_pooling_classifier_keeps_every_token_in_the_last_block():
  video = jnp.zeros((2, 8, 16, 16, 3))
  def last_mlp_rows(config, train):
    model = create_model(config)
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), video))['params']
    jaxpr = jax.make_jaxpr(lambda p: model.apply({'params': p}, video, train=train,
                                                 rngs={'dropout': jax.random.PRNGKey(1)}))(params)
    shape = [e.outvars[0].aval.shape for e in jaxpr.eqns if e.primitive.name == 'dot_general'
             and e.outvars[0].aval.shape[-1] == config.model.mlp_dim][-1]
    return int(np.prod(shape[:-1]))  # The MLP's Dense layers take the tokens as rows: batch x tokens.
  assert last_mlp_rows(tiny_config('spacetime'), True) == 2 * 1
  assert last_mlp_rows(tiny_config('spacetime', model__attention_dropout_rate=0.1), False) == 2 * 1
  assert last_mlp_rows(tiny_config('spacetime', model__attention_dropout_rate=0.1), True) == 2 * 65
  assert last_mlp_rows(tiny_config('spacetime', classifier='gap'), False) == 2 * 64
  assert last_mlp_rows(tiny_config('spacetime', model__return_preclassifier=True), False) == 2 * 65


def test_fused_qkv_keeps_the_parameter_tree_and_its_initialisation():
  fused, plain = tiny_config('spacetime'), tiny_config('spacetime', model__fused_qkv=False)
  video = jnp.zeros((1, 4, 16, 16, 3))
  a, b = (jax.jit(create_model(c).init)(jax.random.PRNGKey(3), video)['params'] for c in (fused, plain))
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize('window', [(2, 4, 4), (1, 8, 8), (4, 2, 2)])
def test_the_tubelet_matmul_is_the_strided_convolution_tpus_take(window, monkeypatch):
  video = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 16, 16, 3))
  kernel = jax.random.normal(jax.random.PRNGKey(1), window + (3, 5))
  conv = jax.lax.conv_general_dilated(video, kernel, window_strides=window, padding='VALID',
                                      dimension_numbers=('NTHWC', 'THWIO', 'NTHWC'))
  with jax.default_matmul_precision('highest'):
    np.testing.assert_allclose(embedding.tubelets(video, kernel), conv, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(jax, 'default_backend', lambda: 'tpu')
    assert not jax.make_jaxpr(embedding.tubelets)(video, kernel).eqns[-1].primitive.name.startswith('dot')
    np.testing.assert_allclose(embedding.tubelets(video, kernel), conv, rtol=1e-5, atol=1e-5)


def test_query_key_and_value_are_one_matmul_on_the_cpu_and_three_elsewhere_unless_the_config_says(monkeypatch):
  assert blocks.fuse_qkv(None) and blocks.fuse_qkv(True) and not blocks.fuse_qkv(False)
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert not blocks.fuse_qkv(None) and blocks.fuse_qkv(True)


def test_the_cpu_picks_einsum_attention_where_the_scores_fit_one_chunk_else_chunked_and_a_config_can_force_xla(
    monkeypatch):
  assert chunked_attention.GROUP_BYTES == 6 << 20
  fits = jax.ShapeDtypeStruct((2, 512, 3, 64), jnp.float32)  # Scores: 4 * 2 * 3 * 512 * 512 bytes = 6 MiB.
  over = jax.ShapeDtypeStruct((2, 513, 3, 64), jnp.float32)
  assert attention.attention_backend(None, fits) == 'einsum'
  assert attention.attention_backend(None, over) == 'chunked'
  assert attention.attention_backend('xla', fits) == 'xla' and attention.attention_backend('chunked', fits) == 'chunked'
  # What a model runs, as the benchmarks report it: tracing records each encoder's pick, in order.
  config = tiny_config('factorized_encoder')
  config.model.last_block_class_token_only = False  # Else its one block per encoder is the class token's einsums.
  model, video = create_model(config), jax.ShapeDtypeStruct((2, 4, 16, 16, 3), jnp.float32)

  def traced():
    with attention.recorded_backends() as used:
      jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), video)
    return used

  assert traced() == ['einsum']
  # Spatial scores: 4 bytes * (2 clips * 2 frames) * 2 heads * 17 * 17; temporal: 4 * 2 * 2 * 3 * 3 = 144.
  monkeypatch.setattr(chunked_attention, 'GROUP_BYTES', 144)
  assert traced() == ['chunked', 'einsum']
  monkeypatch.setattr(chunked_attention, 'GROUP_BYTES', 143)
  assert traced() == ['chunked']


def test_nested_recordings_each_keep_recording_until_their_own_block_ends():
  with attention.recorded_backends() as outer:
    attention.few_query_attention(*[jnp.zeros((1, 1, 1, 4))] * 3)
    with attention.recorded_backends() as inner:  # Equal to the outer list when it starts recording.
      attention.few_query_attention(*[jnp.zeros((1, 1, 1, 4))] * 3)
    attention.dot_product_attention(*[jnp.zeros((1, 2, 1, 4))] * 3, implementation='xla')
  assert outer == ['einsum', 'xla'] and inner == ['einsum']


def test_a_symbolic_batch_takes_xla_attention_so_that_export_works():
  q = jax.ShapeDtypeStruct(jax.export.symbolic_shape('b, 5, 2, 8'), jnp.float32)
  assert attention.attention_backend(None, q) == 'xla'


def test_padding_once_pads_the_tokens_once_for_the_whole_encoder():
  config = tiny_config('spacetime', model__attention_implementation='xla', model__attention_padding='once')
  video = jnp.zeros((2, 4, 16, 16, 3))
  model = create_model(config)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), video)['params']  # Lowered, not run.
  text = jax.jit(lambda p: model.apply({'params': p}, video, train=False)).lower(params).as_text()
  pads = re.findall(r'stablehlo\.pad .*-> tensor<([0-9x]+)xf32>', text)
  assert pads == ['2x40x12'], pads  # 33 tokens + 7, padded once for the 2 layers.


def test_the_encoders_padding_rule():
  assert attention.encoder_padding('auto', 'cudnn', 3137) == 7  # ViViT-B/16x2 Model 1: +0.2% rows.
  assert attention.encoder_padding('auto', 'cudnn', 197) == 3  # Model 2's spatial encoder: +1.5%.
  assert attention.encoder_padding('auto', 'cudnn', 17) == 0  # Its temporal encoder pads per layer.
  assert attention.encoder_padding('auto', 'cudnn', 3136) == 0  # Nothing to pad.
  assert attention.encoder_padding('auto', 'chunked', 3137) == attention.encoder_padding('auto', 'xla', 3137) == 0
  assert attention.encoder_padding('per_layer', 'cudnn', 3137) == 0
  assert attention.encoder_padding('once', 'xla', 17) == 7
  with pytest.raises(ValueError, match="attention_padding='once' needs attention that masks"):
    attention.encoder_padding('once', 'chunked', 17)


def test_the_dropout_paths_attention_gives_padded_keys_no_weight():
  q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (2, 5, 3, 4)) for i in range(3))
  pad = lambda a: jnp.pad(a, ((0, 0), (0, 3), (0, 0), (0, 0)), constant_values=7.0)
  padded = attention._einsum_attention(pad(q), pad(k), pad(v), 1, 0.0, None, True, valid_length=5)
  np.testing.assert_allclose(padded[:, :5], naive_attention(q, k, v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('shape', [(2, 13, 3, 8), (3, 9, 4, 4)])
def test_chunked_attention_drops_the_weights_the_einsum_path_drops_in_values_and_gradients(shape, monkeypatch):
  monkeypatch.setattr(chunked_attention, 'GROUP_BYTES', 2 * 4 * shape[1] ** 2)  # Two pairs a step.
  q, k, v = (jax.random.normal(jax.random.PRNGKey(i), shape) for i in range(3))
  rng = jax.random.PRNGKey(7)
  einsum = lambda q, k, v: attention._einsum_attention(q, k, v, 1, 0.3, rng, False)
  chunked = lambda q, k, v: chunked_attention.chunked_attention(q, k, v, 0.3, rng)
  np.testing.assert_allclose(chunked(q, k, v), einsum(q, k, v), rtol=1e-5, atol=1e-5)
  assert not np.allclose(chunked(q, k, v), naive_attention(q, k, v), atol=1e-3)  # Something was dropped.
  loss = lambda fn: (lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v))))
  for got, want in zip(jax.grad(loss(chunked), argnums=(0, 1, 2))(q, k, v),
                       jax.grad(loss(einsum), argnums=(0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_training_with_attention_dropout_keeps_the_chunked_path():
  config = tiny_config('spacetime', model__attention_dropout_rate=0.2, model__attention_implementation='chunked')
  model = create_model(config)
  video = jnp.zeros((2, 4, 16, 16, 3))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), video)['params']  # Lowered, not run.
  text = str(jax.make_jaxpr(lambda p: model.apply({'params': p}, video, train=True,
                                                  rngs={'dropout': jax.random.PRNGKey(1)}))(params))
  assert len(re.findall(r'custom_vjp_call\[\s*name=_attend\b', text)) == config.model.num_layers  # Once per layer.
