"""Classification counts and summaries against hand-made cases."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vivit_jax.eval import metrics

# Three real examples and one padding row, three classes.
LOGITS = np.array([[3.0, 1.0, 2.0],   # class 0: top-1 hit.
                   [1.0, 3.0, 2.0],   # class 2: top-1 miss (predicts 1), in the top 3.
                   [0.0, 0.0, 5.0],   # class 2: top-1 hit.
                   [9.0, 0.0, 0.0]],  # padding, class 1: would be a miss with a large loss.
                  np.float32)
LABELS = np.eye(3, dtype=np.float32)[[0, 2, 2, 1]]
MASK = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
# Cross-entropies: log-sum-exp minus the target logit.
CE = [math.log(1.0 + math.exp(-1.0) + math.exp(-2.0)),           # 3.4076 - 3 = 0.4076059
      math.log(math.exp(-2.0) + 1.0 + math.exp(-1.0)) + 1.0,     # 3.4076 - 2 = 1.4076059
      math.log(1.0 + 2.0 * math.exp(-5.0))]                      # 5.0134 - 5 = 0.0133857


def _floats(counts):
  return {k: float(v) for k, v in counts.items()}


def test_hand_cross_entropies():
  np.testing.assert_allclose(CE, [0.4076059, 1.4076059, 0.0133857], atol=1e-6)


def test_counts_with_padding_and_fewer_than_five_classes():
  counts = metrics.classification_counts(jnp.asarray(LOGITS), jnp.asarray(LABELS), jnp.asarray(MASK))
  assert set(counts) == set(metrics.COUNT_KEYS)
  assert all(v.dtype == jnp.float32 and v.shape == () for v in counts.values())
  got = _floats(counts)
  assert got['num_examples'] == 3.0
  assert got['correct'] == 2.0
  assert got['correct_top_5'] == 3.0  # C = 3 < 5: top-3, which holds every class.
  assert got['loss_sum'] == pytest.approx(sum(CE), abs=1e-5)  # 1.8285975


def test_counts_without_a_mask_count_every_row():
  got = _floats(metrics.classification_counts(jnp.asarray(LOGITS[:3]), jnp.asarray(LABELS[:3])))
  assert got == pytest.approx({'num_examples': 3.0, 'correct': 2.0, 'correct_top_5': 3.0,
                               'loss_sum': sum(CE)}, abs=1e-5)


def test_top_5_with_seven_classes():
  logits = np.tile(np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]], np.float32), (3, 1))
  # Class 0 ranks 1st (top-1 and top-5 hit), class 4 ranks 5th (top-5 hit), class 5 ranks 6th (miss).
  labels = np.eye(7, dtype=np.float32)[[0, 4, 5]]
  got = _floats(metrics.classification_counts(jnp.asarray(logits), jnp.asarray(labels)))
  assert (got['correct'], got['correct_top_5']) == (1.0, 2.0)


def test_top_k_with_two_classes_is_always_a_hit():
  logits = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
  labels = np.eye(2, dtype=np.float32)[[0, 1]]
  got = _floats(metrics.classification_counts(jnp.asarray(logits), jnp.asarray(labels)))
  assert (got['correct'], got['correct_top_5']) == (1.0, 2.0)
  # Example 1: -log softmax(1, 0)[1] = log(1 + e) = 1.3132617; example 0: log(1 + e^-1) = 0.3132617.
  assert got['loss_sum'] == pytest.approx(math.log(1 + math.e) + math.log(1 + math.exp(-1.0)), abs=1e-6)


def test_multilabel_uses_the_first_positive_label_and_sigmoid_loss():
  logits = np.array([[0.0, 0.0, 5.0]], np.float32)
  labels = np.array([[0.0, 1.0, 1.0]], np.float32)  # argmax(labels) = 1, the first positive class.
  got = _floats(metrics.classification_counts(jnp.asarray(logits), jnp.asarray(labels), loss='sigmoid'))
  assert (got['correct'], got['correct_top_5']) == (0.0, 1.0)
  # -log(1 - sigmoid(0)) - log sigmoid(0) - log sigmoid(5) = 2 log 2 + log(1 + e^-5) = 1.3929678.
  assert got['loss_sum'] == pytest.approx(2 * math.log(2.0) + math.log(1.0 + math.exp(-5.0)), abs=1e-6)
  with pytest.raises(ValueError, match='loss'):
    metrics.classification_counts(jnp.asarray(logits), jnp.asarray(labels), loss='hinge')


def test_counts_add_across_batches_and_summarize():
  first = metrics.classification_counts(jnp.asarray(LOGITS[:2]), jnp.asarray(LABELS[:2]))
  second = metrics.classification_counts(jnp.asarray(LOGITS[2:]), jnp.asarray(LABELS[2:]),
                                         jnp.asarray(MASK[2:]))
  total = metrics.add_counts(metrics.add_counts(None, first), second)
  summary = metrics.summarize_counts(total, 'valid')
  assert summary == pytest.approx({'valid/accuracy': 2 / 3, 'valid/accuracy_top_5': 1.0,
                                   'valid/loss': sum(CE) / 3}, abs=1e-6)
  assert all(isinstance(v, float) for v in summary.values())


def test_summarize_numpy_python_and_empty_counts():
  numpy_counts = {'num_examples': np.float32(4), 'correct': np.float32(1), 'correct_top_5': np.float32(3),
                  'loss_sum': np.float32(2)}
  assert metrics.summarize_counts(numpy_counts, 'test') == {
      'test/accuracy': 0.25, 'test/accuracy_top_5': 0.75, 'test/loss': 0.5}
  empty = dict.fromkeys(metrics.COUNT_KEYS, 0.0)
  assert metrics.summarize_counts(empty, 'x') == {'x/accuracy': 0.0, 'x/accuracy_top_5': 0.0, 'x/loss': 0.0}


def test_bfloat16_logits():
  counts = metrics.classification_counts(jnp.asarray(LOGITS, jnp.bfloat16), jnp.asarray(LABELS),
                                         jnp.asarray(MASK))
  assert float(counts['loss_sum']) == pytest.approx(sum(CE), abs=1e-5)  # Integer logits are exact.


def test_counts_under_jit_on_a_sharded_batch():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(16, 7)).astype(np.float32)
  labels = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 16)]
  mask = np.array([1.0] * 11 + [0.0] * 5, np.float32)
  shard = NamedSharding(jax.make_mesh((8,), ('data',)), P('data'))
  got = jax.jit(metrics.classification_counts)(*(jax.device_put(a, shard) for a in (logits, labels, mask)))
  # numpy reference: ranks by sorting, log-sum-exp by hand.
  target = labels.argmax(-1)
  rank = (logits > logits[np.arange(16), target][:, None]).sum(-1)  # 0 = top-1.
  lse = np.log(np.exp(logits).sum(-1))
  want = {'num_examples': 11.0, 'correct': float(((rank == 0) * mask).sum()),
          'correct_top_5': float(((rank < 5) * mask).sum()),
          'loss_sum': float(((lse - logits[np.arange(16), target]) * mask).sum())}
  assert _floats(got) == pytest.approx(want, abs=1e-4)
