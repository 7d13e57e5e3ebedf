"""`vivit-features` (scripts/extract_features.py): one embedding per video, from video files or a dataset split."""

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import jax

from vivit_jax.cli import common
from vivit_jax.cli.evaluate import parse_views
from vivit_jax.data.ingest import video_files
from vivit_jax.serving import features, predict

USAGE = """Writes one embedding per video to a .npz: the model's pre-logits averaged over its views, from any
checkpoint that load_params reads, for video files or a split of the checkpoint's data.

  vivit-features --checkpoint=runs/demo --output=features.npz VIDEO|DIR ...
  vivit-features --checkpoint=runs/demo --split=validation --output=features_validation.npz
  vivit-features --checkpoint=scenic/checkpoint --config=configs/kinetics400/vivit_base_k400.py \\
      --label_map=k400/label_map.json [--views=4x3] [--fps=10] [--batch_size=N] [--config.KEY=VALUE ...] \\
      --output=features.npz VIDEO|DIR ...

The feature is what the classifier reads (the pooled tokens, through the tanh pre_logits layer when the model
has a representation_size), before output_projection; D is representation_size, else hidden_size. It is averaged
over the views that vivit-predict and the multi-view evaluation sample: --views=CLIPSxCROPS, default the config's
num_test_clips x 1 or 3 crops. Files are decoded at --fps (the rate the training videos were prepared at) keeping
only the frames the views need; directories are searched recursively for .mp4, .webm, .avi, .mkv and .mov files.
A file that cannot be read is reported (`error: FILE: reason`) and the others go on. --split reads the split of
the config's data (synthetic, DMVR or TFDS) through the evaluation pipeline, --batch_size videos per batch
(default dataset_configs.test_batch_size). Flags and paths are checked before the checkpoint is loaded.

The .npz loads with numpy.load(path, allow_pickle=False) (or vivit_jax.serving.features.load_features):
  features        float32 [N, D]
  ids             str [N]: the file paths; with --split, 'SPLIT/n', n the video's position in the split
  labels          int32 [N], -1 where not known ([N, heads] for multi-head models, [N, C] multi-hot for
                  multi-label ones): with --split, the data's labels; for a file, its folder's name when that is
                  one of the class names (DIR/CLASS/video.mp4, as prepare_data reads folders), else -1
  label_names     str [C] (--label_map, else the checkpoint's names, else class_<i>); head_names str [heads]
  failed_ids, failed_reasons   str [K]: the files without features, and why
  checkpoint, config, source ('files' or 'split:NAME'), fps (files) or split and dataset_name (--split),
  views ('4x3'), num_views, task, feature ('pre_logits' with a representation_size, else 'pooled'),
  format_version, config_json (the full config): strings and numbers (0-d arrays)
It is written to a temporary file beside --output, then renamed. When two or more videos have a label, the
leave-one-out nearest-neighbour retrieval (cosine) top-1 label agreement is printed beside chance.

Exit status: 0 when every video has its features; 1 when a file failed (the others are written) or no video was
found; 2 when a flag, path, checkpoint, config or the data cannot be used, or --output cannot be written.
"""


def _parser() -> argparse.ArgumentParser:
  parser = common.parser('vivit-features', USAGE)
  parser.add_argument('inputs', nargs='*', metavar='VIDEO|DIR', help='video files and directories of them')
  common.add_checkpoint_flags(parser)
  parser.add_argument('--output', required=True, help='the .npz to write')
  parser.add_argument('--split', default=None, help="a split of the config's data instead of files (validation)")
  parser.add_argument('--views', default=None, help="CLIPSxCROPS, e.g. 4x3 (default: the config's)")
  parser.add_argument('--fps', type=common.positive_float, default=None,
                      help=f'decoding frame rate of files (default {predict.DEFAULT_FPS:g}, prepare_data\'s)')
  parser.add_argument('--batch_size', type=common.positive_int, default=None,
                      help='files: views per forward pass; --split: videos per global batch')
  return parser


def _check_flags(args: argparse.Namespace, overrides: List[str]) -> None:
  """Raises UsageError, ConfigError or PathError naming the first flag or path that cannot work."""
  if bool(args.inputs) == bool(args.split):
    raise common.UsageError('give either VIDEO|DIR arguments or --split=NAME (not both)' if args.inputs else
                            'nothing to read: give VIDEO|DIR arguments or --split=NAME (e.g. --split=validation)')
  if args.split and args.fps is not None:
    raise common.UsageError(f'--fps={args.fps:g} applies to video files; a --split is read as its data was prepared')
  problem = predict.request_problem(1, None, predict.DEFAULT_FPS if args.fps is None else args.fps)
  if problem:
    raise common.UsageError('--' + problem)
  if args.views:
    overrides.extend(features.view_overrides(parse_views(args.views)))
  if not args.output.endswith('.npz'):
    raise common.UsageError(f'--output={args.output}: expected a file name ending in .npz')
  missing = [path for path in args.inputs if not os.path.exists(path)]
  if missing:
    more = f' ({len(missing) - 1} more inputs do not exist either)' if len(missing) > 1 else ''
    raise common.UsageError(f'VIDEO|DIR {missing[0]} does not exist{more}')
  common.check_output(args.output)


def _find_videos(inputs: Sequence[str]) -> List[str]:
  """The video files of the inputs, each once; a warning for each directory without one."""
  for path in inputs:
    if not predict.expand_inputs([path]):
      print(f'warning: {path}: no {", ".join(video_files.VIDEO_EXTENSIONS)} file in this directory', file=sys.stderr)
  return predict.expand_inputs(inputs)


def _file_reporter(count: int):
  """Prints each file's error or warning, and '[i/N] files, R files/s' progress, on stderr."""
  start = time.perf_counter()

  def report(i: int, path: str, result: Dict[str, Any]) -> None:
    if 'error' in result:
      print(f'error: {path}: {result["error"]}', file=sys.stderr)
    elif 'warning' in result:
      print(f'warning: {path}: {result["warning"]}', file=sys.stderr)
    print(f'[{i}/{count}] files, {i / max(time.perf_counter() - start, 1e-9):.2f} files/s', file=sys.stderr,
          flush=True)
  return report


def _summary(table: features.FeatureTable, output: str) -> None:
  """What was written, and the retrieval agreement when there are labels to agree on."""
  print(f'{len(table.ids)} videos, {table.features.shape[1]} features each ({table.meta["views"]} views), '
        f'from {table.meta["source"]}; written to {output}')
  labels = table.labels
  if labels.ndim == 1 and (labels >= 0).sum() >= 2:
    r = features.retrieval_accuracy(table.features, labels)
    print(f'nearest-neighbour retrieval (cosine, leave-one-out) over {r["videos"]} labelled videos: top-1 label '
          f'agreement {r["top1"]:.3f} (chance {r["chance"]:.3f})')


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, overrides = common.parse(_parser(), argv)
  try:
    _check_flags(args, overrides)
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  paths = _find_videos(args.inputs) if args.inputs else []
  if args.inputs and os.path.realpath(args.output) in {os.path.realpath(p) for p in paths}:
    return common.fail(common.UsageError(f'--output={args.output} is one of the input videos; writing it would '
                                         'destroy it'))
  if args.inputs and not paths:
    print(f'error: no video file ({", ".join(video_files.VIDEO_EXTENSIONS)}) in {", ".join(args.inputs)}',
          file=sys.stderr)
    return 1
  try:
    restored = features.load(args.checkpoint, args.config, overrides, args.label_map, for_files=bool(paths))
    if paths:
      fps = predict.DEFAULT_FPS if args.fps is None else args.fps
      table = features.extract_files(restored, paths, fps, args.batch_size, on_file=_file_reporter(len(paths)))
    else:
      table = features.extract_split(restored, args.split, args.batch_size, features.progress_printer(sys.stderr))
    table.meta['config'] = args.config or f'{args.checkpoint} (saved config)'
    if not table.ids:
      print(f'error: no features: all {len(paths)} files failed; nothing written', file=sys.stderr)
      return 1
    if jax.process_index() == 0:
      features.write_features(args.output, table)
  except common.EXPECTED_ERRORS + (predict.InferenceError,) as e:
    return common.fail(e)
  if jax.process_index() == 0:
    _summary(table, args.output)
    if table.failed:
      print(f'{len(table.failed)} of {len(paths)} files failed (listed in failed_ids)', file=sys.stderr)
  return 1 if table.failed else 0
