"""`vivit-export` (scripts/export.py): a checkpoint as a TensorFlow SavedModel or an ONNX model, checked against
the JAX model."""

import argparse
from typing import Optional, Sequence

from vivit_jax import paths
from vivit_jax.cli import common, quiet
from vivit_jax.serving import export, export_onnx, predict

USAGE = """Exports any checkpoint that load_params reads as a TF SavedModel or an ONNX model and checks it against
the JAX model.

  vivit-export --checkpoint=runs/k400 --output=export/k400 [--format=saved_model] [--platforms=cpu,cuda]
  vivit-export --checkpoint=runs/k400 --output=export/k400.onnx --format=onnx
      [--config=FILE] [--label_map=FILE] [--batch_size=N | polymorphic] [--config.KEY=VALUE ...]

Both take uint8 clips [B, T, crop, crop, 3] (already sampled and cropped) and return probabilities [B, C]; the
normalisation and the task's activation run inside the model. The label names and preprocessing are saved with
it: assets/vivit_export.json in the SavedModel, the metadata property 'vivit_export' (JSON) in the ONNX model.
After writing a SavedModel, the command reloads it with tf.saved_model.load; an ONNX model (jax2onnx, opset
20) is run with ONNX Runtime on the CPU before it is written. Either is compared with the JAX model on random
clips and the max absolute difference of the probabilities printed; above 1e-4 the export fails (an ONNX model
is then not written). --format=onnx needs the onnx extra: pip install 'vivit_jax[onnx]'.

Exit status: 0 on success; 1 when the export fails or disagrees with the JAX model; 2 when a flag, the
checkpoint, config or label map cannot be used, or the onnx extra is not installed.
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
  common.add_checkpoint_flags(parser)
  parser.add_argument('--output', required=True,
                      help='the SavedModel directory (saved_model), or the .onnx file (onnx)')
  parser.add_argument('--format', default='saved_model', choices=['saved_model', 'onnx'],
                      help='export format (default saved_model)')
  parser.add_argument('--batch_size', type=_batch_size, default=None,
                      help="a fixed batch size, or 'polymorphic' (default; dynamic in ONNX)")
  parser.add_argument('--platforms', type=_platforms, default=None,
                      help=f'saved_model only: jax2tf lowering platforms, comma-separated: '
                           f'{",".join(export.PLATFORMS)} (default {",".join(export.DEFAULT_PLATFORMS)})')
  return parser


def _check_flags(args: argparse.Namespace) -> None:
  """Raises UsageError for flags that do not fit the format, or the ONNX extra missing, before any work."""
  if args.format == 'onnx':
    if args.platforms is not None:
      raise common.UsageError('--platforms applies to --format=saved_model only (jax2tf lowering platforms); an '
                              'ONNX model runs wherever ONNX Runtime does')
    if paths.is_remote(args.output):
      raise common.UsageError(f'--output {args.output}: --format=onnx writes a local file; expected a local path')
    export_onnx.require_onnx()
  common.check_output(args.output, directory=args.format == 'saved_model')


def _export(args: argparse.Namespace, predictor: predict.Predictor) -> float:
  """Writes and checks the export; returns the max |exported - JAX| probability difference."""
  if args.format == 'onnx':
    return export_onnx.write_onnx(predictor, args.output, args.batch_size, quiet=not quiet.verbose())
  platforms = args.platforms or list(export.DEFAULT_PLATFORMS)
  export.export_saved_model(predictor, args.output, args.batch_size, platforms)
  return export.verify_saved_model(args.output, predictor, batch_size=args.batch_size or 2)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, overrides = common.parse(_parser(), argv)
  common.quiet_library_logs()
  try:
    _check_flags(args)
    predictor = predict.load_for_inference(args.checkpoint, args.config, overrides, args.label_map)
  except common.EXPECTED_ERRORS + (predict.InferenceError, export_onnx.OnnxUnavailable) as e:
    return common.fail(e)
  try:
    difference = _export(args, predictor)
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  except export.ExportError as e:
    return common.fail(e, status=1)
  batch = args.batch_size or 'B'
  detail = f' (ONNX opset {export_onnx.OPSET})' if args.format == 'onnx' else ''
  print(f'Wrote {args.output}: clips uint8 [{batch}, {", ".join(map(str, predictor.clip_shape))}] -> '
        f'probabilities [{batch}, {len(predictor.label_names)}]{detail}')
  what = 'ONNX Runtime' if args.format == 'onnx' else 'SavedModel'
  print(f'max |{what} - JAX| = {difference:.3g} (tolerance {export.TOLERANCE:g})')
  return 0
