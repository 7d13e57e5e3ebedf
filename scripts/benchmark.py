#!/usr/bin/env python
"""Benchmarks that print numbers.

  python scripts/benchmark.py --data [--json]   # train clips/s: tf.data over JPEG TFRecords vs a PyAV loop
  python scripts/benchmark.py --model --config=configs/kinetics400/vivit_base_k400.py [--batch_size=8]
      [--steps=10] [--no_hf] [--compile_hf] [--json] [--config.KEY=VALUE ...]
                                                # forward and train step: vivit_jax vs transformers' ViViT

`--model` computes in bfloat16 unless `--config.model_dtype_str=float32`; see vivit_jax/model_benchmark.py for
what is timed and what is turned off on both sides. Hugging Face implements Model 1 only: for other variants,
or without torch and transformers installed, only our row is printed.
"""

import argparse
import importlib.util
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))


def _print(result, as_json: bool, text: str) -> None:
  print(json.dumps(result, indent=2) if as_json else text)


def main(argv=None) -> int:
  from vivit_jax.main import split_config_overrides  # pylint: disable=g-import-not-at-top
  rest, overrides = split_config_overrides(list(sys.argv[1:] if argv is None else argv))
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--data', action='store_true', help='the input pipeline benchmark')
  parser.add_argument('--model', action='store_true', help='the model and train step benchmark')
  parser.add_argument('--work_dir', default=None, help='--data: where to make the videos and records (default: '
                      'a temporary directory)')
  parser.add_argument('--config', help='--model: config file[:arg]')
  parser.add_argument('--batch_size', type=int, default=None, help='--model: clips per step (default: config)')
  parser.add_argument('--steps', type=int, default=10, help='--model: timed calls (median reported)')
  parser.add_argument('--no_hf', action='store_true', help='--model: skip transformers')
  parser.add_argument('--compile_hf', action='store_true', help='--model: torch.compile the transformers model')
  parser.add_argument('--json', action='store_true', help='print JSON')
  args = parser.parse_args(rest)
  if args.data == args.model:
    parser.error('choose one benchmark: --data or --model')
  if args.data:
    from vivit_jax import benchmarks  # pylint: disable=g-import-not-at-top
    with tempfile.TemporaryDirectory() as tmp:
      result = benchmarks.data_benchmark(args.work_dir or tmp)
    width = max(len(k) for k in result)
    _print(result, args.json, '\n'.join(f'{k:<{width}}  {v}' for k, v in result.items()))
    return 0
  if not args.config:
    parser.error('--model needs --config')
  from vivit_jax import model_benchmark  # pylint: disable=g-import-not-at-top
  from vivit_jax.config import load_config  # pylint: disable=g-import-not-at-top
  config = load_config(args.config, ['model_dtype_str=bfloat16'] + overrides)
  huggingface = not args.no_hf and _has_transformers() and _hf_can_build(config)
  result = model_benchmark.model_benchmark(config, args.batch_size, args.steps, huggingface=huggingface,
                                           compile_hf=args.compile_hf)
  _print(result, args.json, model_benchmark.format_model_benchmark(result))
  return 0


def _has_transformers() -> bool:
  if all(importlib.util.find_spec(name) for name in ('torch', 'transformers')):
    return True
  print('torch or transformers is not installed: timing vivit_jax only', file=sys.stderr)
  return False


def _hf_can_build(config) -> bool:
  from vivit_jax.checkpoints.formats.huggingface_config import hf_config_from  # pylint: disable=g-import-not-at-top
  try:
    hf_config_from(config)
  except ValueError as e:
    print(f'transformers has no equivalent of this model ({e}): timing vivit_jax only', file=sys.stderr)
    return False
  return True


if __name__ == '__main__':
  sys.exit(main())
