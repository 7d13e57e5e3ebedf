"""`vivit-predict` (scripts/predict.py): top-k labels of video files from a checkpoint."""

import argparse
import contextlib
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from vivit_jax.cli import common
from vivit_jax.data.ingest import video_files, video_io
from vivit_jax.paths import PathError
from vivit_jax.serving import predict

USAGE = """Classifies video files with any checkpoint that load_params reads.

  vivit-predict --checkpoint=runs/k400 [--top_k=5] [--output=preds.jsonl] VIDEO|DIR ...
  vivit-predict --checkpoint=scenic/checkpoint --config=configs/kinetics400/vivit_base_k400.py \\
      --label_map=k400/label_map.json [--window=4] [--fps=10] [--config.KEY=VALUE ...] VIDEO|DIR ...

Videos are decoded at --fps (the rate the training videos were prepared at) and sampled as the checkpoint's
preprocessing spec says: num_test_clips temporal views x 1 or 3 crops, averaged as logits. Only the frames the
views need are kept, so a long video costs time, not memory. Directories are searched recursively for .mp4,
.webm, .avi, .mkv and .mov files. The flags and paths are checked before the checkpoint is loaded.

A file that cannot be predicted (missing, empty, not a video, undecodable) is reported on stderr as
`error: FILE: reason` and the others go on; a file that decodes to clearly fewer frames than its container
declares is predicted from the frames there are, with a `warning: FILE: ...` line.

--output writes JSON Lines (its directory is made if missing), one line per file as it finishes, flushed, so
that a run that dies keeps every file it finished:
  {"file": F, "top_k": [{"label", "probability"}, ...], "frames": N}
  {"file": F, "windows": [{"start_s", "end_s", "top_k"}, ...], "frames": N}     with --window
  {"file": F, "error": reason}                                                  a file that failed
plus "warning" for a partial file; N is the number of frames decoded at --fps. In Python,
vivit_jax.serving.predict.load_predictions(path) reads it (and the single-object JSON of earlier versions).

Exit status: 0 when every file was predicted; 1 when at least one failed (the others are still predicted and
written) or no video was found; 2 when a flag, path, checkpoint, config or label map cannot be used, or --output
cannot be written.
"""


def _parser() -> argparse.ArgumentParser:
  parser = common.parser('vivit-predict', USAGE)
  parser.add_argument('inputs', nargs='+', metavar='VIDEO|DIR', help='video files and directories of them')
  common.add_checkpoint_flags(parser)
  parser.add_argument('--top_k', type=common.positive_int, default=5, help='labels printed per video')
  parser.add_argument('--window', type=common.positive_float, default=None, help='seconds: one prediction per window')
  parser.add_argument('--fps', type=common.positive_float, default=predict.DEFAULT_FPS, help='decoding frame rate: '
                      'the rate the training videos were prepared at (prepare_data --fps, default 10; at most '
                      f'{video_io.MAX_FPS:g})')
  parser.add_argument('--batch_size', type=common.positive_int, default=None, help='views per forward pass')
  parser.add_argument('--output', default=None, help='write the predictions to this JSON Lines file')
  return parser


def _check_flags(args: argparse.Namespace) -> None:
  """Raises UsageError naming the first flag or path that cannot work (argparse has checked the numbers' signs)."""
  problem = predict.request_problem(args.top_k, args.window, args.fps)
  if problem:
    raise common.UsageError('--' + problem)
  missing = [path for path in args.inputs if not os.path.exists(path)]
  if missing:
    more = f' ({len(missing) - 1} more inputs do not exist either)' if len(missing) > 1 else ''
    raise common.UsageError(f'VIDEO|DIR {missing[0]} does not exist{more}')
  if args.output:
    common.check_output(args.output)


def _find_videos(inputs: Sequence[str]) -> List[str]:
  """The video files of the inputs, each once; a warning for each directory without one."""
  paths = []
  for path in inputs:
    found = predict.expand_inputs([path])
    if not found:
      print(f'warning: {path}: no {", ".join(video_files.VIDEO_EXTENSIONS)} file in this directory', file=sys.stderr)
    paths.extend(found)
  return predict.expand_inputs(paths)


def _print_result(path: str, result: Dict[str, Any]) -> None:
  if 'error' in result:
    print(f'error: {path}: {result["error"]}', file=sys.stderr)
    return
  if 'warning' in result:
    print(f'warning: {path}: {result["warning"]}', file=sys.stderr)
  print(path)
  for window in result.get('windows', [{'top_k': result.get('top_k')}]):
    indent = '  '
    if 'start_s' in window:
      print(f'  [{window["start_s"]:.1f}s - {window["end_s"]:.1f}s]')
      indent = '    '
    for entry in window['top_k']:
      print(f'{indent}{entry["probability"]:.4f}  {entry["label"]}')


class _OutputFailed(Exception):
  """--output could not be written."""


def _predict_all(predictor: predict.Predictor, paths: List[str], args: argparse.Namespace,
                 writer: Optional[predict.PredictionWriter]) -> int:
  """Predicts every file, writing each result as it arrives; returns the number of files that failed."""
  failed, start = 0, time.perf_counter()
  for i, path in enumerate(paths, 1):
    result = predict.predict_file(predictor, path, args.top_k, args.window, args.fps)
    failed += 'error' in result
    _print_result(path, result)
    if writer is not None:
      try:
        writer.write(path, result)
      except OSError as e:
        raise _OutputFailed(f'--output={writer.path}: cannot write the result of {path} ({e.strerror or e}); '
                            f'the {i - 1} files before it are in it') from e
    if len(paths) > 1:
      rate = i / max(time.perf_counter() - start, 1e-9)
      print(f'[{i}/{len(paths)}] {rate:.2f} files/s', file=sys.stderr)
  return failed


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, overrides = common.parse(_parser(), argv)
  common.quiet_library_logs()
  try:
    _check_flags(args)
  except (common.UsageError, PathError) as e:
    return common.fail(e)
  paths = _find_videos(args.inputs)
  if args.output and os.path.realpath(args.output) in {os.path.realpath(p) for p in paths}:
    return common.fail(common.UsageError(f'--output={args.output} is one of the input videos; writing it would '
                                         'destroy it'))
  if not paths:
    print(f'error: no video file ({", ".join(video_files.VIDEO_EXTENSIONS)}) in {", ".join(args.inputs)}',
          file=sys.stderr)
    return 1
  try:
    predictor = predict.load_for_inference(args.checkpoint, args.config, overrides, args.label_map,
                                           args.batch_size)
  except common.EXPECTED_ERRORS + (predict.InferenceError,) as e:
    return common.fail(e)
  try:
    writer = predict.PredictionWriter(args.output) if args.output else None
  except OSError as e:
    return common.fail(common.UsageError(f'--output={args.output}: cannot write ({e.strerror or e})'))
  try:
    with writer if writer is not None else contextlib.nullcontext():
      failed = _predict_all(predictor, paths, args, writer)
  except _OutputFailed as e:
    return common.fail(e)
  except OSError as e:  # Closing it: the data of the last lines could not be written.
    return common.fail(common.UsageError(f'--output={args.output}: cannot finish writing it ({e.strerror or e})'))
  print(f'{len(paths) - failed} of {len(paths)} files predicted, {failed} failed' +
        (f'; results in {args.output}' if args.output else ''), file=sys.stderr)
  return 1 if failed else 0
