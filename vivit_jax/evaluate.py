"""Evaluators. Each makes one exact pass over a split: every video once, padding masked out, counts summed on
the devices and fetched once at the end.

- `evaluate_single_view`: one (centre) clip per video; the trainer's validation pass.
- `evaluate_multi_view`: the paper's test, `num_test_clips` temporal clips x 1 or 3 spatial crops per video.
  Every view goes through the model once; a video's views are aggregated by the mean of their logits (the
  paper's, `aggregation='logits'`) or the mean of their probabilities (`aggregation='softmax'`: softmax per
  head, sigmoid for multi-label models), and the aggregate is scored like a single view. Views are processed
  in passes of at most `max_views_per_batch` clips over the whole mesh (see `views_per_pass`), so a 4 x 3 test
  never holds 12 x the batch at once and never repeats work. It also accepts single-view batches (one view).

Metric names are Scenic's: `{prefix}/accuracy`, `{prefix}/accuracy_top_5`, `{prefix}/loss`, plus
`{prefix}/num_videos` and `{prefix}/num_views` (videos and clip views the pass actually saw). The multi-view
evaluator adds `{prefix}/mean_per_class_accuracy`, EPIC's `{prefix}/action/...` for multi-head models and
`{prefix}/mAP` for multi-label ones (see `metrics.py`), `{prefix}/clips_per_s` and `{prefix}/wall_s`. With
'softmax' aggregation the loss is the cross-entropy of the averaged probabilities.
"""

import dataclasses
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vivit_jax import metrics
from vivit_jax import sharding as sharding_lib
from vivit_jax.data.pipeline import Pipeline

Batch = Dict[str, jax.Array]
ApplyFn = Callable[[Any, jax.Array], jax.Array]  # (params, clips [N, T, H, W, 3]) -> logits [N, C]
AGGREGATIONS = ('logits', 'softmax')


def evaluate_single_view(eval_step: Callable[[Any, Dict[str, jax.Array]], Dict[str, jax.Array]], params: Any,
                         pipeline: Pipeline, split: str, mesh: Mesh, prefix: str) -> Dict[str, float]:
  """One pass over `split` with one (centre) view per video."""
  totals = None
  for local in pipeline.eval_batches(split):
    counts = eval_step(params, sharding_lib.global_batch(local, mesh))
    totals = counts if totals is None else jax.tree_util.tree_map(lambda a, b: a + b, totals, counts)
  if totals is None:
    raise ValueError(f"split '{split}' has no examples to evaluate")
  totals = jax.device_get(totals)
  num_videos = int(round(float(next(iter(totals.values()))['num_examples'])))
  expected = pipeline.num_examples(split)
  if num_videos != expected:
    raise RuntimeError(f"evaluation of '{split}' saw {num_videos} videos; the split has {expected}")
  summary = metrics.summarize_heads(totals, prefix)
  summary[f'{prefix}/num_videos'] = num_videos
  summary[f'{prefix}/num_views'] = num_videos
  return summary


# --- Multi-view ------------------------------------------------------------------------------------------------

def views_per_pass(num_views: int, batch_size: int, max_views_per_batch: int) -> int:
  """The views of each video one forward pass takes: the largest divisor k of `num_views` with
  batch_size x k <= max_views_per_batch, at least 1 (a pass always holds the whole batch, one view each).
  Equal chunks mean one compiled pass and no padded views: every view is computed exactly once."""
  fits = max(1, max_views_per_batch // max(batch_size, 1))
  return max(k for k in range(1, num_views + 1) if num_views % k == 0 and k <= fits)


def model_apply(model) -> ApplyFn:
  """The eval-mode forward pass of a Flax model as an `ApplyFn`."""
  return lambda params, clips: model.apply({'params': params}, clips, train=False)


def _per_head(fn: Callable[[jax.Array], jax.Array], x: jax.Array, heads: Mapping[str, tuple]) -> jax.Array:
  return jnp.concatenate([fn(x[..., a:b]) for a, b in heads.values()], axis=-1)


def view_scores(logits: jax.Array, heads: Mapping[str, tuple], loss: str, aggregation: str) -> jax.Array:
  """What is averaged over views: the logits, or probabilities (per-head softmax; sigmoid for loss
  'sigmoid')."""
  logits = logits.astype(jnp.float32)
  if aggregation == 'logits':
    return logits
  if loss == 'sigmoid':
    return jax.nn.sigmoid(logits)
  return _per_head(lambda x: jax.nn.softmax(x, axis=-1), logits, heads)


def scores_to_logits(mean: jax.Array, heads: Mapping[str, tuple], loss: str, aggregation: str) -> jax.Array:
  """Logits whose probabilities are the averaged ones (log p per head; log-odds for sigmoid), so that the
  counts (argmax, top-5, cross-entropy) score the aggregate."""
  if aggregation == 'logits':
    return mean
  tiny = jnp.finfo(jnp.float32).tiny
  if loss == 'sigmoid':
    return jnp.log(jnp.maximum(mean, tiny)) - jnp.log(jnp.maximum(1.0 - mean, tiny))
  return jnp.log(jnp.maximum(mean, tiny))


def aggregate_views(view_logits: jax.Array, heads: Mapping[str, tuple], loss: str = 'softmax',
                    aggregation: str = 'logits') -> jax.Array:
  """`[B, V, C]` logits of every view -> `[B, C]` logits of each video (see the module docstring)."""
  mean = jnp.mean(view_scores(view_logits, heads, loss, aggregation), axis=1)
  return scores_to_logits(mean, heads, loss, aggregation)


def make_multi_view_eval_step(apply_fn: ApplyFn, heads: Mapping[str, tuple], mesh: Mesh, *, loss: str = 'softmax',
                              aggregation: str = 'logits', max_views_per_batch: int = 64,
                              keep_scores: bool = False) -> Callable[[Any, Batch], Dict[str, Any]]:
  """`step(params, batch) -> {'counts': metrics.evaluation_counts(...)}` for batches whose 'inputs' are
  `[B, V, T, H, W, 3]` (or `[B, T, H, W, 3]`: one view). The views go through `apply_fn` in V / k passes of
  k = `views_per_pass` views (a `fori_loop`: one pass's activations live at a time). `keep_scores` also
  returns the batch's 'scores' (aggregated probabilities), 'label' and 'batch_mask' (for mAP)."""
  if aggregation not in AGGREGATIONS:
    raise ValueError(f'aggregation must be one of {AGGREGATIONS}, got {aggregation!r}')
  rows = NamedSharding(mesh, P(sharding_lib.BATCH_AXES))

  def step(params, batch: Batch) -> Dict[str, Any]:
    inputs = batch['inputs']
    inputs = inputs[:, None] if inputs.ndim == 5 else inputs
    b, v = inputs.shape[:2]
    k = views_per_pass(v, b, max_views_per_batch)

    def forward(first_view):
      chunk = jax.lax.dynamic_slice_in_dim(inputs, first_view, k, axis=1)  # [B, k, T, H, W, 3]
      clips = jax.lax.with_sharding_constraint(chunk.reshape((b * k,) + chunk.shape[2:]), rows)
      logits = apply_fn(params, clips).reshape(b, k, -1)
      return jnp.sum(view_scores(logits, heads, loss, aggregation), axis=1)  # [B, C]

    if v == k:
      total = forward(0)
    else:  # One traced forward pass, looped: a single chunk's activations are alive at a time.
      zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(forward, 0))
      total = jax.lax.fori_loop(0, v // k, lambda i, acc: acc + forward(i * k), zeros)
    logits = scores_to_logits(total / v, heads, loss, aggregation)
    out = {'counts': metrics.evaluation_counts(logits, batch['label'], batch['batch_mask'], heads, loss)}
    if keep_scores:
      out.update(scores=view_scores(logits, heads, loss, 'softmax'), label=batch['label'],
                 batch_mask=batch['batch_mask'])
    return out
  return step


def jit_multi_view_eval_step(step, params_shardings: Any, mesh: Mesh):
  """Jitted with explicit shardings: params as the rules place them, batches split over data x fsdp, the
  (small) outputs replicated so that every process can read them."""
  return jax.jit(step, in_shardings=(params_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.replicated(mesh))


def eval_loss(config: ml_collections.ConfigDict) -> str:
  return 'sigmoid' if config.model_name == 'vivit_multilabel_classification' else 'softmax'


def multi_view_eval_step_for(model, config: ml_collections.ConfigDict, params_shardings: Any, mesh: Mesh,
                             aggregation: str = 'logits'):
  """The jitted multi-view step of `config`'s model (heads, loss and view budget read from the config)."""
  loss = eval_loss(config)
  step = make_multi_view_eval_step(model_apply(model), metrics.heads_of(config), mesh, loss=loss,
                                   aggregation=aggregation, max_views_per_batch=config.eval_max_views_per_batch,
                                   keep_scores=loss == 'sigmoid')
  return jit_multi_view_eval_step(step, params_shardings, mesh)


@dataclasses.dataclass
class Evaluation:
  """One evaluation pass: scalar metrics by name and, per head, the `[C, C]` confusion matrix."""
  scalars: Dict[str, float]
  confusion: Dict[str, np.ndarray]


def evaluate_multi_view(eval_step: Callable[[Any, Batch], Dict[str, Any]], params: Any, pipeline: Pipeline,
                        split: str, mesh: Mesh, prefix: str, multi_view: bool = True) -> Evaluation:
  """One exact pass over `split` with `pipeline.eval_batches(split, multi_view=multi_view)` and a step from
  `make_multi_view_eval_step`; raises if the pass did not see exactly the split's videos."""
  batches = (sharding_lib.global_batch(local, mesh)
             for local in pipeline.eval_batches(split, multi_view=multi_view))
  return run_passes(eval_step, params, batches, pipeline.num_examples(split), prefix, split)


_accumulate = jax.jit(metrics.add_trees)  # Sums count trees on the devices (replicated in, replicated out).


def run_passes(eval_step: Callable[[Any, Batch], Dict[str, Any]], params: Any, batches: Iterable[Batch],
               expected_videos: Optional[int], prefix: str, split: str = '') -> Evaluation:
  """Runs `eval_step` over global `batches`, summing on the devices; one host sync after the first batch
  (for the timing, which leaves out compilation) and one fetch at the end."""
  totals, kept, clips, num_views = None, [], [], 1
  start = time.perf_counter()
  first_done = start
  for i, batch in enumerate(batches):
    num_views = batch['inputs'].shape[1] if batch['inputs'].ndim == 6 else 1
    out = eval_step(params, batch)
    totals = out['counts'] if totals is None else _accumulate(totals, out['counts'])
    if 'scores' in out:
      kept.append({k: out[k] for k in ('scores', 'label', 'batch_mask')})
    clips.append(batch['inputs'].shape[0] * num_views)
    if i == 0:  # Compiles the accumulation and waits for the first batch, both outside the timing.
      jax.block_until_ready(_accumulate(totals, totals))
      first_done = time.perf_counter()
  if totals is None:
    raise ValueError(f"split '{split}' has no examples to evaluate")
  totals, kept = jax.device_get((totals, kept))
  end = time.perf_counter()
  return _summarize(totals, kept, prefix, split, expected_videos, num_views,
                    _throughput(clips, start, first_done, end), end - start)


def _throughput(clips: List[int], start: float, first_done: float, end: float) -> float:
  """Clips (padding rows included) per second after the first batch, which includes compilation; the whole
  pass when there is only one batch."""
  if len(clips) > 1 and end > first_done:
    return sum(clips[1:]) / (end - first_done)
  return sum(clips) / max(end - start, 1e-9)


def _summarize(totals: Mapping[str, Any], kept: List[Dict[str, np.ndarray]], prefix: str, split: str,
               expected_videos: Optional[int], num_views: int, clips_per_s: float, wall_s: float) -> Evaluation:
  heads = totals['heads']
  num_videos = int(round(float(next(iter(heads.values()))['num_examples'])))
  if expected_videos is not None and num_videos != expected_videos:
    raise RuntimeError(f"evaluation of '{split}' saw {num_videos} videos; the split has {expected_videos}")
  scalars = metrics.summarize_evaluation(totals, prefix)
  if kept:
    stacked = {k: np.concatenate([np.asarray(b[k]) for b in kept]) for k in kept[0]}
    scalars[f'{prefix}/mAP'] = metrics.mean_average_precision(stacked['scores'], stacked['label'],
                                                              stacked['batch_mask'])
  scalars.update({f'{prefix}/num_videos': num_videos, f'{prefix}/num_views': num_videos * num_views,
                  f'{prefix}/clips_per_s': clips_per_s, f'{prefix}/wall_s': wall_s})
  return Evaluation(scalars, {name: np.asarray(c['confusion']) for name, c in heads.items()})
