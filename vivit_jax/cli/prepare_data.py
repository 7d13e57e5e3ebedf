"""`vivit-prepare-data` (scripts/prepare_data.py): DMVR TFRecords or a TFDS dataset from downloaded videos."""

import argparse
import json
import math
import os
from typing import Callable, List, Optional, Sequence

from vivit_jax.cli import common
from vivit_jax.data.ingest import annotations, prepare

USAGE = """Builds DMVR TFRecords (what Scenic's video_tfrecord_dataset reads) or a TFDS dataset from videos you
downloaded. Nothing is downloaded.

  vivit-prepare-data --layout=kinetics --input=~/k400 --output=~/k400_dmvr --format=dmvr \\
      [--fps=10] [--short_side=256] [--splits=train,validation] [--workers=8] [--examples_per_shard=100]

Layouts: kinetics (the official CSVs and {youtube_id}_{start:06d}_{end:06d}.mp4 files anywhere below), ssv2
(labels.json, train.json, validation.json, test.json, {id}.webm), folder ({split}/{class}/* or {split}.csv with
path,label). --format=dmvr writes {split}-0000i-of-0000N shards, label_map.json and report.json; --format=tfds
prepares vivit_jax's TFDS builders with --output as the data dir. Frames are stored upright (rotation metadata
applied) as JPEG at --fps with the short side --short_side. An interrupted run continues where it stopped.

report.json accounts for every video file found, once (symbolic links and repeated paths are written once), as
written, partial (fewer frames decoded than the container declares; stored, both counts listed) or skipped (with
the reason): found == written + partial + skipped. Two files of one name (x.mp4 and x.avi) are both kept in the
folder layout, with the extension in their ids; kinetics and ssv2 use one file per annotated id (by extension:
mp4, webm, mkv, avi, ...) and list the other as unused.
"""


def _number(parse: Callable[[str], float], low: float, high: float, expected: str) -> Callable:
  """An argparse type: `parse(text)` within [low, high], else an error saying what was expected and found."""

  def check(text: str):
    try:
      value = parse(text)
    except ValueError:
      value = None
    if value is None or not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
      raise argparse.ArgumentTypeError(f'expected {expected}; got {text!r}')  # argparse names the flag.
    return value

  return check


FPS = _number(float, 0, prepare.MAX_FPS,
              f'frames per second in (0, {prepare.MAX_FPS:g}], or 0 for the native rate')
SHORT_SIDE = _number(int, 0, prepare.MAX_SHORT_SIDE,
                     f'a whole number of pixels in [1, {prepare.MAX_SHORT_SIDE}], or 0 for the native size')
JPEG_QUALITY = _number(int, 1, 100, 'a whole number in [1, 100]')
WORKERS = _number(int, 1, prepare.MAX_WORKERS, f'a whole number in [1, {prepare.MAX_WORKERS}]')
SHARDS = _number(int, 1, prepare.MAX_SHARDS, f'a whole number in [1, {prepare.MAX_SHARDS}]')
EXAMPLES_PER_SHARD = _number(int, 1, 2**31 - 1, 'a whole number of at least 1')


def _splits(text: str) -> List[str]:
  """argparse type of --splits: comma-separated split names (train, validation or val, test)."""
  names = [name.strip() for name in text.split(',') if name.strip()]
  unknown = [name for name in names if annotations.normalize_split(name) is None]
  if not names or unknown:
    raise argparse.ArgumentTypeError(f'expected comma-separated splits among train, validation (or val), test; '
                                     f'got {text!r}')
  return names


def _parser() -> argparse.ArgumentParser:
  parser = common.parser('vivit-prepare-data', USAGE)
  parser.add_argument('--layout', required=True, choices=sorted(annotations.LAYOUTS))
  parser.add_argument('--input', required=True, help='the downloaded dataset')
  parser.add_argument('--output', required=True, help='directory for the shards (dmvr) or the TFDS data_dir')
  parser.add_argument('--format', default='dmvr', choices=['dmvr', 'tfds'])
  parser.add_argument('--fps', type=FPS, default=10.0, help='frames per second kept; 0: native')
  parser.add_argument('--short_side', type=SHORT_SIDE, default=256, help='short frame side in pixels; 0: native')
  parser.add_argument('--splits', type=_splits, default=None,
                      help='comma-separated, e.g. train,validation (default: all)')
  parser.add_argument('--workers', type=WORKERS, default=min(os.cpu_count() or 1, prepare.MAX_WORKERS),
                      help='decoding processes (threads for --format=tfds)')
  shard_group = parser.add_mutually_exclusive_group()
  shard_group.add_argument('--shards', type=SHARDS, default=None, help='shards per split (dmvr)')
  shard_group.add_argument('--examples_per_shard', type=EXAMPLES_PER_SHARD, default=None,
                           help='videos per shard (default 100) when --shards is not given (dmvr)')
  parser.add_argument('--jpeg_quality', type=JPEG_QUALITY, default=None, help='1..100 (dmvr; default 90)')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, _ = common.parse(_parser(), argv, overrides=False)
  log = lambda message: print(message, flush=True)
  if args.format == 'tfds':
    ignored = [f'--{flag}' for flag in ('shards', 'examples_per_shard', 'jpeg_quality')
               if getattr(args, flag) is not None]
    if ignored:
      log(f"warning: {', '.join(ignored)} apply to --format=dmvr only; the TFDS builders ignore them")
  try:
    result = prepare.prepare(args.layout, os.path.expanduser(args.input), os.path.expanduser(args.output),
                             args.format, args.fps, args.short_side, args.splits, args.workers, args.shards,
                             args.examples_per_shard, args.jpeg_quality or 90, log=log)
  except common.EXPECTED_ERRORS + (OSError, ValueError) as e:  # The download, the output or a setting is wrong.
    return common.fail(e)
  if args.format == 'tfds':  # The dmvr path has printed its own summary.
    log(json.dumps(result, indent=1, default=str))
  return 0
