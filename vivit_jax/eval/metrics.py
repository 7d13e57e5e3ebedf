"""Classification metrics as additive sums, so batches (and hosts) can be summed and divided at the end.

`classification_counts` returns float32 sums over the real examples of one batch (padding rows, mask 0, count
for nothing); add the dicts of successive batches with `add_counts`, then `summarize_counts` turns the totals
into accuracies and a mean loss. Accuracy compares argmax(logits) with argmax(labels); for multi-label models
(multi-hot labels) argmax(labels) is the first positive class, so 'accuracy' there means "the top logit is the
first listed label" and top-5 means "that label is among the five top logits". The 'loss_sum' is the task's
eval loss (`Task.eval_loss`: softmax cross-entropy without label smoothing, or the summed sigmoid cross-entropy
of a multi-label task).
"""

from collections.abc import Callable, Mapping
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax import tasks

Array = jax.Array
COUNT_KEYS = ('num_examples', 'correct', 'correct_top_5', 'loss_sum')


LossFn = Callable[[Array, Array], Array]  # (logits [B, C], labels [B, C]) -> per-example loss [B]
_LOSSES = {'softmax': tasks.softmax_cross_entropy_per_example, 'sigmoid': tasks.sigmoid_cross_entropy_per_example}


def classification_counts(logits: Array, one_hot_labels: Array, mask: Array | None = None,
                          loss: Union[str, LossFn] = 'softmax') -> dict[str, Array]:
  """Float32 sums over the masked batch: 'num_examples', 'correct', 'correct_top_5' and 'loss_sum'.

  Args:
    logits: `[B, C]` model outputs (any float dtype; computed in float32).
    one_hot_labels: `[B, C]` one-hot or multi-hot labels; the target class is their argmax.
    mask: `[B]` 1 for real examples and 0 for padding; None: every example is real.
    loss: for 'loss_sum': 'softmax' (cross-entropy), 'sigmoid' (binary cross-entropy summed over classes) or a
      per-example loss function (a task's `eval_loss`).

  Returns:
    Scalar float32 sums; top-5 uses the top min(5, C) logits.
  """
  if logits.shape != one_hot_labels.shape or logits.ndim != 2:
    raise ValueError(f'expected [B, C] logits and labels, got {logits.shape} and {one_hot_labels.shape}')
  num_classes = logits.shape[-1]
  logits = logits.astype(jnp.float32)
  mask = jnp.ones(logits.shape[:1], jnp.float32) if mask is None else mask.astype(jnp.float32)
  target = jnp.argmax(one_hot_labels, axis=-1)
  top1 = jnp.argmax(logits, axis=-1) == target
  _, top_k = jax.lax.top_k(logits, min(5, num_classes))
  in_top_k = jnp.any(top_k == target[:, None], axis=-1)
  if not callable(loss) and loss not in _LOSSES:
    raise ValueError(f"loss must be 'softmax', 'sigmoid' or a function, got {loss!r}")
  per_example = (loss if callable(loss) else _LOSSES[loss])(logits, one_hot_labels)
  return {
      'num_examples': jnp.sum(mask),
      'correct': jnp.sum(mask * top1.astype(jnp.float32)),
      'correct_top_5': jnp.sum(mask * in_top_k.astype(jnp.float32)),
      'loss_sum': jnp.sum(mask * per_example),
  }


def add_counts(total: Mapping[str, Any] | None, counts: Mapping[str, Any]) -> dict[str, Any]:
  """Element-wise sum of two count dicts; `total` None starts a new running total."""
  if total is None:
    return dict(counts)
  return {key: total[key] + counts[key] for key in counts}


def summarize_counts(counts: Mapping[str, Any], prefix: str) -> dict[str, float]:
  """{prefix/accuracy, prefix/accuracy_top_5, prefix/loss} as Python floats from summed counts.

  Works on numpy, jax or Python values; with no examples every metric is 0.
  """
  total = float(np.asarray(counts['num_examples']))
  denominator = max(total, 1e-8)

  def ratio(key: str) -> float:
    return float(np.asarray(counts[key])) / denominator

  return {
      f'{prefix}/accuracy': ratio('correct'),
      f'{prefix}/accuracy_top_5': ratio('correct_top_5'),
      f'{prefix}/loss': ratio('loss_sum'),
  }


def counts_per_head(logits: Array, labels: Array, mask: Array | None, task: tasks.Task) -> dict[str, dict[str, Array]]:
  """`classification_counts` of each head's logit columns, with the task's eval loss: {head name: counts}."""
  return {h.name: classification_counts(logits[:, h.start:h.stop], labels[:, h.start:h.stop], mask, task.eval_loss)
          for h in task.heads}


def summarize_heads(counts: Mapping[str, Mapping[str, Any]], prefix: str) -> dict[str, float]:
  """`summarize_counts` for every head: '{prefix}/accuracy' for a single head, '{prefix}/{head}/accuracy'
  for named heads."""
  out: dict[str, float] = {}
  for name, head_counts in counts.items():
    out.update(summarize_counts(head_counts, f'{prefix}/{name}' if name else prefix))
  return out


# --- Detailed evaluation counts: confusion matrices, per-class accuracy, EPIC actions, mAP ------------------
#
# `evaluation_counts` extends `counts_per_head` for the evaluators: every head also gets its confusion matrix
# (rows: true class, columns: predicted class, masked), from which per-class and mean per-class accuracy
# follow for any number of classes; multi-head models also get 'action' counts (all heads right at once).
# Everything stays additive, so batches are summed on the devices and fetched once.

ACTION = 'action'


def confusion_matrix(logits: Array, one_hot_labels: Array, mask: Array | None = None) -> Array:
  """Float32 `[C, C]` counts of (true class, top-1 class) over the masked batch, via one-hot products.

  The true class is argmax(labels) (the first positive one for multi-hot labels); a `[C, C]` matrix costs
  C^2 floats per head (400 classes: 640 kB), whatever the number of classes.
  """
  num_classes = logits.shape[-1]
  mask = jnp.ones(logits.shape[:1], jnp.float32) if mask is None else mask.astype(jnp.float32)
  true = jax.nn.one_hot(jnp.argmax(one_hot_labels, axis=-1), num_classes, dtype=jnp.float32)
  predicted = jax.nn.one_hot(jnp.argmax(logits, axis=-1), num_classes, dtype=jnp.float32)
  return jnp.einsum('bt,bp->tp', true * mask[:, None], predicted)


def joint_top_k(log_probs: list[Array], k: int = 5) -> tuple[Array, list[Array]]:
  """The `k` best combinations of one class per head under the joint score sum_h log p_h(c_h).

  Args:
    log_probs: per head, `[B, C_h]` log-probabilities.
    k: how many combinations.

  Returns:
    (scores `[B, k']`, per head the class indices `[B, k']` of each combination), best first, with k' = min(k,
    prod C_h). Exact: a combination in the joint top-k has each of its classes in its head's top-k (k better
    classes of one head would each make a better combination), so heads are combined pairwise, keeping k.
  """
  scores, index = jax.lax.top_k(log_probs[0], min(k, log_probs[0].shape[-1]))
  chosen = [index]
  for head in log_probs[1:]:
    head_scores, head_index = jax.lax.top_k(head, min(k, head.shape[-1]))
    pairs = (scores[:, :, None] + head_scores[:, None, :]).reshape(scores.shape[0], -1)  # [B, k * k_h]
    scores, flat = jax.lax.top_k(pairs, min(k, pairs.shape[-1]))
    left, right = flat // head_scores.shape[-1], flat % head_scores.shape[-1]
    chosen = [jnp.take_along_axis(c, left, axis=-1) for c in chosen]
    chosen.append(jnp.take_along_axis(head_index, right, axis=-1))
  return scores, chosen


def action_counts(logits: Array, labels: Array, mask: Array | None,
                  heads: Mapping[str, tuple[int, int]]) -> dict[str, Array]:
  """EPIC-style action counts of a multi-head model: 'num_examples', 'correct' (every head's top-1 right)
  and 'correct_top_5' (the true combination, e.g. (noun, verb), among the 5 best combinations by the joint
  score sum_h log_softmax_h; see `joint_top_k`)."""
  mask = jnp.ones(logits.shape[:1], jnp.float32) if mask is None else mask.astype(jnp.float32)
  logits = logits.astype(jnp.float32)
  spans = list(heads.values())
  targets = [jnp.argmax(labels[:, a:b], axis=-1) for a, b in spans]
  log_probs = [jax.nn.log_softmax(logits[:, a:b], axis=-1) for a, b in spans]
  top1 = jnp.all(jnp.stack([jnp.argmax(lp, axis=-1) == t for lp, t in zip(log_probs, targets)]), axis=0)
  _, chosen = joint_top_k(log_probs, 5)
  hit = jnp.all(jnp.stack([c == t[:, None] for c, t in zip(chosen, targets)]), axis=0)  # [B, k]
  return {'num_examples': jnp.sum(mask), 'correct': jnp.sum(mask * top1.astype(jnp.float32)),
          'correct_top_5': jnp.sum(mask * jnp.any(hit, axis=-1).astype(jnp.float32))}


def evaluation_counts(logits: Array, labels: Array, mask: Array | None, task: tasks.Task) -> dict[str, Any]:
  """{'heads': {head: classification counts + 'confusion' [C_h, C_h]}} and, with two or more heads,
  'action': `action_counts`. Additive over batches (`add_trees`)."""
  per_head = counts_per_head(logits, labels, mask, task)
  for h in task.heads:
    per_head[h.name]['confusion'] = confusion_matrix(logits[:, h.start:h.stop], labels[:, h.start:h.stop], mask)
  out: dict[str, Any] = {'heads': per_head}
  if len(task.heads) > 1:
    out[ACTION] = action_counts(logits, labels, mask, task.head_spans)
  return out


def add_trees(total: Any, counts: Any) -> Any:
  """Leaf-wise sum of two count trees (on whichever device they live); `total` None starts a new one."""
  return counts if total is None else jax.tree_util.tree_map(lambda a, b: a + b, total, counts)


def per_class_accuracy(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(videos per class, accuracy per class) from a `[C, C]` confusion matrix; NaN for classes with none."""
  confusion = np.asarray(confusion, np.float64)
  videos = confusion.sum(axis=1)
  with np.errstate(invalid='ignore', divide='ignore'):
    accuracy = np.where(videos > 0, np.diag(confusion) / videos, np.nan)
  return videos, accuracy


def mean_per_class_accuracy(confusion: np.ndarray) -> float:
  """The mean of the per-class accuracies over the classes that have at least one video (0 if none)."""
  _, accuracy = per_class_accuracy(confusion)
  present = accuracy[~np.isnan(accuracy)]
  return float(present.mean()) if present.size else 0.0


def mean_average_precision(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> float:
  """Multi-label mAP: per class, the mean over its positive videos of the precision among the videos scored
  at least as high (ranked by descending score, ties in input order; no interpolation), averaged over the
  classes with at least one positive. Rows with mask 0 are dropped."""
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0.5
  if mask is not None:
    keep = np.asarray(mask) > 0
    scores, labels = scores[keep], labels[keep]
  precisions = []
  for c in range(scores.shape[1]):
    positives = labels[:, c]
    if not positives.any():
      continue
    ranked = positives[np.argsort(-scores[:, c], kind='stable')]
    hits = np.cumsum(ranked)
    precisions.append(float(np.mean(hits[ranked] / (np.flatnonzero(ranked) + 1))))
  return float(np.mean(precisions)) if precisions else 0.0


def summarize_evaluation(totals: Mapping[str, Any], prefix: str) -> dict[str, float]:
  """Scalars from fetched `evaluation_counts` totals: `summarize_heads` names plus
  '{prefix}[/{head}]/mean_per_class_accuracy' and, for multi-head models, '{prefix}/action/accuracy' and
  '{prefix}/action/accuracy_top_5'."""
  heads = totals['heads']
  out = summarize_heads({name: {k: v for k, v in c.items() if k != 'confusion'} for name, c in heads.items()},
                        prefix)
  for name, counts in heads.items():
    out[f'{prefix}/{name}/mean_per_class_accuracy' if name else f'{prefix}/mean_per_class_accuracy'] = (
        mean_per_class_accuracy(counts['confusion']))
  if ACTION in totals:
    action = totals[ACTION]
    total = max(float(np.asarray(action['num_examples'])), 1e-8)
    out[f'{prefix}/{ACTION}/accuracy'] = float(np.asarray(action['correct'])) / total
    out[f'{prefix}/{ACTION}/accuracy_top_5'] = float(np.asarray(action['correct_top_5'])) / total
  return out


def most_confused_pairs(confusion: np.ndarray, k: int) -> list[tuple[int, int, int]]:
  """The `k` largest off-diagonal cells of a `[C, C]` confusion matrix as (true class, predicted class, videos),
  most videos first (ties: by true, then predicted class); cells with no video are left out."""
  counts = np.rint(np.asarray(confusion, np.float64)).astype(np.int64)
  np.fill_diagonal(counts, 0)
  true, predicted = np.nonzero(counts)
  order = np.lexsort((predicted, true, -counts[true, predicted]))[:max(k, 0)]
  return [(int(true[i]), int(predicted[i]), int(counts[true[i], predicted[i]])) for i in order]
