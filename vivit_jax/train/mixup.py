"""Mixup and CutMix on video batches, as pure jit-able functions of global (possibly sharded) arrays.

Both draw ONE mixing weight per batch (Scenic's ViViT recipe) and mix example i with example B-1-i, the batch
reversed, which needs no extra random permutation and keeps the shapes static:

- `mixup`: lambda ~ Beta(alpha, alpha); inputs and labels become lambda * own + (1 - lambda) * partner, the same
  lambda for every frame and pixel.
- `cutmix`: one box covering about 1 - lambda of the frame (lambda ~ Beta(alpha, alpha)), centred uniformly and
  clipped to the frame, pasted from the partner into EVERY frame (a spatial box through all of time); labels are
  mixed with the area actually kept after clipping, 1 - box_area / frame_area.
- `mix_batch`: the training-time dispatch from `config.mixup.alpha`, `config.cutmix.alpha` and
  `config.cutmix.switch_prob`.

Batches are dicts with 'inputs' `[B, T, H, W, C]`, 'label' `[B, num_classes]` and optionally 'batch_mask' `[B]`;
other keys are passed through untouched. The mixed batch also carries 'mix_lambda' `[B]` float32 (the weight
of each example's own label, the same value in every row) for logging; it has a batch axis like every other
leaf so sharding and micro-batching treat it like the rest. 'batch_mask' is not mixed: padding rows (mask 0)
may be mixed into real examples, which only happens in a padded final training batch. Evaluation never mixes.
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
Batch = Mapping[str, Any]


def _with_mixed(batch: Batch, inputs: Array, lam: Array) -> dict[str, Any]:
  """A new batch with `inputs`, labels mixed as lam * own + (1 - lam) * partner, and 'mix_lambda'."""
  labels = batch['label']
  lam32 = lam.astype(jnp.float32)
  mixed_labels = lam32 * labels.astype(jnp.float32) + (1.0 - lam32) * labels[::-1].astype(jnp.float32)
  out = dict(batch)
  out['inputs'] = inputs
  out['label'] = mixed_labels.astype(labels.dtype)
  out['mix_lambda'] = jnp.full((labels.shape[0],), lam32, jnp.float32)
  return out


def sample_lambda(rng: Array, alpha: float) -> Array:
  """A float32 scalar drawn from Beta(alpha, alpha)."""
  return jax.random.beta(rng, alpha, alpha, dtype=jnp.float32)


def mixup(batch: Batch, rng: Array, alpha: float) -> dict[str, Any]:
  """Mixes every example with its mirror (B-1-i) with one lambda ~ Beta(alpha, alpha) for the whole batch."""
  lam = sample_lambda(rng, alpha)
  x = batch['inputs']
  lam_x = lam.astype(x.dtype)
  inputs = lam_x * x + (1 - lam_x) * x[::-1]
  return _with_mixed(batch, inputs, lam)


def cutmix_box(rng: Array, alpha: float, height: int, width: int) -> tuple[Array, Array, Array, Array]:
  """(top, bottom, left, right) int32 bounds, bottom/right exclusive, of a CutMix box clipped to the frame.

  The unclipped box has sides floor(H * sqrt(1 - lambda)) and floor(W * sqrt(1 - lambda)), so it covers about
  1 - lambda of the frame, with lambda ~ Beta(alpha, alpha); its centre is uniform over the pixels.
  """
  lam_key, y_key, x_key = jax.random.split(rng, 3)
  cut_ratio = jnp.sqrt(1.0 - sample_lambda(lam_key, alpha))
  cut_h = jnp.floor(height * cut_ratio).astype(jnp.int32)
  cut_w = jnp.floor(width * cut_ratio).astype(jnp.int32)
  centre_y = jax.random.randint(y_key, (), 0, height, dtype=jnp.int32)
  centre_x = jax.random.randint(x_key, (), 0, width, dtype=jnp.int32)
  top = jnp.clip(centre_y - cut_h // 2, 0, height)
  bottom = jnp.clip(centre_y - cut_h // 2 + cut_h, 0, height)
  left = jnp.clip(centre_x - cut_w // 2, 0, width)
  right = jnp.clip(centre_x - cut_w // 2 + cut_w, 0, width)
  return top, bottom, left, right


def box_mask(top: Array, bottom: Array, left: Array, right: Array, height: int, width: int) -> Array:
  """Boolean `[H, W]` mask, True inside rows [top, bottom) and columns [left, right) (built from iotas)."""
  rows = jax.lax.broadcasted_iota(jnp.int32, (height, width), 0)
  cols = jax.lax.broadcasted_iota(jnp.int32, (height, width), 1)
  return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


def cutmix(batch: Batch, rng: Array, alpha: float) -> dict[str, Any]:
  """Pastes one box from example B-1-i into every frame of example i; labels mixed by the area kept."""
  x = batch['inputs']
  height, width = x.shape[2], x.shape[3]
  top, bottom, left, right = cutmix_box(rng, alpha, height, width)
  mask = box_mask(top, bottom, left, right, height, width)
  inputs = jnp.where(mask[None, None, :, :, None], x[::-1], x)
  box_area = ((bottom - top) * (right - left)).astype(jnp.float32)
  lam = 1.0 - box_area / float(height * width)
  return _with_mixed(batch, inputs, lam)


def mix_batch(batch: Batch, rng: Array, config: Any) -> Batch:
  """Training-time mixing chosen by the config; returns `batch` itself when both alphas are 0.

  Mixup alone when `config.mixup.alpha > 0`, CutMix alone when `config.cutmix.alpha > 0`; with both on, each
  batch uses CutMix with probability `config.cutmix.switch_prob` (a `jax.lax.cond`, so only the chosen branch
  runs). The config is read as Python values: close over it rather than passing it as a traced argument.
  """
  mixup_alpha = float(config.mixup.alpha or 0.0)
  cutmix_alpha = float(config.cutmix.alpha or 0.0)
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    return batch
  if cutmix_alpha <= 0:
    return mixup(batch, rng, mixup_alpha)
  if mixup_alpha <= 0:
    return cutmix(batch, rng, cutmix_alpha)
  switch_key, mix_key = jax.random.split(rng)
  use_cutmix = jax.random.bernoulli(switch_key, float(config.cutmix.switch_prob))
  return jax.lax.cond(use_cutmix,
                      lambda b: cutmix(b, mix_key, cutmix_alpha),
                      lambda b: mixup(b, mix_key, mixup_alpha),
                      dict(batch))
