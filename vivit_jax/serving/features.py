"""Video features: one embedding per video, the model's pre-logits averaged over the views that prediction and
the multi-view evaluation sample, for retrieval, clustering or a linear probe.

  restored = load('runs/k400', for_files=True)           # any checkpoint load_params reads (checkpoints.restore)
  table = extract_files(restored, ['cat.mp4', 'dog.mp4'])  # FeatureTable: ids, labels, features [N, D], failures
  table = extract_split(load('runs/k400'), 'validation')   # the checkpoint's config's data: synthetic, DMVR, TFDS
  write_features('features.npz', table); load_features('features.npz')

Decisions:
- The feature is what the classifier reads: the pooled tokens (class token, or the mean / max / sum of the tokens),
  through the tanh `pre_logits` layer when the model has a `representation_size`, before `output_projection`.
  Every variant ends in `heads.classify`, which returns exactly this with `return_prelogits` (Model 2: the
  temporal encoder's pooled output; its spatial-only baseline: the mean of the frame features), so the model is
  cloned with it (`prelogits_model`). D is `representation_size`, else `hidden_size`. Multi-head models (EPIC)
  have one representation under their heads' columns of one projection: one feature per video.
- Views: the config's test views (`num_test_clips` x 1 or 3 crops, `Views.test_views`; `view_overrides` changes
  them), averaged. The mean is linear, so projecting the feature gives the mean of the views' logits, which is
  what prediction and the evaluation score.
- Files go through `serving.predict.Predictor` (PyAV decoding at `fps`, only the frames the views need kept, the
  evaluation's sampling, crops and normalisation); a file that fails is recorded with its reason and the others
  go on. Splits go through the evaluation pipeline (`create_pipeline(config).eval_batches`: one exact pass, padding
  masked) with the views chunked through the model as the evaluator does (`evaluators.views_per_pass`), jitted with
  explicit shardings on the checkpoint's mesh.
- ids: a file's path as given or found; a split video's `'{split}/{n}'`, n its position in the pass (one process:
  the stored order: the synthetic example index, the DMVR records in table order, the TFDS split's order).
- labels are int32 and -1 where not known: [N] class indices (classification), [N, heads] indices within each head
  (multi-head, heads in `head_names`), [N, C] multi-hot (multi-label). Split videos carry their data's labels. A
  file's label is its folder's name when that is one of the checkpoint's class names (the `{split}/{class}/video`
  layout prepare_data reads), for single-label classification; otherwise -1.
- The .npz holds numbers and numpy strings only (it loads with allow_pickle=False), written to a temporary file
  beside the output and renamed over it, so that a reader never sees half a file.
"""

import dataclasses
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vivit_jax import sharding as sharding_lib
from vivit_jax import tasks
from vivit_jax.checkpoints.restore import Restored, restore_for_use
from vivit_jax.data import Views, check_data, create_pipeline
from vivit_jax.data.ingest import video_io
from vivit_jax.eval import evaluators
from vivit_jax.serving.predict import DEFAULT_FPS, Predictor

FORMAT_VERSION = 1
Progress = Callable[[int, int], None]  # (videos done, videos in all)


def prelogits_model(model: Any) -> Any:
  """The same module returning its pre-logits [B, D] instead of logits (same params; `output_projection` unused)."""
  fields = {'return_prelogits': True}
  if hasattr(model, 'return_preclassifier'):  # Models 1, 3 and 4 can also return their tokens: not wanted here.
    fields['return_preclassifier'] = False
  return model.clone(**fields)


def feature_size(config: Any) -> int:
  """D: the width of the pre-logits (`representation_size`, else `hidden_size`)."""
  return config.model.representation_size or config.model.hidden_size


def view_overrides(views: Views) -> List[str]:
  """Config overrides that make `views` the test views (what both files and splits sample)."""
  return [f'dataset_configs.num_test_clips={views.clips}', f'dataset_configs.do_three_spatial_crops={views.crops == 3}']


def load(checkpoint: str, config: Any = None, overrides: Sequence[str] = (), label_map: Optional[str] = None,
         for_files: bool = False) -> Restored:
  """`checkpoints.restore_for_use`, the params on one device for files (as prediction) or on the config's mesh."""
  mesh = sharding_lib.single_device_mesh() if for_files else None
  return restore_for_use(checkpoint, config, overrides, label_map=label_map, mesh=mesh)


@dataclasses.dataclass
class FeatureTable:
  """One row per video (see the module docstring for ids and labels)."""
  ids: List[str]
  labels: np.ndarray  # int32 [N], [N, heads] or [N, C]; -1 where not known.
  features: np.ndarray  # float32 [N, D]
  label_names: List[str]
  head_names: List[str]
  meta: Dict[str, Any]  # Plain strings and numbers: checkpoint, source, views, ...
  failed: Dict[str, str] = dataclasses.field(default_factory=dict)  # File -> why it has no features.


def _label_shape(task: tasks.Task) -> tuple:
  if task.multi_label:
    return (task.num_classes,)
  return (len(task.heads),) if task.multi_head else ()


def labels_of(one_hot: np.ndarray, task: tasks.Task) -> np.ndarray:
  """Batch labels [B, C] (one-hot, one block per head, or multi-hot) -> int32 labels as the module says."""
  one_hot = np.asarray(one_hot, np.float32)
  if task.multi_label:
    return (one_hot > 0.5).astype(np.int32)
  columns = [np.where(one_hot[:, h.start:h.stop].max(axis=1) > 0, one_hot[:, h.start:h.stop].argmax(axis=1), -1)
             for h in task.heads]
  stacked = np.stack(columns, axis=1).astype(np.int32)
  return stacked if task.multi_head else stacked[:, 0]


def file_label(path: str, task: tasks.Task, label_names: Optional[Sequence[str]]) -> np.ndarray:
  """A file's label: its folder's name as a class index (single-label classification), else -1."""
  label = np.full(_label_shape(task), -1, np.int32)
  folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
  if label_names and not (task.multi_label or task.multi_head) and folder in label_names:
    label[...] = list(label_names).index(folder)
  return label


def _table(restored: Restored, ids, labels, features, names, meta, failed=None) -> FeatureTable:
  task = restored.task
  dim = feature_size(restored.config)
  meta = {'format_version': FORMAT_VERSION, 'checkpoint': restored.path, 'task': task.model_name,
          'feature': 'pre_logits' if restored.config.model.representation_size else 'pooled',
          'views': str(Views.test_views(restored.config)), 'num_views': Views.test_views(restored.config).count,
          'config_json': restored.config.to_json_best_effort(sort_keys=True), **meta}
  return FeatureTable(ids=list(ids), labels=np.asarray(labels, np.int32).reshape((len(ids),) + _label_shape(task)),
                      features=np.asarray(features, np.float32).reshape(len(ids), dim), label_names=list(names),
                      head_names=[h.name for h in task.heads] if task.multi_head else [], meta=meta,
                      failed=dict(failed or {}))


def _names(restored: Restored, data_names: Optional[Sequence[str]] = None) -> List[str]:
  count = restored.task.num_classes
  if restored.label_names:
    return list(restored.label_names)
  if data_names and len(data_names) == count:
    return list(data_names)
  return [f'class_{i}' for i in range(count)]


# --- Video files ---------------------------------------------------------------------------------------------


class FeatureExtractor(Predictor):
  """A `Predictor` whose model returns pre-logits, and whose result for a video is their mean over the views."""

  def __init__(self, *, model: Any, **kwargs: Any):
    super().__init__(model=prelogits_model(model), **kwargs)

  def summarize(self, outputs: np.ndarray, top_k: int) -> np.ndarray:
    del top_k
    return np.asarray(outputs, np.float32).mean(axis=0)

  def extract(self, path: str, fps: float = DEFAULT_FPS) -> Dict[str, Any]:
    """{'features': float32 [D], 'frames': N} (+ 'warning' for a partial file), or {'error': reason}: a failure
    is a result, so that the other files go on."""
    try:
      prediction = self.predict_stream(path, top_k=1, fps=fps)
    except video_io.VideoDecodeError as e:
      return {'error': e.reason}
    except Exception as e:  # pylint: disable=broad-except  (one file must not stop the others)
      return {'error': f'{type(e).__name__}: {e}'}
    out = {'features': prediction.result, 'frames': prediction.frames}
    if prediction.info.partial:
      out['warning'] = f'partial: {prediction.info.describe()}; features from the frames decoded'
    return out


def extract_files(restored: Restored, paths: Sequence[str], fps: float = DEFAULT_FPS,
                  batch_size: Optional[int] = None,
                  on_file: Optional[Callable[[int, str, Dict[str, Any]], None]] = None) -> FeatureTable:
  """Features of video files, in order; `on_file(i, path, result)` after each (result as `extract` returns).
  Files that fail are left out of the rows and listed in `failed`."""
  extractor = FeatureExtractor.from_restored(restored, batch_size)
  names = _names(restored)
  ids, labels, features, failed = [], [], [], {}
  for i, path in enumerate(paths, 1):
    result = extractor.extract(path, fps)
    if 'error' in result:
      failed[path] = result['error']
    else:
      ids.append(path)
      labels.append(file_label(path, restored.task, restored.label_names))
      features.append(result['features'])
    if on_file is not None:
      on_file(i, path, result)
  return _table(restored, ids, labels, features, names, {'source': 'files', 'fps': float(fps)}, failed)


# --- A dataset split -----------------------------------------------------------------------------------------


def make_feature_step(apply_fn: evaluators.ApplyFn, mesh: Any, max_views_per_batch: int) -> Callable:
  """`step(params, batch) -> {'features' [B, D], 'label', 'batch_mask'}` for batches whose 'inputs' are
  [B, V, T, H, W, 3] or [B, T, H, W, 3]: the views' mean of `apply_fn`'s output, the views chunked as the
  evaluator's step does (`views_per_pass`; a `fori_loop` over the chunks)."""
  rows = NamedSharding(mesh, P(sharding_lib.BATCH_AXES))

  def step(params, batch):
    features = evaluators.mean_over_views(lambda clips: apply_fn(params, clips).astype(jnp.float32),
                                          batch['inputs'], rows, max_views_per_batch)
    return {'features': features, 'label': batch['label'], 'batch_mask': batch['batch_mask']}
  return step


def extract_split(restored: Restored, split: Optional[str] = None, batch_size: Optional[int] = None,
                  progress: Optional[Progress] = None) -> FeatureTable:
  """Features of every video of a split of the checkpoint's config's data, with its labels.

  `split` None: the evaluation's default ('test' where the config names test data, else 'validation').
  `batch_size`: videos per global batch (default `dataset_configs.test_batch_size`, rounded up to the mesh).
  The split and the data are checked as the evaluation checks them, before anything is decoded.
  """
  config, mesh = restored.config, restored.mesh
  pipeline = create_pipeline(config)
  split = split or evaluators.default_split(pipeline)
  evaluators.check_split(pipeline, split)  # The evaluation's own message.
  views = Views.test_views(config)
  size = evaluators.round_up_batch(batch_size or config.dataset_configs.test_batch_size, mesh)
  evaluators.check_views_fit(config, views, size)
  check_data(pipeline, [split], counts_must_match=False)
  apply_fn = evaluators.model_apply(prelogits_model(restored.model))
  shardings = jax.tree_util.tree_map(lambda x: x.sharding, restored.params)
  step = jax.jit(make_feature_step(apply_fn, mesh, config.eval_max_views_per_batch),
                 in_shardings=(shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.replicated(mesh))
  total, labels, features = pipeline.num_examples(split), [], []
  for local in pipeline.eval_batches(split, views, size):
    out = jax.device_get(step(restored.params, sharding_lib.global_batch(local, mesh)))
    real = np.asarray(out['batch_mask']) > 0
    features.append(np.asarray(out['features'])[real])
    labels.append(labels_of(np.asarray(out['label'])[real], restored.task))
    if progress is not None:
      progress(sum(map(len, features)), total)
  count = sum(map(len, features))
  if count != total:
    raise RuntimeError(f"the pass over '{split}' saw {count} videos; the split has {total}")
  width = f'0{len(str(max(total - 1, 0)))}d'
  ids = [f'{split}/{n:{width}}' for n in range(count)]
  return _table(restored, ids, np.concatenate(labels), np.concatenate(features), _names(restored, pipeline.label_names),
                {'source': f'split:{split}', 'split': split, 'dataset_name': config.dataset_name})


# --- The .npz ------------------------------------------------------------------------------------------------


def write_features(path: str, table: FeatureTable) -> None:
  """Writes `table` to `path` (.npz, no pickled objects): through a temporary file beside it, then renamed."""
  arrays = {'ids': np.asarray(table.ids, dtype=str), 'labels': table.labels, 'features': table.features,
            'label_names': np.asarray(table.label_names, dtype=str),
            'head_names': np.asarray(table.head_names, dtype=str),
            'failed_ids': np.asarray(list(table.failed), dtype=str),
            'failed_reasons': np.asarray(list(table.failed.values()), dtype=str)}
  for key, value in table.meta.items():
    arrays[key] = np.asarray(value)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  temporary = os.path.join(directory, f'.{os.path.basename(path)}.{os.getpid()}.tmp')
  try:
    with open(temporary, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def load_features(path: str) -> Dict[str, Any]:
  """{key: array} of a features .npz, its 0-d entries (checkpoint, views, ...) as Python strings and numbers."""
  with np.load(path, allow_pickle=False) as data:
    return {key: data[key].item() if data[key].ndim == 0 else data[key] for key in data.files}


# --- Retrieval -----------------------------------------------------------------------------------------------


def retrieval_accuracy(features: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
  """Leave-one-out nearest neighbour by cosine similarity over the videos with a known single label: the share
  whose nearest other video has the same label ('top1'), and what a random other video gives ('chance')."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f'retrieval needs one label per video; got labels of shape {labels.shape}')
  known = labels >= 0
  x, y = np.asarray(features, np.float64)[known], labels[known]
  if len(y) < 2:
    raise ValueError(f'retrieval needs at least 2 labelled videos; got {len(y)}')
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  similarity = x @ x.T
  np.fill_diagonal(similarity, -np.inf)
  top1 = float(np.mean(y[similarity.argmax(axis=1)] == y))
  counts = np.bincount(y)
  chance = float(np.sum(counts * (counts - 1)) / (len(y) * (len(y) - 1)))
  return {'top1': top1, 'chance': chance, 'videos': int(len(y))}


def progress_printer(stream: Any, every_s: float = 2.0) -> Progress:
  """A `Progress` printing '[done/total] videos, R videos/s' to `stream` at most every `every_s` and at the end."""
  start, last = time.perf_counter(), [float('-inf')]

  def report(done: int, total: int) -> None:
    now = time.perf_counter()
    if done >= total or now - last[0] >= every_s:
      last[0] = now
      print(f'[{done}/{total}] videos, {done / max(now - start, 1e-9):.2f} videos/s', file=stream, flush=True)
  return report
