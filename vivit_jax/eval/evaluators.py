"""The one evaluation path. A pass sends `V` views of every video through the model, V = 1 for the trainer's
validation and `clips x crops` for the paper's multi-view test, and makes one exact pass over a split: every video
once, padding masked out, counts summed on the devices and fetched once at the end.

A video's views are aggregated by the mean of their logits (the paper's, `aggregation='logits'`) or the mean of
their probabilities (`aggregation='softmax'`: the task's probabilities, softmax per head or sigmoid), and the
aggregate is scored like a single clip. Views go through the model in passes of at most `max_views_per_batch`
clips over the whole mesh (see `views_per_pass`), so a 4 x 3 test never holds 12 x the batch at once and never
repeats work.

Metric names are Scenic's, under a prefix (`valid`, `test`, ...): `accuracy`, `accuracy_top_5`, `loss` and
`mean_per_class_accuracy` (per head `{head}/...` for multi-head tasks, plus EPIC's `action/accuracy` and
`action/accuracy_top_5`), `mAP` for multi-label tasks, `num_videos` and `num_views` (what the pass actually saw),
`wall_s` (the whole pass, compilation included) and `clips_per_s`: real clips (the views of real videos; masked
padding rows are not counted) per second of wall time after the first batch, whose time holds the compilation
(with a single batch: over the whole pass, compilation included). With 'softmax' aggregation the loss is the
cross-entropy of the averaged probabilities.
"""

import dataclasses
import difflib
import logging
import os
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vivit_jax import sharding as sharding_lib
from vivit_jax import tasks
from vivit_jax.checkpoints.restore import Restored, restore_for_use
from vivit_jax.config import ConfigError
from vivit_jax.data import SINGLE_VIEW, DataError, Pipeline, Views, check_data, create_pipeline
from vivit_jax.eval import metrics

Batch = Dict[str, jax.Array]
ApplyFn = Callable[[Any, jax.Array], jax.Array]  # (params, clips [N, T, H, W, 3]) -> logits [N, C]
EvalStep = Callable[[Any, Batch], Dict[str, Any]]
AGGREGATIONS = ('logits', 'softmax')


def views_per_pass(num_views: int, batch_size: int, max_views_per_batch: int) -> int:
  """The views of each video one forward pass takes: the largest divisor k of `num_views` with
  batch_size x k <= max_views_per_batch, at least 1 (a pass always holds the whole batch, one view each).
  Equal chunks mean one compiled pass and no padded views: every view is computed exactly once."""
  fits = max(1, max_views_per_batch // max(batch_size, 1))
  return max(k for k in range(1, num_views + 1) if num_views % k == 0 and k <= fits)


def model_apply(model) -> ApplyFn:
  """The eval-mode forward pass of a Flax model as an `ApplyFn`."""
  return lambda params, clips: model.apply({'params': params}, clips, train=False)


def view_scores(logits: jax.Array, task: tasks.Task, aggregation: str) -> jax.Array:
  """What is averaged over views: the logits, or the task's probabilities."""
  return logits.astype(jnp.float32) if aggregation == 'logits' else task.probabilities(logits)


def aggregate_views(view_logits: jax.Array, task: tasks.Task, aggregation: str = 'logits') -> jax.Array:
  """`[B, V, C]` logits of every view -> `[B, C]` logits of each video (see the module docstring)."""
  mean = jnp.mean(view_scores(view_logits, task, aggregation), axis=1)
  return mean if aggregation == 'logits' else task.logits_of(mean)


def mean_over_views(score: Callable[[jax.Array], jax.Array], inputs: jax.Array, rows: NamedSharding,
                    max_views_per_batch: int) -> jax.Array:
  """[B, ...]: the mean over views of `score(clips)` ([N, ...] for N clips) for `inputs` [B, V, T, H, W, 3] or
  [B, T, H, W, 3] (one view). The views go through `score` in V / k passes of k = `views_per_pass` views (a
  `fori_loop`: one pass's activations live at a time), each pass's clips laid out as `rows`."""
  inputs = inputs[:, None] if inputs.ndim == 5 else inputs
  b, v = inputs.shape[:2]
  k = views_per_pass(v, b, max_views_per_batch)

  def forward(first_view):
    chunk = jax.lax.dynamic_slice_in_dim(inputs, first_view, k, axis=1)  # [B, k, T, H, W, 3]
    clips = jax.lax.with_sharding_constraint(chunk.reshape((b * k,) + chunk.shape[2:]), rows)
    scores = score(clips)
    return jnp.sum(scores.reshape((b, k) + scores.shape[1:]), axis=1)

  if v == k:
    total = forward(0)
  else:  # One traced forward pass, looped: a single chunk's activations are alive at a time.
    shape = jax.eval_shape(forward, 0)
    total = jax.lax.fori_loop(0, v // k, lambda i, acc: acc + forward(i * k), jnp.zeros(shape.shape, shape.dtype))
  return total / v


def make_eval_step(apply_fn: ApplyFn, task: tasks.Task, mesh: Mesh, *, aggregation: str = 'logits',
                   max_views_per_batch: int = 64, keep_scores: Optional[bool] = None) -> EvalStep:
  """`step(params, batch) -> {'counts': metrics.evaluation_counts(...)}` for batches whose 'inputs' are
  `[B, V, T, H, W, 3]` or `[B, T, H, W, 3]` (one view). The views go through `apply_fn` in V / k passes of
  k = `views_per_pass` views (a `fori_loop`: one pass's activations live at a time). `keep_scores` (default: for
  multi-label tasks) also returns the batch's 'scores' (aggregated probabilities), 'label' and 'batch_mask', for
  the mAP."""
  if aggregation not in AGGREGATIONS:
    raise ValueError(f'aggregation must be one of {AGGREGATIONS}, got {aggregation!r}')
  keep_scores = task.multi_label if keep_scores is None else keep_scores
  rows = NamedSharding(mesh, P(sharding_lib.BATCH_AXES))

  def step(params, batch: Batch) -> Dict[str, Any]:
    mean = mean_over_views(lambda clips: view_scores(apply_fn(params, clips), task, aggregation), batch['inputs'],
                           rows, max_views_per_batch)
    logits = mean if aggregation == 'logits' else task.logits_of(mean)
    out = {'counts': metrics.evaluation_counts(logits, batch['label'], batch['batch_mask'], task)}
    if keep_scores:
      out.update(scores=task.probabilities(logits), label=batch['label'], batch_mask=batch['batch_mask'])
    return out
  return step


def jit_eval_step(step: EvalStep, params_shardings: Any, mesh: Mesh):
  """Jitted with explicit shardings: params as the rules place them, batches split over data x fsdp, the
  (small) outputs replicated so that every process can read them."""
  return jax.jit(step, in_shardings=(params_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.replicated(mesh))


def eval_step_for(model, config: ml_collections.ConfigDict, params_shardings: Any, mesh: Mesh,
                  aggregation: str = 'logits'):
  """The jitted evaluation step of `config`'s model (task and view budget read from the config)."""
  step = make_eval_step(model_apply(model), tasks.Task.from_config(config), mesh, aggregation=aggregation,
                        max_views_per_batch=config.eval_max_views_per_batch)
  return jit_eval_step(step, params_shardings, mesh)


def round_up_batch(requested: int, mesh: Mesh) -> int:
  """`requested` rounded up to a multiple of the mesh's data x fsdp size, with a log line when it changes."""
  ways = sharding_lib.batch_parallelism(mesh)
  size = -(-max(int(requested), 1) // ways) * ways
  if size != requested:
    logging.warning('Evaluation batch of %d videos rounded up to %d, a multiple of the mesh data x fsdp size '
                    '%d; the extra rows are masked padding', requested, size, ways)
  return size


@dataclasses.dataclass
class Evaluation:
  """One evaluation pass: scalar metrics by name and, per head, the `[C, C]` confusion matrix."""
  scalars: Dict[str, float]
  confusion: Dict[str, np.ndarray]


def evaluate(eval_step: EvalStep, params: Any, pipeline: Pipeline, split: str, mesh: Mesh, prefix: str,
             views: Views = SINGLE_VIEW, batch_size: Optional[int] = None) -> Evaluation:
  """One exact pass over `split` with `views` per video; raises if it did not see exactly the split's videos."""
  batches = (sharding_lib.global_batch(local, mesh)
             for local in pipeline.eval_batches(split, views, batch_size))
  return run_passes(eval_step, params, batches, pipeline.num_examples(split), prefix, split)


_accumulate = jax.jit(metrics.add_trees)  # Sums count trees on the devices (replicated in, replicated out).


def run_passes(eval_step: EvalStep, params: Any, batches: Iterable[Batch], expected_videos: Optional[int],
               prefix: str, split: str = '') -> Evaluation:
  """Runs `eval_step` over global `batches`, summing on the devices; one host sync after the first batch
  (for the timing, which leaves out compilation: see `_throughput`) and one fetch at the end."""
  totals, kept, num_batches, num_views = None, [], 0, 1
  start = time.perf_counter()
  first_done, first_videos = start, 0
  for batch in batches:
    num_views = batch['inputs'].shape[1] if batch['inputs'].ndim == 6 else 1
    out = eval_step(params, batch)
    totals = out['counts'] if totals is None else _accumulate(totals, out['counts'])
    if 'scores' in out:
      kept.append({k: out[k] for k in ('scores', 'label', 'batch_mask')})
    num_batches += 1
    if num_batches == 1:  # Compiles the accumulation and waits for the first batch, both outside the timing.
      jax.block_until_ready(_accumulate(totals, totals))
      first_videos = _num_videos(jax.device_get(out['counts']))
      first_done = time.perf_counter()
  if totals is None:
    raise ValueError(f"split '{split}' has no examples to evaluate")
  totals, kept = jax.device_get((totals, kept))
  end = time.perf_counter()
  num_videos = _num_videos(totals)
  clips_per_s = _throughput(num_videos * num_views, first_videos * num_views, num_batches > 1,
                            (start, first_done, end))
  return _summarize(totals, kept, prefix, split, expected_videos, num_views, clips_per_s, end - start)


def _num_videos(counts: Dict[str, Any]) -> int:
  """The real (unmasked) videos that fetched `evaluation_counts` counted."""
  return int(round(float(next(iter(counts['heads'].values()))['num_examples'])))


def _throughput(clips: int, first_clips: int, several_batches: bool, times: Tuple[float, float, float]) -> float:
  """Real clips (views of real videos: masked padding rows are not counted) per second of the pass's wall time
  after the first batch, whose time holds the compilation; with one batch, over the whole pass, compilation
  included. `times`: (start, first batch done, end)."""
  start, first_done, end = times
  if several_batches and end > first_done:
    return (clips - first_clips) / (end - first_done)
  return clips / max(end - start, 1e-9)


def _summarize(totals: Dict[str, Any], kept: List[Dict[str, np.ndarray]], prefix: str, split: str,
               expected_videos: Optional[int], num_views: int, clips_per_s: float, wall_s: float) -> Evaluation:
  heads = totals['heads']
  num_videos = _num_videos(totals)
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


def evaluated_splits(config: ml_collections.ConfigDict, pipeline: Pipeline) -> List[str]:
  """The splits a training run evaluates: 'validation', and 'test' with `do_multicrop_test` when there is one."""
  test = config.dataset_configs.do_multicrop_test and pipeline.has_split('test')
  return ['validation', 'test'] if test else ['validation']


class TrainingEvaluators:
  """What the trainer evaluates, and when: validation with one view per video every `log_eval_steps` (default
  once an epoch) and at the end, under 'valid'; with `dataset_configs.do_multicrop_test`, Scenic's multi-view
  test on the 'test' split (`num_test_clips` x 1 or 3 crops, `test_batch_size` videos per batch) every
  `log_test_epochs` epochs and at the end, under 'test'. A config that names no test data skips the test with one
  log line, as Scenic's trainer did. EMA params, when there are any, are evaluated beside the params
  ('valid_ema', 'test_ema')."""

  def __init__(self, config: ml_collections.ConfigDict, model, pipeline: Pipeline, mesh: Mesh,
               params_shardings: Any, steps_per_epoch: float):
    d = config.dataset_configs
    self.pipeline, self.mesh = pipeline, mesh
    self.step = eval_step_for(model, config, params_shardings, mesh)
    self.valid_every = config.log_eval_steps or max(1, int(round(steps_per_epoch)))
    self.test_every, self.test_views = None, Views.test_views(config)
    if 'test' in evaluated_splits(config, pipeline):
      self.test_every = max(1, int(round(d.log_test_epochs * steps_per_epoch)))
      self.test_batch_size = round_up_batch(d.test_batch_size, mesh)
    elif d.do_multicrop_test:
      logging.info("No multi-view test during training: the config names no 'test' data (a test table, or "
                   "examples_per_subset.test for synthetic data); set dataset_configs.do_multicrop_test=False to "
                   'say so')

  def __call__(self, params: Any, ema_params: Optional[Any], step: int, last: bool) -> Dict[str, float]:
    """The scalars of every evaluation due at `step` ({} when none is); `last` is the final step."""
    scalars: Dict[str, float] = {}
    candidates = {'': params, '_ema': ema_params}
    weights = {suffix: p for suffix, p in candidates.items() if p is not None}
    if last or step % self.valid_every == 0:
      for suffix, p in weights.items():
        scalars.update(evaluate(self.step, p, self.pipeline, 'validation', self.mesh, 'valid' + suffix).scalars)
    if self.test_every and (last or step % self.test_every == 0):
      for suffix, p in weights.items():
        scalars.update(evaluate(self.step, p, self.pipeline, 'test', self.mesh, 'test' + suffix, self.test_views,
                                self.test_batch_size).scalars)
    return scalars


def check_split(pipeline: Pipeline, split: str) -> None:
  """A DataError naming the splits the config has, and the closest, when it has no data for `split`."""
  if '[' in split or pipeline.has_split(split):  # A TFDS slice ('train[:10%]') is checked by TFDS itself.
    return
  d = pipeline.config.dataset_configs
  candidates = {'train', 'validation', 'test', *(d.get('tables') or {}), *(d.get('examples_per_subset') or {})}
  known = sorted(s for s in candidates if pipeline.has_split(s))
  close = difflib.get_close_matches(split, known, n=1)
  raise DataError(f"split {split!r}: the config names no data for it" + (f"; did you mean {close[0]!r}?" if close
                                                                         else '') + f' (its splits: {known})')


def host_memory_bytes() -> Optional[int]:
  """This machine's memory (or its cgroup's limit, when lower), None where unknown."""
  sizes = []
  try:
    sizes.append(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES'))
  except (ValueError, OSError, AttributeError):
    pass
  try:
    with open('/sys/fs/cgroup/memory.max', encoding='ascii') as f:
      sizes.append(int(f.read().strip()))
  except (OSError, ValueError):  # No cgroup v2, or 'max'.
    pass
  return min(sizes) if sizes else None


def check_views_fit(config: ml_collections.ConfigDict, views: Views, batch_size: int) -> None:
  """A ConfigError when one multi-view batch (every view of `batch_size` videos, as the pipeline hands it over)
  would not fit in this machine's memory, before anything is decoded."""
  d, memory = config.dataset_configs, host_memory_bytes()
  per_video = views.count * d.num_frames * d.crop_size ** 2 * 3 * np.dtype(config.data_dtype_str).itemsize
  if memory is not None and per_video * batch_size > memory:
    raise ConfigError(f'{views} views ({views.count} clips per video) of {batch_size} videos per batch need '
                      f'{per_video * batch_size / 2**30:.1f} GiB of host memory as {config.data_dtype_str}, more '
                      f'than the {memory / 2**30:.1f} GiB here; ask for fewer views or a smaller --batch_size')


def default_split(pipeline: Pipeline) -> str:
  """The split to evaluate when none is named: 'test' where the config names test data (a test table, or
  examples_per_subset.test), else 'validation' (a folder dataset, say, has no test split)."""
  return 'test' if pipeline.has_split('test') else 'validation'


def evaluate_checkpoint(checkpoint: str, config: Any = None, overrides: Sequence[str] = (),
                        split: Optional[str] = None, views: Optional[Views] = None, aggregation: str = 'logits',
                        batch_size: Optional[int] = None, label_map: Optional[str] = None,
                        devices: Optional[List[Any]] = None, split_chosen: Optional[Callable[[str], None]] = None
                        ) -> Tuple[Dict[str, Any], Dict[str, Evaluation], Restored]:
  """Single-view and multi-view passes of any checkpoint `load_params` reads over `split` (None: `default_split`).

  The checkpoint is restored for use (`checkpoints.restore`: the given config, else the saved one). Batch sizes
  are videos per global batch and never depend on the device count: `batch_size` for both passes, else
  `eval_batch_size` (else `batch_size`) for the single view and `dataset_configs.test_batch_size` for the multi
  view, each rounded up to a multiple of the mesh's data x fsdp size (the extra rows are masked padding).
  `views` default to the config's test views. With one view the multi-view pass is the single-view pass, so it
  runs once. `split_chosen(split)` is called once the split is known to exist, before the data is checked or
  any pass runs (the command checks its output path there, named after the split).

  Returns:
    (summary: the JSON-ready run description with 'metrics', {'single_view'|'multi_view': Evaluation}, the
    restored checkpoint).
  """
  restored = restore_for_use(checkpoint, config, overrides, label_map=label_map, devices=devices)
  config, mesh = restored.config, restored.mesh
  views = views or Views.test_views(config)
  shardings = jax.tree_util.tree_map(lambda x: x.sharding, restored.params)
  step = eval_step_for(restored.model, config, shardings, mesh, aggregation)
  pipeline = create_pipeline(config)
  if split is None:
    split = default_split(pipeline)
    logging.info("No split named: evaluating '%s'%s", split, '' if split == 'test' else ' (no test data)')
  check_split(pipeline, split)
  if split_chosen is not None:
    split_chosen(split)
  requested = {'single_view': batch_size or config.eval_batch_size or config.batch_size,
               'multi_view': batch_size or config.dataset_configs.test_batch_size}
  check_views_fit(config, views, round_up_batch(requested['multi_view'], mesh))
  check_data(pipeline, [split], counts_must_match=False)
  summary: Dict[str, Any] = {'checkpoint': checkpoint, 'split': split, 'aggregation': aggregation,
                             'views': str(views), 'batch_size': {}, 'batch_size_requested': requested,
                             'metrics': {}, 'eval_max_views_per_batch': config.eval_max_views_per_batch,
                             'mesh': dict(mesh.shape)}
  passes: Dict[str, Evaluation] = {}
  for prefix, pass_views in (('single_view', SINGLE_VIEW), ('multi_view', views)):
    size = summary['batch_size'][prefix] = round_up_batch(requested[prefix], mesh)
    if pass_views.single and passes:
      first = passes['single_view']
      passes[prefix] = Evaluation({k.replace('single_view/', f'{prefix}/', 1): v for k, v in first.scalars.items()},
                                  first.confusion)
    else:
      logging.info('Evaluating %s (%s views) on %s: %d videos, batches of %d', prefix, pass_views, split,
                   pipeline.num_examples(split), size)
      passes[prefix] = evaluate(step, restored.params, pipeline, split, mesh, prefix, pass_views, size)
    summary['metrics'].update(passes[prefix].scalars)
  summary['num_videos'] = summary['metrics']['multi_view/num_videos']
  summary['num_views'] = summary['metrics']['multi_view/num_views']
  return summary, passes, restored
