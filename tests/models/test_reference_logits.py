"""vivit_jax's logits against an independent float64 NumPy reference (tests/models/numpy_reference.py).

Every parameter is replaced with random noise (the output projection inits to zero, and Model 3's attention
kernels may too), so that every weight influences the logits and a wrong axis, order or name shows up.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tiny import randomise, tiny_config
from vivit_jax.models import create_model

from . import numpy_reference

NUM_CLASSES = 5


def make_config(attention='spacetime', classifier='token', patches=(4, 4, 2), hidden=12, heads=2,
                representation_size=None, method='3d_conv', n_sampled_frames=None, order='time_space',
                spatial_only_baseline=False, dtype='float32', num_frames=8, crop_size=16):
  """A tiny ViViT config (2 layers; Model 2: 2 spatial and 1 temporal)."""
  encoder = lambda name, layers: {f'model__{name}__num_heads': heads, f'model__{name}__mlp_dim': 2 * hidden,
                                  f'model__{name}__num_layers': layers}
  return tiny_config(
      attention, classifier, num_classes=NUM_CLASSES, model_dtype_str=dtype,
      dataset_configs__num_frames=num_frames, dataset_configs__crop_size=crop_size,
      model__hidden_size=hidden, model__num_heads=heads, model__mlp_dim=2 * hidden, model__patches__size=patches,
      model__representation_size=representation_size, model__attention_config__attention_order=order,
      model__attention_config__spatial_only_baseline=spatial_only_baseline,
      model__temporal_encoding_config__method=method,
      model__temporal_encoding_config__n_sampled_frames=n_sampled_frames,
      **encoder('spatial_transformer', 2), **encoder('temporal_transformer', 1))


def init_shapes(model, video):
  """The shapes and dtypes of `model.init`'s params (without computing them: only the shapes are used)."""
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.asarray(video))['params']


def model_and_reference(config, video_shape, seed=0):
  """Builds the model, randomises its params; returns (params, video, model logits, reference logits)."""
  video = np.random.default_rng(seed).standard_normal(video_shape).astype(np.float32)
  model = create_model(config)
  params = randomise(init_shapes(model, video))
  with jax.default_matmul_precision('highest'):  # No TF32 / bf16 passes on accelerators.
    logits = jax.jit(lambda p, v: model.apply({'params': p}, v, train=False))(params, jnp.asarray(video))
  m, used = config.model, set()
  ref = numpy_reference.vivit_logits(
      jax.device_get(params), video, model_type=m.attention_config.type, patch_size=tuple(m.patches.size),
      classifier=m.classifier, temporal_encoding=m.temporal_encoding_config.method,
      n_sampled_frames=m.temporal_encoding_config.n_sampled_frames,
      attention_order=m.attention_config.attention_order,
      spatial_only_baseline=m.attention_config.spatial_only_baseline, used=used)
  paths = {'/'.join(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(params)}
  assert paths == used, f'params the reference does not use: {sorted(paths - used)}'
  return params, video, np.asarray(logits), ref


CASES = {
    # Model 1.
    'm1_token': dict(),
    'm1_zero': dict(classifier='0'),
    'm1_gap': dict(classifier='gap'),
    'm1_gmp': dict(classifier='gmp'),
    'm1_gsp': dict(classifier='gsp'),
    'm1_pre_logits': dict(representation_size=7),
    'm1_tubelet_4x4x4': dict(classifier='gap', patches=(4, 4, 4)),
    'm1_non_square': dict(video=(2, 8, 8, 24, 3)),
    'm1_ts_3_frames': dict(classifier='gap', method='temporal_sampling', n_sampled_frames=3, patches=(4, 4)),
    'm1_ts_3_frames_hwt': dict(method='temporal_sampling', n_sampled_frames=3, patches=(4, 4, 1)),
    'm1_ts_5_frames': dict(classifier='gap', method='temporal_sampling', n_sampled_frames=5, patches=(4, 4)),
    'm1_ts_all_frames': dict(classifier='gap', method='temporal_sampling', n_sampled_frames=8,
                             patches=(4, 4)),
    'm1_ts_more_frames': dict(classifier='gap', method='temporal_sampling', n_sampled_frames=11,
                              patches=(4, 4)),
    # Model 2.
    'm2_token': dict(attention='factorized_encoder'),
    'm2_gap': dict(attention='factorized_encoder', classifier='gap'),
    'm2_gmp_pre_logits': dict(attention='factorized_encoder', classifier='gmp', representation_size=7),
    'm2_spatial_only': dict(attention='factorized_encoder', spatial_only_baseline=True),
    'm2_spatial_only_gap': dict(attention='factorized_encoder', classifier='gap', spatial_only_baseline=True),
    'm2_non_square': dict(attention='factorized_encoder', video=(2, 8, 16, 8, 3)),
    'm2_ts': dict(attention='factorized_encoder', method='temporal_sampling', n_sampled_frames=3,
                  patches=(4, 4)),
    # Model 3.
    'm3_time_space': dict(attention='factorized_self_attention_block', classifier='gap'),
    'm3_space_time': dict(attention='factorized_self_attention_block', classifier='gap', order='space_time'),
    'm3_gsp_non_square': dict(attention='factorized_self_attention_block', classifier='gsp',
                              video=(2, 8, 8, 24, 3)),
    'm3_tubelet_4x4x4': dict(attention='factorized_self_attention_block', classifier='gap',
                             patches=(4, 4, 4)),
    # Model 4.
    'm4_gap': dict(attention='factorized_dot_product_attention', classifier='gap', hidden=16, heads=4),
    'm4_gmp_non_square': dict(attention='factorized_dot_product_attention', classifier='gmp', hidden=16,
                              heads=4, video=(2, 8, 24, 8, 3)),
    'm4_ts': dict(attention='factorized_dot_product_attention', classifier='gap', hidden=16, heads=4,
                  method='temporal_sampling', n_sampled_frames=3, patches=(4, 4, 1)),
}


@pytest.mark.parametrize('name', list(CASES))
def test_logits_match_numpy_reference(name):
  kwargs = dict(CASES[name])
  video_shape = kwargs.pop('video', (2, 8, 16, 16, 3))
  _, _, logits, ref = model_and_reference(make_config(**kwargs), video_shape)
  assert logits.shape == ref.shape == (video_shape[0], NUM_CLASSES)
  assert logits.dtype == np.float32
  scale = np.abs(ref).max()
  assert scale > 0.1  # The comparison is not vacuous.
  # float32 against float64: the differences seen on CPU are below 4e-7 of the logit scale.
  np.testing.assert_allclose(logits, ref, rtol=2e-5, atol=2e-5 * max(1.0, scale))


@pytest.mark.parametrize('num_frames, n, expected', [
    (8, 3, [2, 4, 6]), (8, 8, list(range(8))), (8, 11, list(range(8))),
    (32, 7, [4, 8, 12, 16, 20, 24, 28]), (10, 3, [2, 5, 8]),
    # Scenic's quirk, kept: np.arange(4/3, 8, 4/3) overshoots to 8.0, so 6 frames are taken, not 5.
    (8, 5, [1, 3, 4, 5, 7, 7])])
def test_reference_sampled_frames(num_frames, n, expected):
  """The reference's frame choice for 'temporal_sampling' (step T/(n+1), rounded half to even)."""
  assert numpy_reference.sampled_frame_indices(num_frames, n).tolist() == expected


@pytest.mark.parametrize('attention, kwargs', [
    ('spacetime', dict()),
    ('factorized_encoder', dict()),
    ('factorized_self_attention_block', dict(classifier='gap')),
    ('factorized_dot_product_attention', dict(classifier='gap', hidden=16, heads=4)),
])
def test_bfloat16_logits_close_to_reference(attention, kwargs):
  config = make_config(attention=attention, dtype='bfloat16', **kwargs)
  params, _, logits, ref = model_and_reference(config, (2, 8, 16, 16, 3))
  init_params = init_shapes(create_model(config), np.zeros((1, 8, 16, 16, 3), np.float32))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(init_params))
  assert logits.shape == ref.shape
  scale = np.abs(ref).max()
  assert scale > 0.1
  np.testing.assert_allclose(logits.astype(np.float64), ref, rtol=0, atol=5e-2 * scale)
