"""Layer-wise learning-rate decay (`optimizer_configs.layerwise_decay`) against hand calculations: every variant's
parameters get their depth (0 embeddings, 1..L blocks, L+1 head), and one update of depth i is
decay^(L+1-i) times the plain one, for SGD and Adam, after clipping and with weight decay."""

import math
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.tiny import tiny_config
from tests.train.finetune_testing import flat, params_and_grads, train_one_step
from tests.train_testing import train_config
from vivit_jax.train import param_groups
from vivit_jax.train.optim import create_optimizer, weight_decay_mask

DECAY = 0.5
LR = 0.1
# Variant (with its overrides) -> (L, [(path regex, depth)]), written out by hand from the paper's layouts.
LAYOUTS = {
    'spacetime': ({}, 2, [(r'embedding/.*|cls|Transformer/posembed_input/.*', 0), (r'Transformer/encoderblock_0/.*', 1),
                          (r'Transformer/encoderblock_1/.*', 2), (r'Transformer/encoder_norm/.*', 3),
                          (r'(pre_logits|output_projection)/.*', 3)]),
    'factorized_encoder': (
        {'model__spatial_transformer__num_layers': 2, 'model__temporal_transformer__num_layers': 2}, 4,
        [(r'embedding/.*|cls_SpatialTransformer|SpatialTransformer/posembed_input/.*', 0),
         (r'SpatialTransformer/encoderblock_0/.*', 1), (r'SpatialTransformer/encoderblock_1/.*', 2),
         (r'SpatialTransformer/encoder_norm/.*|cls_TemporalTransformer|TemporalTransformer/posembed_input/.*', 2),
         (r'TemporalTransformer/encoderblock_0/.*', 3), (r'TemporalTransformer/encoderblock_1/.*', 4),
         (r'TemporalTransformer/encoder_norm/.*|(pre_logits|output_projection)/.*', 5)]),
    'spatial_only_baseline': (
        {'model__spatial_transformer__num_layers': 2, 'model__attention_config__spatial_only_baseline': True}, 2,
        [(r'embedding/.*|cls_SpatialTransformer|SpatialTransformer/posembed_input/.*', 0),
         (r'SpatialTransformer/encoderblock_0/.*', 1), (r'SpatialTransformer/encoderblock_1/.*', 2),
         (r'SpatialTransformer/encoder_norm/.*|(pre_logits|output_projection)/.*', 3)]),
    'factorized_self_attention_block': ({}, 2, [
        (r'embedding/.*|Transformer/posembed_input/.*', 0),
        (r'Transformer/encoderblock_0/(MultiHeadDotProductAttention|LayerNorm)_(space|time|mlp)/.*', 1),
        (r'Transformer/encoderblock_0/MlpBlock/.*', 1), (r'Transformer/encoderblock_1/.*', 2),
        (r'Transformer/encoder_norm/.*|(pre_logits|output_projection)/.*', 3)]),
    'factorized_dot_product_attention': ({}, 2, [
        (r'embedding/.*|Transformer/posembed_input/.*', 0), (r'Transformer/encoderblock_0/.*', 1),
        (r'Transformer/encoderblock_1/.*', 2), (r'Transformer/encoder_norm/.*|(pre_logits|output_projection)/.*', 3)]),
}


def variant_config(name, **overrides):
  overrides = {**LAYOUTS[name][0], 'model__representation_size': 6, **overrides}
  kind = 'factorized_encoder' if name == 'spatial_only_baseline' else name
  return tiny_config(kind, optimizer_configs__layerwise_decay=DECAY, **overrides)


def hand_depth(name, path):
  (depth,) = {d for pattern, d in LAYOUTS[name][2] if re.fullmatch(pattern, path)}
  return depth


def one_update(config, params, grads):
  tx = create_optimizer(config, lambda step: LR)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  return flat(updates)


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_every_parameter_of_every_variant_has_its_depth(name):
  config = variant_config(name)
  params, _ = params_and_grads(config)
  names = flax.traverse_util.flatten_dict(params, sep='/')
  depths = {path: param_groups.layer_depth(path, config) for path in names}
  assert depths == {path: hand_depth(name, path) for path in names}
  assert set(depths.values()) == set(range(LAYOUTS[name][1] + 2))  # Embeddings, every block, the head.


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_sgd_update_of_depth_i_is_decay_to_the_l_plus_1_minus_i_times_the_plain_one(name):
  config = variant_config(name, optimizer='sgd')
  params, grads = params_and_grads(config)
  got, g = one_update(config, params, grads), flat(grads)
  num_layers = LAYOUTS[name][1]
  for path, update in got.items():
    scale = DECAY ** (num_layers + 1 - hand_depth(name, path))
    np.testing.assert_allclose(update, -LR * scale * g[path], rtol=1e-6, err_msg=path)


def test_adamw_with_clipping_and_weight_decay_scales_the_whole_update():
  wd, max_norm, eps = 0.05, 0.01, 1e-8
  config = variant_config('factorized_encoder', optimizer='adamw', optimizer_configs__weight_decay=wd,
                          optimizer_configs__epsilon=eps, max_grad_norm=max_norm)
  params, grads = params_and_grads(config)
  got, g, p = one_update(config, params, grads), flat(grads), flat(params)
  norm = math.sqrt(sum(float(np.sum(x.astype(np.float64) ** 2)) for x in g.values()))
  assert norm > max_norm  # Clipped first, on the plain gradient.
  for path, update in got.items():
    clipped = g[path] * max_norm / norm
    adam = clipped / (np.abs(clipped) + eps)  # First step: bias-corrected moments are g and g^2.
    decayed = adam + (wd * p[path] if p[path].ndim >= 2 else 0.0)
    scale = DECAY ** (5 - hand_depth('factorized_encoder', path))
    np.testing.assert_allclose(update, -LR * scale * decayed, rtol=2e-5, atol=1e-9, err_msg=path)


def test_without_the_option_the_optimizer_state_is_unchanged():
  """Checkpoints written before layer-wise decay and freezing existed must restore: same state tree."""
  params, _ = params_and_grads(variant_config('spacetime'))
  for decay in (None, 1.0):
    config = tiny_config('spacetime', model__representation_size=6, max_grad_norm=1.0,
                         optimizer_configs__layerwise_decay=decay)
    earlier = optax.chain(optax.clip_by_global_norm(1.0), optax.trace(0.9, accumulator_dtype=jnp.float32),
                          optax.scale_by_learning_rate(lambda s: LR))
    ours = create_optimizer(config, lambda s: LR).init(params)
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(earlier.init(params))
  adamw = tiny_config('spacetime', model__representation_size=6, optimizer='adamw')
  earlier = optax.adamw(lambda s: LR, mu_dtype=jnp.float32, weight_decay=0.0, mask=weight_decay_mask)
  assert (jax.tree_util.tree_structure(create_optimizer(adamw, lambda s: LR).init(params))
          == jax.tree_util.tree_structure(optax.chain(earlier).init(params)))


def test_a_parameter_without_a_depth_is_named():
  config = variant_config('spacetime')
  with pytest.raises(ValueError, match="parameter 'adapter/kernel' has no known depth in a 'spacetime' model"):
    create_optimizer(config, lambda s: LR).init({'adapter': {'kernel': jnp.zeros((2, 2))}})


def test_the_train_step_applies_it_with_accumulation_and_ema():
  common = dict(optimizer='sgd', gradient_accumulation_steps=2, ema_decay=0.5, lr_configs__factors='constant',
                lr_configs__base_learning_rate=1.0)
  deltas = {}
  for decay in (None, DECAY):
    _, before, after, _ = train_one_step(train_config('spacetime', optimizer_configs__layerwise_decay=decay, **common))
    initial = flat(before.params)
    deltas[decay] = {k: v - initial[k] for k, v in flat(after.params).items()}
  for path, plain in deltas[None].items():
    scale = DECAY ** (3 - hand_depth('spacetime', path))
    np.testing.assert_allclose(deltas[DECAY][path], scale * plain, rtol=1e-4, atol=3e-7, err_msg=path)
  moved = {k for k, v in deltas[DECAY].items() if np.any(v != 0)}  # Embeddings included; the key bias has no
  assert moved >= {k for k in deltas[DECAY] if not k.endswith('key/bias')}  # gradient (softmax ignores it).
