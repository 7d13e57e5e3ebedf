"""Classification metrics as additive sums, so batches (and hosts) can be summed and divided at the end.

`classification_counts` returns float32 sums over the real examples of one batch (padding rows, mask 0, count
for nothing); add the dicts of successive batches with `add_counts`, then `summarize_counts` turns the totals
into accuracies and a mean loss. Accuracy compares argmax(logits) with argmax(labels); for multi-label models
(multi-hot labels) argmax(labels) is the first positive class, so 'accuracy' there means "the top logit is the
first listed label" and top-5 means "that label is among the five top logits". The 'loss_sum' is the softmax
cross-entropy without label smoothing by default, or the summed sigmoid cross-entropy with `loss='sigmoid'`
(what a multi-label model trains on).
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax import losses

Array = jax.Array
COUNT_KEYS = ('num_examples', 'correct', 'correct_top_5', 'loss_sum')


def classification_counts(logits: Array, one_hot_labels: Array, mask: Array | None = None,
                          loss: str = 'softmax') -> dict[str, Array]:
  """Float32 sums over the masked batch: 'num_examples', 'correct', 'correct_top_5' and 'loss_sum'.

  Args:
    logits: `[B, C]` model outputs (any float dtype; computed in float32).
    one_hot_labels: `[B, C]` one-hot or multi-hot labels; the target class is their argmax.
    mask: `[B]` 1 for real examples and 0 for padding; None: every example is real.
    loss: 'softmax' (cross-entropy) or 'sigmoid' (binary cross-entropy summed over classes) for 'loss_sum'.

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
  if loss == 'softmax':
    per_example = losses.softmax_cross_entropy_per_example(logits, one_hot_labels)
  elif loss == 'sigmoid':
    per_example = losses.sigmoid_cross_entropy_per_example(logits, one_hot_labels)
  else:
    raise ValueError(f"loss must be 'softmax' or 'sigmoid', got {loss!r}")
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


def heads_of(config: Any) -> dict[str, tuple[int, int]]:
  """Name -> (start, stop) logit columns of each classifier head: {'': (0, C)} for single-head models;
  multi-head models name theirs by `dataset_configs.split_names` (else 'head0', 'head1', ...)."""
  d = config.dataset_configs
  if config.model_name != 'vivit_multihead_classification':
    return {'': (0, d.num_classes)}
  names = list(d.split_names or [f'head{i}' for i in range(len(d.class_splits))])
  return dict(zip(names, losses.split_offsets(d.class_splits)))


def counts_per_head(logits: Array, labels: Array, mask: Array | None, heads: Mapping[str, tuple[int, int]],
                    loss: str = 'softmax') -> dict[str, dict[str, Array]]:
  """`classification_counts` of each head's logit columns: {head name: counts}."""
  return {name: classification_counts(logits[:, a:b], labels[:, a:b], mask, loss)
          for name, (a, b) in heads.items()}


def summarize_heads(counts: Mapping[str, Mapping[str, Any]], prefix: str) -> dict[str, float]:
  """`summarize_counts` for every head: '{prefix}/accuracy' for a single head, '{prefix}/{head}/accuracy'
  for named heads."""
  out: dict[str, float] = {}
  for name, head_counts in counts.items():
    out.update(summarize_counts(head_counts, f'{prefix}/{name}' if name else prefix))
  return out
