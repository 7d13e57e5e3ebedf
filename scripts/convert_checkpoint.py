#!/usr/bin/env python
"""Converts a checkpoint between vivit_jax, Scenic and Hugging Face formats and prints the logit difference.

  python scripts/convert_checkpoint.py --input=PATH --output=DIR --to={vivit_jax,scenic,huggingface} \\
      [--config=FILE]

See vivit_jax/convert.py for where the config comes from and how the conversion is checked.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vivit_jax import convert  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  sys.exit(convert.main())
