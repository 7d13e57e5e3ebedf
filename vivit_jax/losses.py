"""Training losses for the three ViViT model kinds, on global (possibly sharded) arrays.

- `vivit_classification`: softmax cross-entropy against one-hot (or mixed / smoothed) label vectors.
- `vivit_multilabel_classification`: sigmoid (binary) cross-entropy summed over classes.
- `vivit_multihead_classification`: the sum over heads of a softmax cross-entropy on each head's slice of the
  logits and labels, the slices given by `dataset_configs.class_splits` (EPIC-Kitchens: nouns, verbs).

Every loss is the weighted mean over examples, sum(w * l) / max(sum(w), 1e-8), of a per-example loss, with
`batch['batch_mask']` as the weights so that padded examples count for nothing. Losses are computed in float32
whatever the dtype of the logits. Label smoothing follows Scenic: y -> (1 - s) * y + s / C, with C the number
of classes of the head being smoothed.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Batch = Mapping[str, Any]
LossFn = Callable[[Array, Batch], Array]

_MIN_NORMALIZER = 1e-8


def smooth_labels(one_hot: Array, label_smoothing: float | None) -> Array:
  """Returns (1 - s) * y + s / C for labels `[..., C]`; `None` or 0 returns the labels unchanged."""
  if not label_smoothing:
    return one_hot
  num_classes = one_hot.shape[-1]
  return (1.0 - label_smoothing) * one_hot + label_smoothing / num_classes


def weighted_mean(per_example: Array, weights: Array | None = None) -> Array:
  """sum(w * l) / max(sum(w), 1e-8) over the batch axis; the plain mean when `weights` is None."""
  per_example = per_example.astype(jnp.float32)
  if weights is None:
    return jnp.mean(per_example)
  weights = weights.astype(jnp.float32)
  return jnp.sum(weights * per_example) / jnp.maximum(jnp.sum(weights), _MIN_NORMALIZER)


def softmax_cross_entropy_per_example(logits: Array, labels: Array) -> Array:
  """-sum_c labels * log_softmax(logits) for logits and labels `[B, C]`; returns float32 `[B]`."""
  _check_shapes(logits, labels)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.sum(labels.astype(jnp.float32) * log_probs, axis=-1)


def sigmoid_cross_entropy_per_example(logits: Array, labels: Array) -> Array:
  """Binary cross-entropy summed over the classes of `[B, C]` logits and labels; returns float32 `[B]`.

  Uses log(sigmoid(x)) and log(1 - sigmoid(x)) = log(sigmoid(-x)) so large logits do not overflow.
  """
  _check_shapes(logits, labels)
  logits = logits.astype(jnp.float32)
  labels = labels.astype(jnp.float32)
  per_class = -(labels * jax.nn.log_sigmoid(logits) + (1.0 - labels) * jax.nn.log_sigmoid(-logits))
  return jnp.sum(per_class, axis=-1)


def softmax_cross_entropy(logits: Array, labels: Array, weights: Array | None = None) -> Array:
  """Scalar weighted mean over examples of the softmax cross-entropy (labels may be soft)."""
  return weighted_mean(softmax_cross_entropy_per_example(logits, labels), weights)


def sigmoid_cross_entropy(logits: Array, labels: Array, weights: Array | None = None) -> Array:
  """Scalar weighted mean over examples of the per-class binary cross-entropy summed over classes."""
  return weighted_mean(sigmoid_cross_entropy_per_example(logits, labels), weights)


def split_offsets(class_splits: Sequence[int]) -> list[tuple[int, int]]:
  """[(start, stop)] of each head's classes, e.g. (2, 3) -> [(0, 2), (2, 5)]."""
  stops = np.cumsum([int(n) for n in class_splits]).tolist()
  starts = [0] + stops[:-1]
  return list(zip(starts, stops))


def multihead_softmax_cross_entropy(logits: Array, labels: Array, class_splits: Sequence[int],
                                    weights: Array | None = None,
                                    label_smoothing: float | None = None) -> Array:
  """Sum over heads of the weighted-mean softmax cross-entropy on each head's slice of the classes.

  `labels` hold one one-hot block per head, concatenated in `class_splits` order; label smoothing is applied
  to each block with that head's class count.
  """
  total = sum(int(n) for n in class_splits)
  if logits.shape[-1] != total or labels.shape[-1] != total:
    raise ValueError(f'class_splits {list(class_splits)} sum to {total}, but logits have shape '
                     f'{logits.shape} and labels {labels.shape}')
  loss = jnp.zeros((), jnp.float32)
  for start, stop in split_offsets(class_splits):
    head_labels = smooth_labels(labels[:, start:stop].astype(jnp.float32), label_smoothing)
    loss = loss + softmax_cross_entropy(logits[:, start:stop], head_labels, weights)
  return loss


def loss_fn_for(config: Any) -> LossFn:
  """The training loss `(logits, batch) -> scalar` for `config.model_name`.

  Reads `config.model_name`, `config.label_smoothing` (None: no smoothing) and, for multi-head models,
  `config.dataset_configs.class_splits` once, here, so the returned function closes over Python values only
  and can be traced under `jax.jit`. `batch['label']` are the (possibly mixed) labels; `batch['batch_mask']`,
  when present, weights the examples.
  """
  model_name = config.model_name
  smoothing = config.get('label_smoothing')
  smoothing = None if smoothing is None else float(smoothing)

  if model_name == 'vivit_classification':
    def classification_loss(logits: Array, batch: Batch) -> Array:
      labels = smooth_labels(batch['label'].astype(jnp.float32), smoothing)
      return softmax_cross_entropy(logits, labels, batch.get('batch_mask'))
    return classification_loss

  if model_name == 'vivit_multilabel_classification':
    def multilabel_loss(logits: Array, batch: Batch) -> Array:
      labels = smooth_labels(batch['label'].astype(jnp.float32), smoothing)
      return sigmoid_cross_entropy(logits, labels, batch.get('batch_mask'))
    return multilabel_loss

  if model_name == 'vivit_multihead_classification':
    class_splits = config.dataset_configs.get('class_splits')
    if not class_splits:
      raise ValueError("'vivit_multihead_classification' needs 'dataset_configs.class_splits'")
    class_splits = tuple(int(n) for n in class_splits)

    def multihead_loss(logits: Array, batch: Batch) -> Array:
      return multihead_softmax_cross_entropy(logits, batch['label'], class_splits,
                                             batch.get('batch_mask'), smoothing)
    return multihead_loss

  raise ValueError(f'unknown model_name {model_name!r}; expected vivit_classification, '
                   'vivit_multilabel_classification or vivit_multihead_classification')


def _check_shapes(logits: Array, labels: Array) -> None:
  """Raises ValueError unless logits and labels have the same `[B, C]`-style shape."""
  if logits.shape != labels.shape:
    raise ValueError(f'logits {logits.shape} and labels {labels.shape} must have the same shape')
