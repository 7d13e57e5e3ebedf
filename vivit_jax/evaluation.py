"""Evaluates any checkpoint `load_params` reads, single-view and multi-view in one run (scripts/evaluate.py).

  python scripts/evaluate.py --config=configs/kinetics400/vivit_base_k400.py --checkpoint=runs/k400 \\
      [--split=test] [--views=4x3] [--aggregation=logits|softmax] [--output=eval.json] [--batch_size=N] \\
      [--config.KEY=VALUE ...]

The config (the file with its overrides; without --config, the one saved in a vivit_jax checkpoint) says the
model and data. `--views=CLIPSxCROPS` sets `dataset_configs.num_test_clips` = CLIPS and
`do_three_spatial_crops` = (CROPS == 3). The params are checked against the model (a mismatch lists the
missing, unexpected and mis-shaped paths) and placed on the mesh by the sharding rules.

Batch sizes are videos per global batch and never depend on the device count: the single-view pass uses
--batch_size, else `eval_batch_size`, else `batch_size`; the multi-view pass --batch_size, else
`dataset_configs.test_batch_size`. Each is rounded up to a multiple of the mesh's data x fsdp size (the extra
rows are masked padding), and the run says so. Views per forward pass are bounded by
`config.eval_max_views_per_batch` (see evaluate.py).

Outputs: a table on the console; `--output` JSON ({'metrics': {'single_view/...', 'multi_view/...'}, the
checkpoint, config, split, views, aggregation and batch sizes, 'files'}); beside it, from the multi-view pass,
`<stem>_per_class.csv` (class_index, name, videos, accuracy, single_view_accuracy), `<stem>_confusion.csv`
(rows: true class, columns: predicted) and `<stem>_confusion.png` (row-normalised heat map). Multi-head models
write one of each per head: `<stem>_<head>_per_class.csv`, ...
"""

import argparse
import copy
import csv
import logging
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
from flax import traverse_util
from PIL import Image

from vivit_jax import evaluate, metrics, reporting
from vivit_jax import sharding as sharding_lib
from vivit_jax.config import ConfigError, load_config
from vivit_jax.data import pipeline as pipeline_lib
from vivit_jax.models import create_model
from vivit_jax.models.complexity import abstract_params, input_shape

PASSES = (('single_view', False), ('multi_view', True))


def parse_views(text: str) -> Tuple[int, bool]:
  """'4x3' -> (4 temporal clips, three crops); '4x1' -> (4, False)."""
  match = re.fullmatch(r'\s*(\d+)\s*[xX]\s*([13])\s*', text or '')
  if not match or int(match.group(1)) < 1:
    raise ConfigError(f"--views must be CLIPSxCROPS with CLIPS >= 1 and CROPS 1 or 3 (e.g. 4x3), got {text!r}")
  return int(match.group(1)), match.group(2) == '3'


def load_eval_config(config_file: Optional[str], metadata: Optional[Dict[str, Any]], overrides: Sequence[str],
                     views: Optional[str]) -> ml_collections.ConfigDict:
  """The validated config: `config_file` (else the checkpoint's saved config), overrides, then --views."""
  overrides = list(overrides)
  if views:
    clips, three_crops = parse_views(views)
    overrides += [f'dataset_configs.num_test_clips={clips}',
                  f'dataset_configs.do_three_spatial_crops={three_crops}']
  if config_file:
    return load_config(config_file, overrides=overrides)
  if metadata and isinstance(metadata.get('config'), dict):
    return load_config(ml_collections.ConfigDict(metadata['config']), overrides=overrides)
  raise ConfigError('--config=FILE is required: the checkpoint carries no saved config')


def round_up_batch(requested: int, mesh) -> int:
  """`requested` rounded up to a multiple of the mesh's data x fsdp size, with a log line when it changes."""
  ways = sharding_lib.batch_parallelism(mesh)
  size = -(-max(int(requested), 1) // ways) * ways
  if size != requested:
    logging.warning('Evaluation batch of %d videos rounded up to %d, a multiple of the mesh data x fsdp size '
                    '%d; the extra rows are masked padding', requested, size, ways)
  return size


def restore_params(checkpoint: str, abstract: Any, shardings: Any) -> Any:
  """The checkpoint's params, checked against `abstract` and placed on `shardings` in the model's dtypes."""
  from vivit_jax.checkpoints import check_params_fit, load_params  # pylint: disable=g-import-not-at-top
  params = load_params(checkpoint)
  check_params_fit(params, abstract, source=checkpoint)
  stored = traverse_util.flatten_dict(params)
  wanted = traverse_util.flatten_dict(abstract)
  placed_shardings = traverse_util.flatten_dict(shardings)

  def place(key):
    value = np.asarray(stored[key], dtype=wanted[key].dtype)
    return jax.make_array_from_callback(value.shape, placed_shardings[key], lambda index: value[index])
  return traverse_util.unflatten_dict({key: place(key) for key in wanted})


def label_names(metadata: Optional[Dict[str, Any]], config: ml_collections.ConfigDict) -> Optional[List[str]]:
  """Class names: the checkpoint's saved preprocessing.label_names, else the pipeline's, else None."""
  saved = ((metadata or {}).get('preprocessing') or {}).get('label_names')
  if saved:
    return list(saved)
  try:
    return pipeline_lib.create_pipeline(config).label_names
  except Exception:  # pylint: disable=broad-except
    return None  # Names are a nicety: a dataset without a readable label map still gets 'class_<i>'.


def _with_eval_batch(config: ml_collections.ConfigDict, batch: int) -> ml_collections.ConfigDict:
  config = copy.deepcopy(config)
  config.eval_batch_size = batch
  return config


def evaluate_checkpoint(config: ml_collections.ConfigDict, checkpoint: str, split: str = 'test',
                        aggregation: str = 'logits', batch_size: Optional[int] = None,
                        devices: Optional[List[Any]] = None) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Single-view and multi-view passes of `checkpoint` over `split`.

  Returns:
    (summary: JSON-ready run description with 'metrics', passes: {'single_view'|'multi_view': Evaluation}).
  """
  mesh = sharding_lib.create_mesh(config.mesh, devices)
  model = create_model(config)
  abstract = abstract_params(model, input_shape(config))
  shardings = sharding_lib.state_shardings(abstract, mesh)
  params = restore_params(checkpoint, abstract, shardings)
  step = evaluate.multi_view_eval_step_for(model, config, shardings, mesh, aggregation)
  requested = {'single_view': batch_size or config.eval_batch_size or config.batch_size,
               'multi_view': batch_size or config.dataset_configs.test_batch_size}
  summary: Dict[str, Any] = {'checkpoint': checkpoint, 'split': split, 'aggregation': aggregation,
                             'views': views_name(config), 'batch_size': {}, 'batch_size_requested': {},
                             'metrics': {}, 'eval_max_views_per_batch': config.eval_max_views_per_batch,
                             'mesh': dict(mesh.shape)}
  passes = {}
  for prefix, multi_view in PASSES:
    size = round_up_batch(requested[prefix], mesh)
    pipeline = pipeline_lib.create_pipeline(_with_eval_batch(config, size))
    logging.info('Evaluating %s on %s: %d videos, batches of %d', prefix, split, pipeline.num_examples(split),
                 size)
    passes[prefix] = evaluate.evaluate_multi_view(step, params, pipeline, split, mesh, prefix, multi_view)
    summary['batch_size'][prefix] = size
    summary['batch_size_requested'][prefix] = requested[prefix]
    summary['metrics'].update(passes[prefix].scalars)
  summary['num_videos'] = summary['metrics']['multi_view/num_videos']
  summary['num_views'] = summary['metrics']['multi_view/num_views']
  return summary, passes


def views_name(config: ml_collections.ConfigDict) -> str:
  d = config.dataset_configs
  return f"{d.num_test_clips}x{3 if d.do_three_spatial_crops else 1}"


# --- Outputs ---------------------------------------------------------------------------------------------------

def head_names(label_names: Optional[Sequence[str]], heads: Dict[str, Tuple[int, int]]) -> Dict[str, List[str]]:
  """Per head, a name for each class: the given names (all heads' classes in order) else 'class_<i>'."""
  out = {}
  for head, (a, b) in heads.items():
    if label_names is not None and len(label_names) >= b:
      out[head] = [str(n) for n in label_names[a:b]]
    else:
      out[head] = [f'class_{i}' for i in range(b - a)]
  return out


def write_per_class_csv(path: str, names: Sequence[str], confusion: np.ndarray,
                        single_view: Optional[np.ndarray] = None) -> None:
  videos, accuracy = metrics.per_class_accuracy(confusion)
  single = metrics.per_class_accuracy(single_view)[1] if single_view is not None else None
  fmt = lambda x: '' if np.isnan(x) else f'{x:.6f}'
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['class_index', 'name', 'videos', 'accuracy', 'single_view_accuracy'])
    for c, name in enumerate(names):
      writer.writerow([c, name, int(videos[c]), fmt(accuracy[c]), '' if single is None else fmt(single[c])])


def write_confusion_csv(path: str, names: Sequence[str], confusion: np.ndarray) -> None:
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['true \\ predicted'] + list(names))
    for name, row in zip(names, np.asarray(confusion)):
      writer.writerow([name] + [int(round(v)) for v in row])


def confusion_image(confusion: np.ndarray, max_side: int = 800) -> Image.Image:
  """A heat map of the row-normalised confusion matrix (white: 0, dark blue: every video of the true class);
  each cell is a square of up to 32 pixels, rows are true classes and columns predicted ones."""
  confusion = np.asarray(confusion, np.float64)
  rows = confusion.sum(axis=1, keepdims=True)
  fraction = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
  cell = max(1, min(32, max_side // max(confusion.shape[0], 1)))
  white, dark = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
  pixels = white + fraction[..., None] * (dark - white)
  pixels = np.repeat(np.repeat(pixels, cell, axis=0), cell, axis=1)
  return Image.fromarray(np.round(pixels).astype(np.uint8), mode='RGB')


def write_outputs(summary: Dict[str, Any], passes: Dict[str, Any], heads: Dict[str, Tuple[int, int]],
                  output: str, label_names: Optional[Sequence[str]] = None) -> Dict[str, str]:
  """The JSON, and per head the per-class CSV, confusion CSV and PNG; returns {what: path}."""
  stem = output[:-len('.json')] if output.endswith('.json') else output
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  names = head_names(label_names, heads)
  files = {'results': output}
  multi, single = passes['multi_view'].confusion, passes['single_view'].confusion
  for head in heads:
    base = f'{stem}_{head}' if head else stem
    files[f'{head or "all"}/per_class'] = f'{base}_per_class.csv'
    files[f'{head or "all"}/confusion'] = f'{base}_confusion.csv'
    files[f'{head or "all"}/confusion_png'] = f'{base}_confusion.png'
    write_per_class_csv(f'{base}_per_class.csv', names[head], multi[head], single[head])
    write_confusion_csv(f'{base}_confusion.csv', names[head], multi[head])
    confusion_image(multi[head]).save(f'{base}_confusion.png')
  summary = dict(summary, files=files)
  reporting.write_json(output, summary)
  return files


def format_table(summary: Dict[str, Any]) -> str:
  """Metric | single view | multi view, for the console."""
  by_name: Dict[str, Dict[str, Any]] = {}
  for key, value in summary['metrics'].items():
    prefix, _, name = key.partition('/')
    by_name.setdefault(name, {})[prefix] = value
  cell = lambda v: '' if v is None else (f'{v:.4f}' if isinstance(v, float) else str(v))
  rows = [('metric', 'single view', f"multi view {summary['views']} ({summary['aggregation']})")]
  rows += [(name, cell(v.get('single_view')), cell(v.get('multi_view'))) for name, v in sorted(by_name.items())]
  widths = [max(len(r[i]) for r in rows) for i in range(3)]
  lines = [f"{summary['checkpoint']} on '{summary['split']}'"]
  lines += ['  '.join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(r, widths)))
            for r in rows]
  return '\n'.join(lines)


# --- Command line ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='evaluate.py', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--config', default=None, help='config file[:preset]; default: the checkpoint\'s own')
  parser.add_argument('--checkpoint', required=True, help='any checkpoint load_params reads')
  parser.add_argument('--split', default='test', help='split to evaluate (default: test)')
  parser.add_argument('--views', default=None, help='CLIPSxCROPS, e.g. 4x3 or 4x1 (default: the config\'s)')
  parser.add_argument('--aggregation', default='logits', choices=evaluate.AGGREGATIONS,
                      help='average logits (the paper) or softmax probabilities over views')
  parser.add_argument('--output', default=None, help='results JSON (default: eval_<split>.json)')
  parser.add_argument('--batch_size', type=int, default=None, help='videos per global batch')
  return parser


def main(argv: Sequence[str]) -> int:
  """Runs the evaluation for command-line `argv` (without the program name); returns the exit status."""
  from vivit_jax.main import split_config_overrides  # pylint: disable=g-import-not-at-top
  rest, overrides = split_config_overrides(list(argv))
  args = _parser().parse_args(rest)
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
  reporting.quiet_library_logs()
  from vivit_jax.checkpoints import CheckpointError, load_metadata  # pylint: disable=g-import-not-at-top
  try:
    metadata = load_metadata(args.checkpoint)
    config = load_eval_config(args.config, metadata, overrides, args.views)
    summary, passes = evaluate_checkpoint(config, args.checkpoint, args.split, args.aggregation, args.batch_size)
  except (ConfigError, CheckpointError, pipeline_lib.DataError, sharding_lib.MeshError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  summary['config'] = args.config or f'{args.checkpoint} (saved config)'
  if jax.process_index() == 0:
    output = args.output or f'eval_{args.split}.json'
    write_outputs(summary, passes, metrics.heads_of(config), output, label_names(metadata, config))
    print(format_table(summary))
    print(f'Results in {output}')
  return 0
