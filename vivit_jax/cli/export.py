"""`vivit-export` (scripts/export.py): a checkpoint as a TensorFlow SavedModel, checked against the JAX model."""

import argparse
from typing import Optional, Sequence

from vivit_jax.cli import common
from vivit_jax.serving import export, predict

USAGE = """Exports any checkpoint that load_params reads as a TF SavedModel and checks it against the JAX model.

  vivit-export --checkpoint=runs/k400 --output=export/k400 --format=saved_model [--config=FILE]
      [--label_map=FILE] [--batch_size=N | polymorphic] [--platforms=cpu,cuda] [--config.KEY=VALUE ...]

The SavedModel's serving_default takes uint8 clips [B, T, crop, crop, 3] (already sampled and cropped) and
returns probabilities [B, C]. After writing it, the command reloads it with tf.saved_model.load, runs it and the
JAX model on a random clip batch and prints the max absolute difference; above 1e-4 it fails.

Exit status: 0 on success; 1 when the export fails or disagrees with the JAX model; 2 when the checkpoint,
config or label map cannot be used.
"""


def _batch_size(text: str):
  """argparse type: 'polymorphic' (None) or a positive integer."""
  return None if text == 'polymorphic' else common.positive_int(text)


def _platforms(text: str):
  """argparse type: a comma-separated subset of the platforms jax2tf lowers for."""
  platforms = [p.strip() for p in text.split(',') if p.strip()]
  unknown = [p for p in platforms if p not in export.PLATFORMS]
  if unknown or not platforms:
    raise argparse.ArgumentTypeError(f'{text!r}: expected a comma-separated subset of {", ".join(export.PLATFORMS)}'
                                     + (f'; unknown: {", ".join(unknown)}' if unknown else ''))
  return platforms


def _parser():
  parser = common.parser('vivit-export', USAGE)
  parser.add_argument('--checkpoint', required=True, help='our workdir or step, or a Scenic/ViT/HF checkpoint')
  parser.add_argument('--config', default=None, help='model config file; needed when the checkpoint has none')
  parser.add_argument('--label_map', default=None, help="JSON {'names': [...]}; default: the checkpoint's")
  parser.add_argument('--output', required=True, help='directory for the SavedModel')
  parser.add_argument('--format', default='saved_model', choices=['saved_model'], help='export format')
  parser.add_argument('--batch_size', type=_batch_size, default=None,
                      help="a fixed batch size, or 'polymorphic' (default)")
  parser.add_argument('--platforms', type=_platforms, default=list(export.DEFAULT_PLATFORMS),
                      help=f'jax2tf lowering platforms, comma-separated: {",".join(export.PLATFORMS)}')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, overrides = common.parse(_parser(), argv)
  common.quiet_library_logs()
  try:
    common.check_output(args.output, directory=True)
    predictor = predict.load_for_inference(args.checkpoint, args.config, overrides, args.label_map)
  except common.EXPECTED_ERRORS + (predict.InferenceError,) as e:
    return common.fail(e)
  try:
    export.export_saved_model(predictor, args.output, args.batch_size, args.platforms)
    difference = export.verify_saved_model(args.output, predictor, batch_size=args.batch_size or 2)
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  except export.ExportError as e:
    return common.fail(e, status=1)
  batch = args.batch_size or 'B'
  print(f'Wrote {args.output}: clips uint8 [{batch}, {", ".join(map(str, predictor.clip_shape))}] -> '
        f'probabilities [{batch}, {len(predictor.label_names)}]')
  print(f'max |SavedModel - JAX| = {difference:.3g} (tolerance {export.TOLERANCE:g})')
  return 0
