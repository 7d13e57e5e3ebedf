#!/usr/bin/env python
"""Prepares downloaded videos as DMVR TFRecords or a TFDS dataset; see vivit_jax/data/prepare.py.

  python scripts/prepare_data.py --layout={kinetics,ssv2,folder} --input=DIR --output=DIR --format={dmvr,tfds} \
      [--fps=10] [--short_side=256] [--splits=train,validation] [--workers=N] \
      [--shards=N | --examples_per_shard=N] [--jpeg_quality=90]
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vivit_jax.data import prepare  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  sys.exit(prepare.main())
