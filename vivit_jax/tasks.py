"""The task: what a model's logits mean, built once from the config (`Task.from_config`).

- `vivit_classification`: one head over all classes; softmax cross-entropy; softmax probabilities.
- `vivit_multilabel_classification`: one head over all classes with multi-hot labels; sigmoid cross-entropy summed
  over the classes; sigmoid probabilities.
- `vivit_multihead_classification`: one head per `dataset_configs.class_splits` entry, named by `split_names`
  (EPIC-Kitchens: noun, verb); the sum over heads of each head's softmax cross-entropy; softmax per head.

The logits of every task are one `[B, C]` array; a head is a slice of its columns. Labels are `[B, C]` one-hot,
multi-hot, mixed or smoothed vectors in the same columns (a multi-head label holds one one-hot block per head).
Every loss is computed in float32 whatever the dtype of the logits. The training loss is the weighted mean over
examples, sum(w * l) / max(sum(w), 1e-8), with `batch_mask` as the weights so that padded rows count for nothing,
after Scenic's label smoothing y -> (1 - s) * y + s / C, with C the class count of the head being smoothed. The
eval loss is the same per-example loss without smoothing.

This module is the only one that tells the tasks apart: losses, metrics, evaluation, the data's label vectors,
prediction, export and the Hugging Face config all read a `Task`. It imports nothing else of vivit_jax, so that
config validation can ask it what a task needs.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

CLASSIFICATION = 'vivit_classification'
MULTILABEL = 'vivit_multilabel_classification'
MULTIHEAD = 'vivit_multihead_classification'
MODEL_NAMES = (CLASSIFICATION, MULTILABEL, MULTIHEAD)

_MIN_NORMALIZER = 1e-8


# --- Loss functions ---------------------------------------------------------------------------------------------


def smooth_labels(one_hot: Array, label_smoothing: Optional[float]) -> Array:
  """Returns (1 - s) * y + s / C for labels `[..., C]`; `None` or 0 returns the labels unchanged."""
  if not label_smoothing:
    return one_hot
  num_classes = one_hot.shape[-1]
  return (1.0 - label_smoothing) * one_hot + label_smoothing / num_classes


def weighted_mean(per_example: Array, weights: Optional[Array] = None) -> Array:
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


def softmax_cross_entropy(logits: Array, labels: Array, weights: Optional[Array] = None) -> Array:
  """Scalar weighted mean over examples of the softmax cross-entropy (labels may be soft)."""
  return weighted_mean(softmax_cross_entropy_per_example(logits, labels), weights)


def sigmoid_cross_entropy(logits: Array, labels: Array, weights: Optional[Array] = None) -> Array:
  """Scalar weighted mean over examples of the per-class binary cross-entropy summed over classes."""
  return weighted_mean(sigmoid_cross_entropy_per_example(logits, labels), weights)


def split_offsets(class_splits: Sequence[int]) -> list[tuple[int, int]]:
  """[(start, stop)] of each head's classes, e.g. (2, 3) -> [(0, 2), (2, 5)]."""
  stops = np.cumsum([int(n) for n in class_splits]).tolist()
  starts = [0] + stops[:-1]
  return list(zip(starts, stops))


def _check_shapes(logits: Array, labels: Array) -> None:
  """Raises ValueError unless logits and labels have the same `[B, C]`-style shape."""
  if logits.shape != labels.shape:
    raise ValueError(f'logits {logits.shape} and labels {labels.shape} must have the same shape')


# --- The task ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Head:
  """One classifier head: logit columns [start, stop); `name` is '' for the only head of a single-head task."""
  name: str
  start: int
  stop: int

  @property
  def num_classes(self) -> int:
    return self.stop - self.start


@dataclasses.dataclass(frozen=True)
class Task:
  """The heads, losses and probabilities of one `model_name` (see the module docstring)."""
  model_name: str
  heads: tuple[Head, ...]
  label_smoothing: Optional[float] = None

  def __post_init__(self):
    if self.model_name not in MODEL_NAMES:
      raise ValueError(f'unknown model_name {self.model_name!r}; expected one of {list(MODEL_NAMES)}')

  @classmethod
  def from_config(cls, config: Any) -> 'Task':
    """The task of a (validated) config: `model_name`, `label_smoothing` and `dataset_configs.num_classes`,
    `class_splits` and `split_names`."""
    model_name = config.model_name
    if model_name not in MODEL_NAMES:
      raise ValueError(f'unknown model_name {model_name!r}; expected one of {list(MODEL_NAMES)}')
    smoothing = config.get('label_smoothing')
    smoothing = None if smoothing is None else float(smoothing)
    d = config.dataset_configs
    if model_name != MULTIHEAD:
      if not d.get('num_classes'):
        raise ValueError("'dataset_configs.num_classes' is not set: the classifier head needs a class count")
      return cls(model_name, (Head('', 0, int(d.num_classes)),), smoothing)
    problems = config_problems(config)
    if problems:
      raise ValueError('; '.join(problems))
    names = list(d.get('split_names') or [f'head{i}' for i in range(len(d.class_splits))])
    spans = split_offsets(d.class_splits)
    return cls(model_name, tuple(Head(str(n), a, b) for n, (a, b) in zip(names, spans)), smoothing)

  @property
  def num_classes(self) -> int:
    return self.heads[-1].stop

  @property
  def multi_label(self) -> bool:
    """Independent classes (sigmoid) rather than one class per head (softmax)."""
    return self.model_name == MULTILABEL

  @property
  def multi_head(self) -> bool:
    """Labels are stored as one class index per head, each counted within its head."""
    return self.model_name == MULTIHEAD

  @property
  def head_spans(self) -> dict[str, tuple[int, int]]:
    """{head name: (start, stop)} in head order."""
    return {h.name: (h.start, h.stop) for h in self.heads}

  def head_label_names(self, label_names: Optional[Sequence[str]]) -> dict[str, list[str]]:
    """Per head, a name for each class: the given names (all heads' classes in order) else 'class_<i>'."""
    out = {}
    for h in self.heads:
      if label_names is not None and len(label_names) >= h.stop:
        out[h.name] = [str(n) for n in label_names[h.start:h.stop]]
      else:
        out[h.name] = [f'class_{i}' for i in range(h.num_classes)]
    return out

  # --- Losses and probabilities -------------------------------------------------------------------------------

  def eval_loss(self, logits: Array, labels: Array) -> Array:
    """Float32 `[B]` loss of one head's `[B, C_h]` logits against its labels, without smoothing."""
    if self.multi_label:
      return sigmoid_cross_entropy_per_example(logits, labels)
    return softmax_cross_entropy_per_example(logits, labels)

  def train_loss(self, logits: Array, labels: Array, weights: Optional[Array] = None) -> Array:
    """The scalar training loss: over heads, the sum of the weighted mean of `eval_loss` on smoothed labels."""
    if logits.shape[-1] != self.num_classes or labels.shape[-1] != self.num_classes:
      splits = [h.num_classes for h in self.heads]
      raise ValueError(f'the task has {self.num_classes} classes (class_splits {splits}), but logits have shape '
                       f'{logits.shape} and labels {labels.shape}')
    loss = jnp.zeros((), jnp.float32)
    for h in self.heads:
      head_labels = smooth_labels(labels[:, h.start:h.stop].astype(jnp.float32), self.label_smoothing)
      loss = loss + weighted_mean(self.eval_loss(logits[:, h.start:h.stop], head_labels), weights)
    return loss

  def probabilities(self, logits: Array) -> Array:
    """Logits `[..., C]` -> float32 probabilities: sigmoid, or softmax within each head."""
    logits = logits.astype(jnp.float32)
    if self.multi_label:
      return jax.nn.sigmoid(logits)
    return jnp.concatenate([jax.nn.softmax(logits[..., h.start:h.stop], axis=-1) for h in self.heads], axis=-1)

  def logits_of(self, probabilities: Array) -> Array:
    """Logits whose `probabilities` are the given ones: log p (softmax; exact up to a per-head constant) or the
    log-odds (sigmoid). Scores averaged as probabilities come back to logit space this way."""
    tiny = jnp.finfo(jnp.float32).tiny
    if self.multi_label:
      return jnp.log(jnp.maximum(probabilities, tiny)) - jnp.log(jnp.maximum(1.0 - probabilities, tiny))
    return jnp.log(jnp.maximum(probabilities, tiny))

  @property
  def head_offsets(self) -> tuple[int, ...]:
    """What is added to the stored class index of each head to find its logit column (all 0 except for
    multi-head tasks, whose labels count classes within their head)."""
    return tuple(h.start if self.multi_head else 0 for h in self.heads)

  def describe(self) -> dict[str, Any]:
    """JSON for exports and reports."""
    return {'model_name': self.model_name, 'num_classes': self.num_classes,
            'activation': 'sigmoid' if self.multi_label else 'softmax',
            'heads': [{'name': h.name, 'start': h.start, 'stop': h.stop} for h in self.heads]}


def config_problems(config: Any) -> list[str]:
  """What a config lacks for its task (for config validation)."""
  problems = []
  if config.model_name == MULTIHEAD and not config.dataset_configs.get('class_splits'):
    problems.append(f"'model_name' '{MULTIHEAD}' needs 'dataset_configs.class_splits'")
  return problems

