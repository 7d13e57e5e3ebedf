#!/usr/bin/env python
"""Benchmarks that print numbers.

  python scripts/benchmark.py --data [--json]   # train clips/s: tf.data over JPEG TFRecords vs a PyAV loop
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vivit_jax import benchmarks  # pylint: disable=g-import-not-at-top


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--data', action='store_true', help='the input pipeline benchmark')
  parser.add_argument('--work_dir', default=None, help='where to make the videos and records (default: a '
                      'temporary directory)')
  parser.add_argument('--json', action='store_true', help='print JSON')
  args = parser.parse_args(argv)
  if not args.data:
    parser.error('choose a benchmark: --data')
  with tempfile.TemporaryDirectory() as tmp:
    result = benchmarks.data_benchmark(args.work_dir or tmp)
  if args.json:
    print(json.dumps(result, indent=2))
  else:
    width = max(len(k) for k in result)
    print('\n'.join(f'{k:<{width}}  {v}' for k, v in result.items()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
