#!/usr/bin/env python
"""Classifies video files with a checkpoint; see vivit_jax/inference.py for how clips are sampled.

  python scripts/predict.py --checkpoint=runs/k400 [--top_k=5] [--output=preds.json] VIDEO|DIR ...
  python scripts/predict.py --checkpoint=scenic/checkpoint --config=configs/kinetics400/vivit_base_k400.py \
      --label_map=k400/label_map.json [--window=4] [--fps=10] [--config.KEY=VALUE ...] VIDEO|DIR ...

Directories are searched recursively for .mp4, .webm, .avi, .mkv and .mov files. A file that cannot be decoded
is reported with its reason and the others go on. --output writes JSON: {file: {'top_k': [{'label',
'probability'}, ...]}}, {file: {'windows': [{'start_s', 'end_s', 'top_k'}, ...]}} with --window, or
{file: {'error': reason}}.

Exit status: 0 when at least one file was classified; 1 when none was (all unreadable, or no video found);
2 when the checkpoint, config or label map cannot be used.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('inputs', nargs='+', metavar='VIDEO|DIR', help='video files and directories of them')
  parser.add_argument('--checkpoint', required=True, help='our workdir or step, or a Scenic/ViT/HF checkpoint')
  parser.add_argument('--config', default=None, help='model config file; needed when the checkpoint has none')
  parser.add_argument('--label_map', default=None, help="JSON {'names': [...]}; default: the checkpoint's")
  parser.add_argument('--top_k', type=int, default=5, help='labels printed per video')
  parser.add_argument('--window', type=float, default=None, help='seconds: one prediction per window')
  parser.add_argument('--fps', type=float, default=10.0, help='decoding frame rate: the rate the training '
                      'videos were prepared at (prepare_data --fps, default 10)')
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


def main(argv=None) -> int:
  from vivit_jax import inference  # pylint: disable=g-import-not-at-top
  from vivit_jax.main import split_config_overrides  # pylint: disable=g-import-not-at-top
  rest, overrides = split_config_overrides(sys.argv[1:] if argv is None else list(argv))
  args = _parser().parse_args(rest)
  from vivit_jax.checkpoints import CheckpointError  # pylint: disable=g-import-not-at-top
  from vivit_jax.config import ConfigError  # pylint: disable=g-import-not-at-top
  try:
    predictor = inference.load_for_inference(args.checkpoint, args.config, overrides, args.label_map,
                                             args.batch_size)
  except (inference.InferenceError, ConfigError, CheckpointError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  paths = inference.expand_inputs(args.inputs)
  results, start = {}, time.perf_counter()
  for i, path in enumerate(paths, 1):
    results[path] = inference.predict_file(predictor, path, args.top_k, args.window, args.fps)
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


if __name__ == '__main__':
  sys.exit(main())
