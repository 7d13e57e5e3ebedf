"""`vivit-predict` (scripts/predict.py): top-k labels of video files from a checkpoint."""

import json
import sys
import time
from typing import Optional, Sequence

from vivit_jax.cli import common
from vivit_jax.serving import predict

USAGE = """Classifies video files with any checkpoint that load_params reads.

  vivit-predict --checkpoint=runs/k400 [--top_k=5] [--output=preds.json] VIDEO|DIR ...
  vivit-predict --checkpoint=scenic/checkpoint --config=configs/kinetics400/vivit_base_k400.py \\
      --label_map=k400/label_map.json [--window=4] [--fps=10] [--config.KEY=VALUE ...] VIDEO|DIR ...

Videos are decoded at --fps (the rate the training videos were prepared at) and sampled as the checkpoint's
preprocessing spec says: num_test_clips temporal views x 1 or 3 crops, averaged as logits. Directories are
searched recursively for .mp4, .webm, .avi, .mkv and .mov files. A file that cannot be decoded is reported with
its reason and the others go on. --output writes JSON: {file: {'top_k': [{'label', 'probability'}, ...]}},
{file: {'windows': [{'start_s', 'end_s', 'top_k'}, ...]}} with --window, or {file: {'error': reason}}.

Exit status: 0 when at least one file was classified; 1 when none was (all unreadable, or no video found);
2 when the checkpoint, config or label map cannot be used.
"""


def _parser():
  parser = common.parser('vivit-predict', USAGE)
  parser.add_argument('inputs', nargs='+', metavar='VIDEO|DIR', help='video files and directories of them')
  parser.add_argument('--checkpoint', required=True, help='our workdir or step, or a Scenic/ViT/HF checkpoint')
  parser.add_argument('--config', default=None, help='model config file; needed when the checkpoint has none')
  parser.add_argument('--label_map', default=None, help="JSON {'names': [...]}; default: the checkpoint's")
  parser.add_argument('--top_k', type=int, default=5, help='labels printed per video')
  parser.add_argument('--window', type=float, default=None, help='seconds: one prediction per window')
  parser.add_argument('--fps', type=float, default=predict.DEFAULT_FPS, help='decoding frame rate: the rate the '
                      'training videos were prepared at (prepare_data --fps, default 10)')
  parser.add_argument('--batch_size', type=int, default=None, help='views per forward pass')
  parser.add_argument('--output', default=None, help='write all predictions to this JSON file')
  return parser


def _print_result(path: str, result: dict) -> None:
  if 'error' in result:
    print(f'{path}: ERROR {result["error"]}')
    return
  print(path)
  for window in result.get('windows', [{'top_k': result.get('top_k')}]):
    indent = '  '
    if 'start_s' in window:
      print(f'  [{window["start_s"]:.1f}s - {window["end_s"]:.1f}s]')
      indent = '    '
    for entry in window['top_k']:
      print(f'{indent}{entry["probability"]:.4f}  {entry["label"]}')


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, overrides = common.parse(_parser(), argv)
  common.quiet_library_logs()
  try:
    predictor = predict.load_for_inference(args.checkpoint, args.config, overrides, args.label_map,
                                           args.batch_size)
  except common.EXPECTED_ERRORS + (predict.InferenceError,) as e:
    return common.fail(e)
  paths = predict.expand_inputs(args.inputs)
  results, start = {}, time.perf_counter()
  for i, path in enumerate(paths, 1):
    results[path] = predict.predict_file(predictor, path, args.top_k, args.window, args.fps)
    _print_result(path, results[path])
    if len(paths) > 1:
      rate = i / max(time.perf_counter() - start, 1e-9)
      print(f'[{i}/{len(paths)}] {rate:.2f} files/s', file=sys.stderr)
  if args.output:
    with open(args.output, 'w') as f:
      json.dump(results, f, indent=2)
  failed = sum('error' in r for r in results.values())
  print(f'{len(paths) - failed} of {len(paths)} files classified, {failed} unreadable', file=sys.stderr)
  return 0 if len(paths) > failed else 1
