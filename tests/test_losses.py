"""Losses against hand calculations written out with `math`."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tests.tiny import tiny_config
from vivit_jax import losses

# Two examples, three classes. Example 0: logits (1, 2, 3), class 2. Example 1: logits (0, 0, 0), class 0.
LOGITS = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
LABELS = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
# log-sum-exp of example 0: 3 + log(1 + e^-1 + e^-2) = 3 + log(1.5032147) = 3.4076059.
LSE0 = 3.0 + math.log(1.0 + math.exp(-1.0) + math.exp(-2.0))
CE0 = LSE0 - 3.0  # -log p(class 2) = 0.4076059
CE1 = math.log(3.0)  # uniform logits: -log(1/3) = 1.0986123


def _ce(logit_row, label_row):
  """Cross-entropy of one example by hand: -sum y_c (x_c - log sum_k e^x_k)."""
  lse = math.log(sum(math.exp(x) for x in logit_row))
  return -sum(y * (x - lse) for x, y in zip(logit_row, label_row))


def test_hand_values_are_what_the_comments_say():
  assert CE0 == pytest.approx(0.4076059, abs=1e-6)
  assert CE1 == pytest.approx(1.0986123, abs=1e-6)


def test_softmax_cross_entropy_2x3():
  got = losses.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS))
  assert got.dtype == jnp.float32 and got.shape == ()
  assert float(got) == pytest.approx((CE0 + CE1) / 2, abs=1e-6)  # 0.7531091
  per_example = losses.softmax_cross_entropy_per_example(jnp.asarray(LOGITS), jnp.asarray(LABELS))
  np.testing.assert_allclose(per_example, [CE0, CE1], atol=1e-6)


def test_smooth_labels_formula():
  # s = 0.3, C = 3: on-value 1 - 0.3 + 0.1 = 0.8, off-value 0.3 / 3 = 0.1.
  got = losses.smooth_labels(jnp.asarray(LABELS), 0.3)
  np.testing.assert_allclose(got, [[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]], atol=1e-7)
  np.testing.assert_array_equal(losses.smooth_labels(jnp.asarray(LABELS), None), LABELS)


def test_softmax_cross_entropy_with_label_smoothing():
  # Example 0 with labels (0.1, 0.1, 0.8): -log p = (LSE0 - 1, LSE0 - 2, LSE0 - 3) = (2.4076, 1.4076, 0.4076),
  # so 0.1 * 2.4076059 + 0.1 * 1.4076059 + 0.8 * 0.4076059 = 0.7076059.
  ce0 = 0.1 * (LSE0 - 1.0) + 0.1 * (LSE0 - 2.0) + 0.8 * (LSE0 - 3.0)
  assert ce0 == pytest.approx(0.7076059, abs=1e-6)
  # Example 1 has uniform logits, so any label vector summing to 1 gives log 3.
  smoothed = losses.smooth_labels(jnp.asarray(LABELS), 0.3)
  got = losses.softmax_cross_entropy(jnp.asarray(LOGITS), smoothed)
  assert float(got) == pytest.approx((ce0 + CE1) / 2, abs=1e-6)  # 0.9031091


def test_weights_exclude_padding():
  logits = np.concatenate([LOGITS, [[100.0, -100.0, 0.0]]]).astype(np.float32)
  labels = np.concatenate([LABELS, [[0.0, 0.0, 0.0]]]).astype(np.float32)
  weights = np.array([1.0, 1.0, 0.0], np.float32)
  got = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights))
  assert float(got) == pytest.approx((CE0 + CE1) / 2, abs=1e-6)
  only_first = losses.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), jnp.array([1.0, 0.0]))
  assert float(only_first) == pytest.approx(CE0, abs=1e-6)
  # All-padding batch: 0 / max(0, 1e-8) = 0, not NaN.
  none = losses.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), jnp.zeros(2))
  assert float(none) == 0.0


def test_bfloat16_logits_are_computed_in_float32():
  got = losses.softmax_cross_entropy(jnp.asarray(LOGITS, jnp.bfloat16), jnp.asarray(LABELS))
  assert got.dtype == jnp.float32
  assert float(got) == pytest.approx((CE0 + CE1) / 2, abs=1e-6)  # 1, 2, 3 and 0 are exact in bfloat16.


def test_sigmoid_cross_entropy():
  logits = np.array([[0.0, 2.0], [-1.0, 0.0]], np.float32)
  labels = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  # Example 0: -log sigmoid(0) - log(1 - sigmoid(2)) = log 2 + log(1 + e^2) = 0.6931472 + 2.1269280.
  ex0 = math.log(2.0) + math.log(1.0 + math.exp(2.0))
  # Example 1: -log(1 - sigmoid(-1)) - log sigmoid(0) = log(1 + e^-1) + log 2 = 0.3132617 + 0.6931472.
  ex1 = math.log(1.0 + math.exp(-1.0)) + math.log(2.0)
  assert ex0 == pytest.approx(2.8200752, abs=1e-6) and ex1 == pytest.approx(1.0064089, abs=1e-6)
  got = losses.sigmoid_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  assert float(got) == pytest.approx((ex0 + ex1) / 2, abs=1e-6)
  weighted = losses.sigmoid_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.array([0.0, 1.0]))
  assert float(weighted) == pytest.approx(ex1, abs=1e-6)


def test_sigmoid_cross_entropy_is_stable_for_large_logits():
  # Logit 100 with label 0 costs log(1 + e^100) = 100 (to float precision); -100 with label 1 likewise.
  got = losses.sigmoid_cross_entropy(jnp.array([[100.0, -100.0]]), jnp.array([[0.0, 1.0]]))
  assert float(got) == pytest.approx(200.0, rel=1e-6)


def _batch(logits_shape_labels, mask=None):
  batch = {'label': jnp.asarray(logits_shape_labels)}
  if mask is not None:
    batch['batch_mask'] = jnp.asarray(mask, jnp.float32)
  return batch


def test_loss_fn_for_classification_with_smoothing_and_mask():
  config = tiny_config(num_classes=3, label_smoothing=0.3)
  loss_fn = losses.loss_fn_for(config)
  ce0 = 0.1 * (LSE0 - 1.0) + 0.1 * (LSE0 - 2.0) + 0.8 * (LSE0 - 3.0)
  assert float(loss_fn(jnp.asarray(LOGITS), _batch(LABELS))) == pytest.approx((ce0 + CE1) / 2, abs=1e-6)
  assert float(loss_fn(jnp.asarray(LOGITS), _batch(LABELS, [1.0, 0.0]))) == pytest.approx(ce0, abs=1e-6)
  plain = losses.loss_fn_for(tiny_config(num_classes=3))  # label_smoothing None.
  assert float(plain(jnp.asarray(LOGITS), _batch(LABELS))) == pytest.approx((CE0 + CE1) / 2, abs=1e-6)


def test_loss_fn_for_multilabel_uses_sigmoid():
  config = tiny_config(num_classes=2, model_name='vivit_multilabel_classification')
  logits = np.array([[0.0, 2.0], [-1.0, 0.0]], np.float32)
  labels = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  ex0 = math.log(2.0) + math.log(1.0 + math.exp(2.0))
  got = losses.loss_fn_for(config)(jnp.asarray(logits), _batch(labels, [1.0, 0.0]))
  assert float(got) == pytest.approx(ex0, abs=1e-6)
  # Smoothing s = 0.2 with C = 2: targets (0.9, 0.1). -0.9 log sigmoid(0) - 0.1 log(1 - sigmoid(0))
  # - 0.1 log sigmoid(2) - 0.9 log(1 - sigmoid(2)) = log 2 + 0.1 log(1 + e^-2) + 0.9 log(1 + e^2).
  smoothed = losses.loss_fn_for(tiny_config(num_classes=2, model_name='vivit_multilabel_classification',
                                            label_smoothing=0.2))
  want = math.log(2.0) + 0.1 * math.log(1.0 + math.exp(-2.0)) + 0.9 * math.log(1.0 + math.exp(2.0))
  assert float(smoothed(jnp.asarray(logits), _batch(labels, [1.0, 0.0]))) == pytest.approx(want, abs=1e-6)


MH_LOGITS = np.array([[2.0, 0.0, 1.0, 2.0, 3.0],
                      [0.0, 1.0, 0.0, 0.0, 0.0]], np.float32)
MH_LABELS = np.array([[1.0, 0.0, 0.0, 0.0, 1.0],
                      [0.0, 1.0, 1.0, 0.0, 0.0]], np.float32)


def test_multihead_loss_is_the_sum_of_per_head_losses():
  config = tiny_config(model_name='vivit_multihead_classification', dataset_configs__class_splits=(2, 3),
                       num_classes=5)
  # Head A (2 classes): example 0 logits (2, 0), class 0: log(1 + e^-2) = 0.1269280;
  #                     example 1 logits (0, 1), class 1: log(1 + e^-1) = 0.3132617.
  head_a = (math.log(1.0 + math.exp(-2.0)) + math.log(1.0 + math.exp(-1.0))) / 2
  # Head B (3 classes): exactly the 2x3 case above, (CE0 + CE1) / 2.
  head_b = (CE0 + CE1) / 2
  got = losses.loss_fn_for(config)(jnp.asarray(MH_LOGITS), _batch(MH_LABELS))
  assert float(got) == pytest.approx(head_a + head_b, abs=1e-6)  # 0.2200949 + 0.7531091
  masked = losses.loss_fn_for(config)(jnp.asarray(MH_LOGITS), _batch(MH_LABELS, [0.0, 1.0]))
  assert float(masked) == pytest.approx(math.log(1.0 + math.exp(-1.0)) + CE1, abs=1e-6)


def test_multihead_smoothing_is_per_head():
  config = tiny_config(model_name='vivit_multihead_classification', dataset_configs__class_splits=(2, 3),
                       num_classes=5, label_smoothing=0.3)
  # Head A, C = 2: targets on 0.85, off 0.15. Head B, C = 3: on 0.8, off 0.1 (not s / 5 over all 5 classes).
  head_a = (_ce([2.0, 0.0], [0.85, 0.15]) + _ce([0.0, 1.0], [0.15, 0.85])) / 2
  head_b = (_ce([1.0, 2.0, 3.0], [0.1, 0.1, 0.8]) + _ce([0.0, 0.0, 0.0], [0.8, 0.1, 0.1])) / 2
  got = losses.loss_fn_for(config)(jnp.asarray(MH_LOGITS), _batch(MH_LABELS))
  assert float(got) == pytest.approx(head_a + head_b, abs=1e-6)


def test_multihead_rejects_mismatched_splits():
  with pytest.raises(ValueError, match='class_splits'):
    losses.multihead_softmax_cross_entropy(jnp.zeros((2, 4)), jnp.zeros((2, 4)), (2, 3))
  assert losses.split_offsets((2, 3)) == [(0, 2), (2, 5)]


def test_unknown_model_name():
  config = ml_collections.ConfigDict({'model_name': 'resnet', 'label_smoothing': None})
  with pytest.raises(ValueError, match='unknown model_name'):
    losses.loss_fn_for(config)


@pytest.mark.parametrize('model_name', ['vivit_classification', 'vivit_multilabel_classification',
                                        'vivit_multihead_classification'])
def test_loss_under_jit_on_a_sharded_batch(model_name):
  config = tiny_config(model_name=model_name, dataset_configs__class_splits=(2, 3), num_classes=5,
                       label_smoothing=0.1)
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(16, 5)).astype(np.float32)
  labels = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 16)]
  mask = np.array([1.0] * 13 + [0.0] * 3, np.float32)
  mesh = jax.make_mesh((8,), ('data',))
  shard = NamedSharding(mesh, P('data'))
  batch = {'label': jax.device_put(labels, shard), 'batch_mask': jax.device_put(mask, shard)}
  loss_fn = losses.loss_fn_for(config)
  got = jax.jit(loss_fn)(jax.device_put(logits, shard), batch)
  want = loss_fn(jnp.asarray(logits), {'label': jnp.asarray(labels), 'batch_mask': jnp.asarray(mask)})
  np.testing.assert_allclose(got, want, rtol=1e-6)
  grad = jax.jit(jax.grad(loss_fn))(jax.device_put(logits, shard), batch)
  np.testing.assert_array_equal(np.asarray(grad)[13:], 0.0)  # Padding rows get no gradient.
