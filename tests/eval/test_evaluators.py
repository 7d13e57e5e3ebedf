"""The evaluation path (one or many views) and the detailed metrics, on hand-made logits (a fake model that looks
its logits up)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tiny import tiny_config
from vivit_jax import tasks
from vivit_jax.eval import evaluators as evaluate
from vivit_jax.eval import metrics
from vivit_jax import sharding as sharding_lib
from vivit_jax.config import ConfigError
from vivit_jax.data import Views
from vivit_jax.data.synthetic import SyntheticPipeline

SINGLE = {'': (0, 2)}


def task_of(heads, multi_label=False):
  """The task whose heads are `heads` ({name: (start, stop)})."""
  model_name = tasks.MULTILABEL if multi_label else tasks.MULTIHEAD if len(heads) > 1 else tasks.CLASSIFICATION
  return tasks.Task(model_name, tuple(tasks.Head(name, a, b) for name, (a, b) in heads.items()))


@pytest.fixture(scope='module')
def mesh():
  return sharding_lib.create_mesh({'data': -1, 'fsdp': 1, 'model': 1})


def lookup(table, clips):
  """A fake model: clip n's logits are row `clips[n, 0, 0, 0, 0]` of the params `table`."""
  return table[clips[:, 0, 0, 0, 0].astype(jnp.int32)]


def view_batch(ids, labels, mask=None):
  """A batch whose view (b, v) is a [1, 1, 1, 3] clip holding the row id `ids[b, v]`."""
  ids = np.asarray(ids, np.float32)
  inputs = np.broadcast_to(ids[:, :, None, None, None, None], ids.shape + (1, 1, 1, 3)).copy()
  mask = np.ones(len(ids), np.float32) if mask is None else np.asarray(mask, np.float32)
  return {'inputs': inputs, 'label': np.asarray(labels, np.float32), 'batch_mask': mask}


def run_step(mesh, table, batch, heads=SINGLE, **kwargs):
  step = evaluate.make_eval_step(lookup, task_of(heads), mesh, **kwargs)
  jitted = evaluate.jit_eval_step(step, sharding_lib.replicated(mesh), mesh)
  return jax.device_get(jitted(jnp.asarray(table, jnp.float32), sharding_lib.global_batch(batch, mesh)))


# Three views of a video of class 1: one sure of class 0, two mildly for class 1. The mean of the logits
# ([10/3, 4/3]) picks class 0; the mean of the softmax ([0.413, 0.587]) picks class 1.
CRAFTED = np.array([[10.0, 0.0], [0.0, 2.0], [0.0, 2.0]])


def test_mean_of_logits_and_mean_of_softmax_pick_differently_on_hand_made_logits():
  views = jnp.asarray(CRAFTED)[None]
  np.testing.assert_allclose(evaluate.aggregate_views(views, task_of(SINGLE), aggregation='logits'), [[10 / 3, 4 / 3]],
                             rtol=1e-6)
  e = np.exp(CRAFTED - CRAFTED.max(axis=-1, keepdims=True))
  p = (e / e.sum(axis=-1, keepdims=True)).mean(axis=0)
  assert p.argmax() == 1 and CRAFTED.mean(axis=0).argmax() == 0
  np.testing.assert_allclose(np.exp(evaluate.aggregate_views(views, task_of(SINGLE), aggregation='softmax')), [p],
                             rtol=1e-5)


def test_aggregation_through_the_jitted_step(mesh):
  batch = view_batch(np.tile(np.arange(3), (8, 1)), np.tile([[0.0, 1.0]], (8, 1)))
  by_logits = run_step(mesh, CRAFTED, batch, aggregation='logits')['counts']['heads']['']
  by_softmax = run_step(mesh, CRAFTED, batch, aggregation='softmax')['counts']['heads']['']
  assert (by_logits['correct'], by_softmax['correct']) == (0.0, 8.0)
  np.testing.assert_allclose(by_logits['loss_sum'] / 8, np.log1p(np.exp(10 / 3 - 4 / 3)), rtol=1e-5)
  mean_p1 = (np.exp(-10) / (1 + np.exp(-10)) + 2 * np.exp(2) / (1 + np.exp(2))) / 3
  np.testing.assert_allclose(by_softmax['loss_sum'] / 8, -np.log(mean_p1), rtol=1e-5)
  np.testing.assert_array_equal(by_logits['confusion'], [[0, 0], [8, 0]])
  np.testing.assert_array_equal(by_softmax['confusion'], [[0, 0], [0, 8]])


def test_unknown_aggregation_is_an_error(mesh):
  with pytest.raises(ValueError, match='aggregation'):
    evaluate.make_eval_step(lookup, task_of(SINGLE), mesh, aggregation='max')


@pytest.mark.parametrize('views,batch,budget,expected', [
    (12, 8, 64, 6), (12, 8, 8, 1), (12, 8, 100, 12), (12, 64, 64, 1), (12, 128, 64, 1), (7, 8, 40, 1),
    (6, 8, 24, 3), (1, 8, 1, 1)])
def test_views_per_pass_is_the_largest_even_chunk_within_the_budget(views, batch, budget, expected):
  assert evaluate.views_per_pass(views, batch, budget) == expected


def test_chunked_views_give_the_unchunked_result_and_each_view_goes_through_once(mesh):
  rng = np.random.default_rng(0)
  table = rng.normal(size=(8 * 12, 5)) * 3
  ids = np.arange(8 * 12).reshape(8, 12)
  labels = np.eye(5)[rng.integers(0, 5, 8)]
  shapes = []

  def counting(table, clips):
    shapes.append(clips.shape[0])  # Recorded when traced: one entry per distinct forward pass.
    return lookup(table, clips)

  results = []
  for budget in (8, 16, 24, 48, 96):
    shapes.clear()
    step = evaluate.make_eval_step(counting, task_of({'': (0, 5)}), mesh, max_views_per_batch=budget)
    out = jax.jit(step)(jnp.asarray(table, jnp.float32), sharding_lib.global_batch(view_batch(ids, labels), mesh))
    k = evaluate.views_per_pass(12, 8, budget)
    assert shapes[0] == 8 * k <= budget  # the clips of one pass
    results.append(jax.device_get(out['counts']))
  expected = jax.device_get(run_step(mesh, table, view_batch(ids, labels), {'': (0, 5)},
                                     max_views_per_batch=10 ** 6)['counts'])
  for r in results:
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), r, expected)


def test_padding_rows_count_for_nothing(mesh):
  ids = np.tile(np.arange(3), (8, 1))
  labels = np.tile([[1.0, 0.0]], (8, 1))
  counts = run_step(mesh, CRAFTED, view_batch(ids, labels, mask=[1] * 5 + [0] * 3))['counts']['heads']['']
  assert counts['num_examples'] == 5 and counts['correct'] == 5
  assert counts['confusion'].sum() == 5


def test_confusion_matrix_and_per_class_accuracy_by_hand_with_many_classes():
  # 12 classes (Scenic only gave per-class numbers below 10); class 11 has no video.
  true = np.array([0, 0, 0, 1, 1, 2, 3, 10, 10, 10])
  pred = np.array([0, 0, 1, 1, 2, 2, 3, 10, 0, 5])
  mask = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0], np.float32)
  logits = jnp.asarray(np.eye(12)[pred] * 5.0)
  confusion = np.asarray(metrics.confusion_matrix(logits, jnp.asarray(np.eye(12)[true]), jnp.asarray(mask)))
  expected = np.zeros((12, 12))
  for t, p, m in zip(true, pred, mask):
    expected[t, p] += m
  np.testing.assert_array_equal(confusion, expected)
  videos, accuracy = metrics.per_class_accuracy(confusion)
  np.testing.assert_array_equal(videos[[0, 1, 2, 3, 10, 11]], [3, 2, 1, 1, 2, 0])
  np.testing.assert_allclose(accuracy[[0, 1, 2, 3, 10]], [2 / 3, 1 / 2, 1, 1, 1 / 2])
  assert np.isnan(accuracy[11]) and np.isnan(accuracy[4])
  assert metrics.mean_per_class_accuracy(confusion) == pytest.approx((2 / 3 + 1 / 2 + 1 + 1 + 1 / 2) / 5)


def epic_logits(noun, verb):
  return np.concatenate([np.log(noun), np.log(verb)], axis=-1)


EPIC = {'noun': (0, 4), 'verb': (4, 7)}


def test_epic_action_top1_and_top5_by_hand():
  # Video 0: noun and verb right -> action right. Video 1: noun right, verb 2nd -> action top-1 wrong, but the
  # pair is 2nd by joint score (0.6 * 0.4) -> in the top 5. Video 2: true pair (noun 3, verb 2) has probability
  # 0.1 * 0.1, below the five pairs made of nouns 0..1 and verbs 0..1 and (noun 2, verb 0) -> not in the top 5.
  noun = np.array([[0.7, 0.1, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]])
  verb = np.array([[0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.5, 0.4, 0.1]])
  labels = np.concatenate([np.eye(4)[[0, 0, 3]], np.eye(3)[[1, 1, 2]]], axis=-1)
  counts = jax.device_get(metrics.action_counts(jnp.asarray(epic_logits(noun, verb)), jnp.asarray(labels),
                                                None, EPIC))
  assert (counts['num_examples'], counts['correct'], counts['correct_top_5']) == (3, 1, 2)
  summary = metrics.summarize_evaluation(jax.device_get(metrics.evaluation_counts(
      jnp.asarray(epic_logits(noun, verb)), jnp.asarray(labels), None, task_of(EPIC))), 'test')
  assert summary['test/action/accuracy'] == pytest.approx(1 / 3)
  assert summary['test/action/accuracy_top_5'] == pytest.approx(2 / 3)
  assert summary['test/noun/accuracy'] == pytest.approx(2 / 3)
  assert summary['test/verb/accuracy'] == pytest.approx(1 / 3)
  assert summary['test/verb/accuracy_top_5'] == 1.0  # top-5 of a 3-class head: every class
  assert summary['test/noun/mean_per_class_accuracy'] == pytest.approx((1.0 + 0.0) / 2)


def test_joint_top_k_matches_brute_force():
  rng = np.random.default_rng(3)
  heads = [jax.nn.log_softmax(jnp.asarray(rng.normal(size=(6, c)) * 2), axis=-1) for c in (7, 3, 4)]
  scores, chosen = metrics.joint_top_k(heads, 5)
  for b in range(6):
    combos = sorted(itertools.product(*(range(h.shape[1]) for h in heads)),
                    key=lambda c: -sum(float(h[b, i]) for h, i in zip(heads, c)))[:5]
    got = [tuple(int(c[b, j]) for c in chosen) for j in range(5)]
    assert got == combos
    np.testing.assert_allclose(scores[b], [sum(float(h[b, i]) for h, i in zip(heads, c)) for c in combos],
                               rtol=1e-5)


def test_multi_head_step_counts_each_head_and_the_action(mesh):
  rng = np.random.default_rng(1)
  table = rng.normal(size=(16, 7))
  labels = np.concatenate([np.eye(4)[rng.integers(0, 4, 8)], np.eye(3)[rng.integers(0, 3, 8)]], axis=-1)
  out = run_step(mesh, table, view_batch(np.arange(16).reshape(8, 2), labels), EPIC)['counts']
  mean = (table[0::2] + table[1::2]) / 2
  noun_right = mean[:, :4].argmax(-1) == labels[:, :4].argmax(-1)
  verb_right = mean[:, 4:].argmax(-1) == labels[:, 4:].argmax(-1)
  assert out['heads']['noun']['correct'] == noun_right.sum()
  assert out['heads']['verb']['correct'] == verb_right.sum()
  assert out['action']['correct'] == (noun_right & verb_right).sum()
  assert out['heads']['noun']['confusion'].shape == (4, 4) and out['heads']['verb']['confusion'].shape == (3, 3)


def test_mean_average_precision_by_hand():
  scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.9], [0.5, 0.5]])
  labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0], [1, 0]])
  # Class 0 ranks rows 0 (+), 1 (-), 4 (+), 2 (+): AP = (1/1 + 2/3 + 3/4) / 3. Class 1 ranks 3 (-), 1 (+):
  # AP = 1/2. The masked row 4 would change class 0's AP.
  assert metrics.mean_average_precision(scores, labels) == pytest.approx(((1 + 2 / 3 + 3 / 4) / 3 + 1 / 2) / 2)
  masked = metrics.mean_average_precision(scores, labels, mask=[1, 1, 1, 1, 0])
  assert masked == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 2)


def synthetic_config(**overrides):
  settings = dict(dataset_name='synthetic', dataset_configs__examples_per_subset__train=16,
                  dataset_configs__examples_per_subset__validation=11, eval_batch_size=8,
                  dataset_configs__num_test_clips=2, dataset_configs__do_three_spatial_crops=True)
  settings.update(overrides)
  return tiny_config('spacetime', **settings)


def test_synthetic_multi_view_batches_are_shifted_copies_of_the_single_view_clip():
  p = SyntheticPipeline(synthetic_config())
  single, multi = next(p.eval_batches('validation')), next(p.eval_batches('validation', Views(2, 3)))
  assert multi['inputs'].shape == (8, 6, 8, 16, 16, 3)
  np.testing.assert_array_equal(multi['label'], single['label'])
  clips = single['inputs']
  np.testing.assert_array_equal(multi['inputs'][:, 1], clips)  # temporal view 0, centre crop
  np.testing.assert_array_equal(multi['inputs'][:, 0], np.roll(clips, -2, axis=3))  # W/8 = 2 pixels
  np.testing.assert_array_equal(multi['inputs'][:, 4], np.roll(clips, -4, axis=1))  # offset T/2, centre
  one = SyntheticPipeline(synthetic_config(dataset_configs__num_test_clips=1,
                                           dataset_configs__do_three_spatial_crops=False))
  one_view = next(one.eval_batches('validation', Views.test_views(one.config)))['inputs']  # 1x1: one clip each
  np.testing.assert_array_equal(one_view, clips)


def mean_pixel_model(table, clips):
  """A fake model whose logits depend on the clip: its mean colour times a [3, C] table."""
  return jnp.mean(clips, axis=(1, 2, 3)) @ table


def test_exact_counts_with_a_split_that_is_not_a_multiple_of_the_batch(mesh):
  config = synthetic_config()
  p = SyntheticPipeline(config)
  table = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.float32)
  step = evaluate.make_eval_step(mean_pixel_model, task_of({'': (0, 5)}), mesh, max_views_per_batch=16)
  jitted = evaluate.jit_eval_step(step, sharding_lib.replicated(mesh), mesh)
  multi = evaluate.evaluate(jitted, table, p, 'validation', mesh, 'test', Views.test_views(config))
  assert multi.scalars['test/num_videos'] == 11  # 2 batches of 8, 5 padding rows masked
  assert multi.scalars['test/num_views'] == 66
  assert multi.confusion[''].sum() == 11
  assert multi.scalars['test/clips_per_s'] > 0
  single = evaluate.evaluate(jitted, table, p, 'validation', mesh, 'val')
  assert (single.scalars['val/num_videos'], single.scalars['val/num_views']) == (11, 11)
  for key in ('accuracy', 'accuracy_top_5', 'loss', 'mean_per_class_accuracy'):
    assert 0.0 <= multi.scalars[f'test/{key}'] and np.isfinite(multi.scalars[f'test/{key}'])


def test_a_pass_that_misses_videos_is_an_error(mesh):
  table = jnp.zeros((3, 5), jnp.float32)
  step = jax.jit(evaluate.make_eval_step(mean_pixel_model, task_of({'': (0, 5)}), mesh))
  batches = [sharding_lib.global_batch(b, mesh)
             for b in SyntheticPipeline(synthetic_config()).eval_batches('validation')][:1]
  with pytest.raises(RuntimeError, match='saw 8 videos; the split has 11'):
    evaluate.run_passes(step, table, batches, 11, 'val', 'validation')


def test_eval_max_views_per_batch_is_validated():
  assert synthetic_config().eval_max_views_per_batch == 64
  with pytest.raises(ConfigError, match='eval_max_views_per_batch'):
    synthetic_config(eval_max_views_per_batch=0)


def test_multi_label_models_get_map_of_the_aggregated_scores(mesh):
  rng = np.random.default_rng(2)
  table = rng.normal(size=(16, 4)) * 2
  labels = (rng.random((8, 4)) < 0.4).astype(np.float32)
  labels[0] = [1, 1, 1, 1]  # every class has a positive
  step = jax.jit(evaluate.make_eval_step(lookup, task_of({'': (0, 4)}, multi_label=True), mesh,
                                         aggregation='softmax', keep_scores=True))
  batch = sharding_lib.global_batch(view_batch(np.arange(16).reshape(8, 2), labels, mask=[1] * 7 + [0]), mesh)
  result = evaluate.run_passes(step, jnp.asarray(table, jnp.float32), [batch], 7, 'test')
  mean_probability = (1 / (1 + np.exp(-table[0::2])) + 1 / (1 + np.exp(-table[1::2]))) / 2
  expected = metrics.mean_average_precision(mean_probability[:7], labels[:7])
  assert result.scalars['test/mAP'] == pytest.approx(expected, rel=1e-6)
  assert result.scalars['test/num_videos'] == 7 and result.scalars['test/num_views'] == 14


class FakeClock:
  """`perf_counter` returning the given times in turn: the pass reads it at its start, after the first batch and
  at its end."""

  def __init__(self, *times):
    self.times = list(times)

  def perf_counter(self):
    return self.times.pop(0)


def test_clips_per_s_counts_real_clips_after_the_first_batch(mesh, monkeypatch):
  table = np.random.default_rng(3).normal(size=(32, 2))
  labels = np.eye(2, dtype=np.float32)[np.arange(8) % 2]
  step = jax.jit(evaluate.make_eval_step(lookup, task_of(SINGLE), mesh))
  first = view_batch(np.arange(16).reshape(8, 2), labels)  # 8 real videos, 2 views each.
  last = view_batch(np.arange(16, 32).reshape(8, 2), labels, mask=[1] * 3 + [0] * 5)  # 3 real, 5 padding rows.
  batches = [sharding_lib.global_batch(b, mesh) for b in (first, last)]
  # Start at 0 s, the first batch (compilation) done at 10 s, the end at 12 s: the 3 x 2 real clips after the
  # first batch took 2 s. Counting padding (8 x 2 clips) or the compilation would give 8 or 1.83 clips/s.
  monkeypatch.setattr(evaluate, 'time', FakeClock(0.0, 10.0, 12.0))
  scalars = evaluate.run_passes(step, jnp.asarray(table, jnp.float32), batches, 11, 'test').scalars
  assert scalars['test/num_views'] == 22 and scalars['test/wall_s'] == 12.0
  assert scalars['test/clips_per_s'] == pytest.approx(3.0)
  # One batch: nothing runs after the compilation, so the whole pass is timed (its 7 real videos x 2 views / 4 s).
  monkeypatch.setattr(evaluate, 'time', FakeClock(0.0, 3.0, 4.0))
  one = view_batch(np.arange(16).reshape(8, 2), labels, mask=[1] * 7 + [0])
  scalars = evaluate.run_passes(step, jnp.asarray(table, jnp.float32), [sharding_lib.global_batch(one, mesh)], 7,
                                'test').scalars
  assert scalars['test/num_views'] == 14 and scalars['test/clips_per_s'] == pytest.approx(14 / 4.0)


def test_without_a_split_named_test_data_is_preferred_else_validation():
  assert evaluate.default_split(SyntheticPipeline(synthetic_config())) == 'validation'
  with_test = SyntheticPipeline(synthetic_config(dataset_configs__examples_per_subset__test=6))
  assert evaluate.default_split(with_test) == 'test'
