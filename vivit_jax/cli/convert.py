"""`vivit-convert` (scripts/convert_checkpoint.py): checkpoints between vivit_jax, Scenic and Hugging Face."""

import os
from typing import Optional, Sequence

from vivit_jax.checkpoints import convert
from vivit_jax.cli import common

USAGE = """Converts a checkpoint between vivit_jax (Orbax), Scenic (Flax msgpack) and Hugging Face (safetensors),
and checks that both classify a random clip alike.

  vivit-convert --input=PATH --output=DIR --to={vivit_jax,scenic,huggingface} [--config=FILE]

The model config is --config when given, else the one saved with a vivit_jax checkpoint, else a Hugging Face
ViViT's config.json; Scenic checkpoints carry none and need --config. A Hugging Face target is ViViT Model 1
only (what transformers implements). The largest logit difference between the source and the converted model is
printed (a Hugging Face side runs in transformers when torch and transformers are installed).
Exit status 2 when the checkpoint or config cannot be used.
"""


def _parser():
  parser = common.parser('vivit-convert', USAGE)
  parser.add_argument('--input', required=True, help='checkpoint: vivit_jax workdir/step, Scenic file or '
                      'directory, or Hugging Face directory')
  parser.add_argument('--output', required=True, help='output directory')
  parser.add_argument('--to', required=True, choices=convert.TARGETS, help='output format')
  parser.add_argument('--config', default=None, help='model config file[:preset] (needed for Scenic inputs)')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, _ = common.parse(_parser(), argv, overrides=False)
  common.quiet_library_logs()
  try:
    created = not os.path.exists(os.path.expanduser(args.output))
    common.check_output(args.output, directory=True)  # A bad --output is reported first.
    try:
      source = convert.prepare(args.input, args.to, args.config)  # A source the target cannot hold: refused here.
    except BaseException:
      output = os.path.expanduser(args.output)
      if created and os.path.isdir(output) and not os.listdir(output):
        os.rmdir(output)  # Leave nothing behind: check_output created it empty.
      raise
    report = convert.write_and_compare(source, args.output, args.to)
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  print(f'wrote {args.to} checkpoint to {args.output}')
  print(f"max |logit difference| (source: {report['source_side']}, converted: {report['converted_side']}, "
        f"{report['num_classes']} classes, random clip): {report['max_abs_logit_diff']:.3g}")
  return 0
