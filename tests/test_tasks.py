"""The task: heads, losses against hand calculations written out with `math`, probabilities and label vectors."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tests.tiny import tiny_config
from vivit_jax import tasks

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
  got = tasks.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS))
  assert got.dtype == jnp.float32 and got.shape == ()
  assert float(got) == pytest.approx((CE0 + CE1) / 2, abs=1e-6)  # 0.7531091
  per_example = tasks.softmax_cross_entropy_per_example(jnp.asarray(LOGITS), jnp.asarray(LABELS))
  np.testing.assert_allclose(per_example, [CE0, CE1], atol=1e-6)


def test_smooth_labels_formula():
  # s = 0.3, C = 3: on-value 1 - 0.3 + 0.1 = 0.8, off-value 0.3 / 3 = 0.1.
  got = tasks.smooth_labels(jnp.asarray(LABELS), 0.3)
  np.testing.assert_allclose(got, [[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]], atol=1e-7)
  np.testing.assert_array_equal(tasks.smooth_labels(jnp.asarray(LABELS), None), LABELS)


def test_softmax_cross_entropy_with_label_smoothing():
  # Example 0 with labels (0.1, 0.1, 0.8): -log p = (LSE0 - 1, LSE0 - 2, LSE0 - 3) = (2.4076, 1.4076, 0.4076),
  # so 0.1 * 2.4076059 + 0.1 * 1.4076059 + 0.8 * 0.4076059 = 0.7076059.
  ce0 = 0.1 * (LSE0 - 1.0) + 0.1 * (LSE0 - 2.0) + 0.8 * (LSE0 - 3.0)
  assert ce0 == pytest.approx(0.7076059, abs=1e-6)
  # Example 1 has uniform logits, so any label vector summing to 1 gives log 3.
  smoothed = tasks.smooth_labels(jnp.asarray(LABELS), 0.3)
  got = tasks.softmax_cross_entropy(jnp.asarray(LOGITS), smoothed)
  assert float(got) == pytest.approx((ce0 + CE1) / 2, abs=1e-6)  # 0.9031091


def test_weights_exclude_padding():
  logits = np.concatenate([LOGITS, [[100.0, -100.0, 0.0]]]).astype(np.float32)
  labels = np.concatenate([LABELS, [[0.0, 0.0, 0.0]]]).astype(np.float32)
  weights = np.array([1.0, 1.0, 0.0], np.float32)
  got = tasks.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights))
  assert float(got) == pytest.approx((CE0 + CE1) / 2, abs=1e-6)
  only_first = tasks.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), jnp.array([1.0, 0.0]))
  assert float(only_first) == pytest.approx(CE0, abs=1e-6)
  # All-padding batch: 0 / max(0, 1e-8) = 0, not NaN.
  none = tasks.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), jnp.zeros(2))
  assert float(none) == 0.0


def test_bfloat16_logits_are_computed_in_float32():
  got = tasks.softmax_cross_entropy(jnp.asarray(LOGITS, jnp.bfloat16), jnp.asarray(LABELS))
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
  got = tasks.sigmoid_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  assert float(got) == pytest.approx((ex0 + ex1) / 2, abs=1e-6)
  weighted = tasks.sigmoid_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.array([0.0, 1.0]))
  assert float(weighted) == pytest.approx(ex1, abs=1e-6)


def test_sigmoid_cross_entropy_is_stable_for_large_logits():
  # Logit 100 with label 0 costs log(1 + e^100) = 100 (to float precision); -100 with label 1 likewise.
  got = tasks.sigmoid_cross_entropy(jnp.array([[100.0, -100.0]]), jnp.array([[0.0, 1.0]]))
  assert float(got) == pytest.approx(200.0, rel=1e-6)


def _batch(logits_shape_labels, mask=None):
  batch = {'label': jnp.asarray(logits_shape_labels)}
  if mask is not None:
    batch['batch_mask'] = jnp.asarray(mask, jnp.float32)
  return batch


def loss_fn_for(config):
  """The task's training loss as a function of (logits, batch), as the train step calls it."""
  task = tasks.Task.from_config(config)
  return lambda logits, batch: task.train_loss(logits, batch['label'], batch.get('batch_mask'))


def test_loss_fn_for_classification_with_smoothing_and_mask():
  config = tiny_config(num_classes=3, label_smoothing=0.3)
  loss_fn = loss_fn_for(config)
  ce0 = 0.1 * (LSE0 - 1.0) + 0.1 * (LSE0 - 2.0) + 0.8 * (LSE0 - 3.0)
  assert float(loss_fn(jnp.asarray(LOGITS), _batch(LABELS))) == pytest.approx((ce0 + CE1) / 2, abs=1e-6)
  assert float(loss_fn(jnp.asarray(LOGITS), _batch(LABELS, [1.0, 0.0]))) == pytest.approx(ce0, abs=1e-6)
  plain = loss_fn_for(tiny_config(num_classes=3))  # label_smoothing None.
  assert float(plain(jnp.asarray(LOGITS), _batch(LABELS))) == pytest.approx((CE0 + CE1) / 2, abs=1e-6)


def test_loss_fn_for_multilabel_uses_sigmoid():
  config = tiny_config(num_classes=2, model_name='vivit_multilabel_classification')
  logits = np.array([[0.0, 2.0], [-1.0, 0.0]], np.float32)
  labels = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  ex0 = math.log(2.0) + math.log(1.0 + math.exp(2.0))
  got = loss_fn_for(config)(jnp.asarray(logits), _batch(labels, [1.0, 0.0]))
  assert float(got) == pytest.approx(ex0, abs=1e-6)
  # Smoothing s = 0.2 with C = 2: targets (0.9, 0.1). -0.9 log sigmoid(0) - 0.1 log(1 - sigmoid(0))
  # - 0.1 log sigmoid(2) - 0.9 log(1 - sigmoid(2)) = log 2 + 0.1 log(1 + e^-2) + 0.9 log(1 + e^2).
  smoothed = loss_fn_for(tiny_config(num_classes=2, model_name='vivit_multilabel_classification',
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
  got = loss_fn_for(config)(jnp.asarray(MH_LOGITS), _batch(MH_LABELS))
  assert float(got) == pytest.approx(head_a + head_b, abs=1e-6)  # 0.2200949 + 0.7531091
  masked = loss_fn_for(config)(jnp.asarray(MH_LOGITS), _batch(MH_LABELS, [0.0, 1.0]))
  assert float(masked) == pytest.approx(math.log(1.0 + math.exp(-1.0)) + CE1, abs=1e-6)


def test_multihead_smoothing_is_per_head():
  config = tiny_config(model_name='vivit_multihead_classification', dataset_configs__class_splits=(2, 3),
                       num_classes=5, label_smoothing=0.3)
  # Head A, C = 2: targets on 0.85, off 0.15. Head B, C = 3: on 0.8, off 0.1 (not s / 5 over all 5 classes).
  head_a = (_ce([2.0, 0.0], [0.85, 0.15]) + _ce([0.0, 1.0], [0.15, 0.85])) / 2
  head_b = (_ce([1.0, 2.0, 3.0], [0.1, 0.1, 0.8]) + _ce([0.0, 0.0, 0.0], [0.8, 0.1, 0.1])) / 2
  got = loss_fn_for(config)(jnp.asarray(MH_LOGITS), _batch(MH_LABELS))
  assert float(got) == pytest.approx(head_a + head_b, abs=1e-6)


def test_multihead_rejects_mismatched_splits():
  task = tasks.Task.from_config(tiny_config(model_name='vivit_multihead_classification',
                                            dataset_configs__class_splits=(2, 3), num_classes=5))
  with pytest.raises(ValueError, match='class_splits'):
    task.train_loss(jnp.zeros((2, 4)), jnp.zeros((2, 4)))
  assert tasks.split_offsets((2, 3)) == [(0, 2), (2, 5)]


def test_unknown_model_name():
  config = ml_collections.ConfigDict({'model_name': 'resnet', 'label_smoothing': None})
  with pytest.raises(ValueError, match='unknown model_name'):
    tasks.Task.from_config(config)


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
  loss_fn = loss_fn_for(config)
  got = jax.jit(loss_fn)(jax.device_put(logits, shard), batch)
  want = loss_fn(jnp.asarray(logits), {'label': jnp.asarray(labels), 'batch_mask': jnp.asarray(mask)})
  np.testing.assert_allclose(got, want, rtol=1e-6)
  grad = jax.jit(jax.grad(loss_fn))(jax.device_put(logits, shard), batch)
  np.testing.assert_array_equal(np.asarray(grad)[13:], 0.0)  # Padding rows get no gradient.


# The Task: one object from the config, read by every module that needs to tell the tasks apart.


def test_heads_of_each_task():
  single = tasks.Task.from_config(tiny_config(num_classes=5, label_smoothing=0.1))
  assert single.heads == (tasks.Head('', 0, 5),) and single.num_classes == 5 and single.label_smoothing == 0.1
  assert not single.multi_label and not single.multi_head
  multilabel = tasks.Task.from_config(tiny_config(num_classes=4, model_name='vivit_multilabel_classification'))
  assert multilabel.multi_label and multilabel.heads == (tasks.Head('', 0, 4),)
  epic = tasks.Task.from_config(tiny_config(model_name='vivit_multihead_classification', num_classes=5,
                                            dataset_configs__class_splits=(2, 3),
                                            dataset_configs__split_names=('noun', 'verb')))
  assert epic.multi_head and epic.head_spans == {'noun': (0, 2), 'verb': (2, 5)}
  unnamed = tasks.Task.from_config(tiny_config(model_name='vivit_multihead_classification', num_classes=5,
                                               dataset_configs__class_splits=(2, 3)))
  assert [h.name for h in unnamed.heads] == ['head0', 'head1']
  assert epic.head_offsets == (0, 2) and single.head_offsets == (0,)
  assert epic.describe()['heads'][1] == {'name': 'verb', 'start': 2, 'stop': 5}


def test_probabilities_and_back_to_logits():
  logits = jnp.asarray([[1.0, 2.0, 0.5, -1.0, 3.0]])
  epic = tasks.Task(tasks.MULTIHEAD, (tasks.Head('noun', 0, 2), tasks.Head('verb', 2, 5)))
  p = np.asarray(epic.probabilities(logits))
  np.testing.assert_allclose([p[0, :2].sum(), p[0, 2:].sum()], [1.0, 1.0], rtol=1e-6)  # Softmax per head.
  np.testing.assert_allclose(p[0, :2], np.asarray(jax.nn.softmax(logits[0, :2])), rtol=1e-6)
  single = tasks.Task(tasks.CLASSIFICATION, (tasks.Head('', 0, 5),))
  np.testing.assert_allclose(single.probabilities(logits), jax.nn.softmax(logits), rtol=1e-6)
  np.testing.assert_allclose(single.probabilities(single.logits_of(single.probabilities(logits))),
                             single.probabilities(logits), rtol=1e-5)
  multilabel = tasks.Task(tasks.MULTILABEL, (tasks.Head('', 0, 5),))
  np.testing.assert_allclose(multilabel.probabilities(logits), jax.nn.sigmoid(logits), rtol=1e-6)
  np.testing.assert_allclose(multilabel.logits_of(multilabel.probabilities(logits)), logits, rtol=1e-4)


def test_eval_loss_is_the_unsmoothed_per_example_loss_of_the_task():
  smoothed = tasks.Task.from_config(tiny_config(num_classes=3, label_smoothing=0.3))
  np.testing.assert_allclose(smoothed.eval_loss(jnp.asarray(LOGITS), jnp.asarray(LABELS)), [CE0, CE1], rtol=1e-6)
  multilabel = tasks.Task(tasks.MULTILABEL, (tasks.Head('', 0, 3),))
  np.testing.assert_allclose(multilabel.eval_loss(jnp.asarray(LOGITS), jnp.asarray(LABELS)),
                             tasks.sigmoid_cross_entropy_per_example(jnp.asarray(LOGITS), jnp.asarray(LABELS)))


def test_head_label_names():
  epic = tasks.Task(tasks.MULTIHEAD, (tasks.Head('noun', 0, 2), tasks.Head('verb', 2, 5)))
  assert epic.head_label_names(['pan', 'cup', 'take', 'wash', 'cut']) == {'noun': ['pan', 'cup'],
                                                                           'verb': ['take', 'wash', 'cut']}
  assert epic.head_label_names(None)['verb'] == ['class_0', 'class_1', 'class_2']


def test_a_multi_head_task_without_class_splits_is_a_config_error():
  from vivit_jax.config import ConfigError  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match='needs .dataset_configs.class_splits'):
    tiny_config(model_name='vivit_multihead_classification')


def test_no_other_module_tells_the_tasks_apart_by_name():
  """`model_name` is read by Task.from_config only; the names themselves appear in tasks.py and as the default."""
  from tests import paths  # pylint: disable=g-import-not-at-top
  names = ('vivit_classification', 'vivit_multilabel_classification', 'vivit_multihead_classification')
  offenders = []
  for path in sorted((paths.ROOT / 'vivit_jax').rglob('*.py')):
    if path.name == 'tasks.py':
      continue
    for number, line in enumerate(path.read_text().splitlines(), 1):
      code = line.split('#')[0]
      if 'model_name' in code and ('==' in code or '!=' in code or ' in (' in code):
        offenders.append(f'{path.name}:{number}: {line.strip()}')
      if any(f"'{n}'" in code for n in names) and path.name != 'defaults.py':
        offenders.append(f'{path.name}:{number}: {line.strip()}')
  assert offenders == []
