"""`vivit-prepare-data` (scripts/prepare_data.py): DMVR TFRecords or a TFDS dataset from downloaded videos."""

import json
import os
from typing import Optional, Sequence

from vivit_jax.cli import common
from vivit_jax.data.ingest import annotations, prepare

USAGE = """Builds DMVR TFRecords (what Scenic's video_tfrecord_dataset reads) or a TFDS dataset from videos you
downloaded. Nothing is downloaded.

  vivit-prepare-data --layout=kinetics --input=~/k400 --output=~/k400_dmvr --format=dmvr \\
      [--fps=10] [--short_side=256] [--splits=train,validation] [--workers=8] [--examples_per_shard=100]

Layouts: kinetics (the official CSVs and {youtube_id}_{start:06d}_{end:06d}.mp4 files anywhere below), ssv2
(labels.json, train.json, validation.json, test.json, {id}.webm), folder ({split}/{class}/* or {split}.csv with
path,label). --format=dmvr writes {split}-0000i-of-0000N shards, label_map.json and report.json (every skipped
video with its reason); --format=tfds prepares vivit_jax's TFDS builders with --output as the data dir. Frames
are stored as JPEG at --fps with the short side --short_side. An interrupted run continues where it stopped.
"""


def _parser():
  parser = common.parser('vivit-prepare-data', USAGE)
  parser.add_argument('--layout', required=True, choices=sorted(annotations.LAYOUTS))
  parser.add_argument('--input', required=True, help='the downloaded dataset')
  parser.add_argument('--output', required=True, help='directory for the shards (dmvr) or the TFDS data_dir')
  parser.add_argument('--format', default='dmvr', choices=['dmvr', 'tfds'])
  parser.add_argument('--fps', type=float, default=10.0, help='frames per second kept; 0: native')
  parser.add_argument('--short_side', type=int, default=256, help='short frame side in pixels; 0: native')
  parser.add_argument('--splits', default=None, help='comma-separated, e.g. train,validation (default: all)')
  parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='decoding processes')
  shard_group = parser.add_mutually_exclusive_group()
  shard_group.add_argument('--shards', type=int, default=None, help='shards per split')
  shard_group.add_argument('--examples_per_shard', type=int, default=None,
                           help='videos per shard (default 100) when --shards is not given')
  parser.add_argument('--jpeg_quality', type=int, default=90)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, _ = common.parse(_parser(), argv, overrides=False)
  splits = [s.strip() for s in args.splits.split(',') if s.strip()] if args.splits else None
  log = lambda message: print(message, flush=True)
  result = prepare.prepare(args.layout, os.path.expanduser(args.input), os.path.expanduser(args.output),
                           args.format, args.fps, args.short_side, splits, args.workers, args.shards,
                           args.examples_per_shard, args.jpeg_quality, log=log)
  if args.format == 'tfds':  # The dmvr path has printed its own summary.
    log(json.dumps(result, indent=1, default=str))
  return 0
