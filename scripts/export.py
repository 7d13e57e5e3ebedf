#!/usr/bin/env python
"""Exports a checkpoint as a TF SavedModel and checks it against the JAX model; see vivit_jax/export.py.

  python scripts/export.py --checkpoint=runs/k400 --output=export/k400 --format=saved_model \
      [--config=FILE] [--label_map=FILE] [--batch_size=N | polymorphic] [--platforms=cpu,cuda] \
      [--config.KEY=VALUE ...]

The SavedModel's `serving_default` takes uint8 clips [B, T, crop, crop, 3] (already sampled and cropped) and
returns softmax probabilities [B, C]. After writing it, the script reloads it with tf.saved_model.load, runs it
and the JAX model on a random clip batch and prints the max absolute difference; above 1e-4 it fails.

Exit status: 0 on success; 1 when the export fails or disagrees with the JAX model; 2 when the checkpoint,
config or label map cannot be used.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))


def _batch_size(text: str):
  return None if text == 'polymorphic' else int(text)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--checkpoint', required=True, help='our workdir or step, or a Scenic/ViT/HF checkpoint')
  parser.add_argument('--config', default=None, help='model config file; needed when the checkpoint has none')
  parser.add_argument('--label_map', default=None, help="JSON {'names': [...]}; default: the checkpoint's")
  parser.add_argument('--output', required=True, help='directory for the SavedModel')
  parser.add_argument('--format', default='saved_model', choices=['saved_model'], help='export format')
  parser.add_argument('--batch_size', type=_batch_size, default=None,
                      help="a fixed batch size, or 'polymorphic' (default)")
  parser.add_argument('--platforms', default='cpu,cuda', help='jax2tf lowering platforms, comma-separated')
  return parser


def main(argv=None) -> int:
  from vivit_jax import export, inference  # pylint: disable=g-import-not-at-top
  from vivit_jax.checkpoints import CheckpointError  # pylint: disable=g-import-not-at-top
  from vivit_jax.config import ConfigError  # pylint: disable=g-import-not-at-top
  from vivit_jax.main import split_config_overrides  # pylint: disable=g-import-not-at-top
  rest, overrides = split_config_overrides(sys.argv[1:] if argv is None else list(argv))
  args = _parser().parse_args(rest)
  try:
    predictor = inference.load_for_inference(args.checkpoint, args.config, overrides, args.label_map)
  except (inference.InferenceError, ConfigError, CheckpointError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  try:
    export.export_saved_model(predictor, args.output, args.batch_size, args.platforms.split(','))
    difference = export.verify_saved_model(args.output, predictor, batch_size=args.batch_size or 2)
  except export.ExportError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'Wrote {args.output}: clips uint8 [{args.batch_size or "B"}, {", ".join(map(str, predictor.clip_shape))}]'
        f' -> probabilities [{args.batch_size or "B"}, {len(predictor.label_names)}]')
  print(f'max |SavedModel - JAX| = {difference:.3g} (tolerance {export.TOLERANCE:g})')
  return 0


if __name__ == '__main__':
  sys.exit(main())
