"""Evaluators. The single-view evaluator makes one exact pass over a split: every video once, padding masked
out, counts summed on the devices and fetched once at the end.

Metric names are Scenic's: `{prefix}/accuracy`, `{prefix}/accuracy_top_5`, `{prefix}/loss`, plus
`{prefix}/num_videos` and `{prefix}/num_views` (videos and clip views the pass actually saw).
"""

from typing import Any, Callable, Dict

import jax
from jax.sharding import Mesh

from vivit_jax import metrics
from vivit_jax import sharding as sharding_lib
from vivit_jax.data.pipeline import Pipeline


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
