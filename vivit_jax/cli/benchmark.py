"""`vivit-benchmark` (scripts/benchmark.py): benchmarks that print numbers."""

import json
import sys
import tempfile
from typing import Optional, Sequence

import jax

from vivit_jax.cli import common
from vivit_jax.config import load_config
from vivit_jax.experiments.benchmarks import model as model_benchmark
from vivit_jax.experiments.benchmarks import side_by_side

USAGE = """Benchmarks that print numbers.

  vivit-benchmark --data [--json]   # train clips/s: tf.data over JPEG TFRecords vs a PyAV loop
  vivit-benchmark --model --config=configs/kinetics400/vivit_base_k400.py [--batch_size=8] [--steps=10]
      [--no_hf] [--compile_hf] [--train_only] [--profile_dir=DIR] [--json] [--config.KEY=VALUE ...]
                                    # forward and train step: vivit_jax vs transformers' ViViT
  vivit-benchmark --levers [--steps=5] [--budget_s=540] [--gpu_check_s=120] [--profile_dir=DIR] [--json]
                                    # on an accelerator: each speed lever's train clips/s, MFU and memory
  vivit-benchmark --model --cpu [--sizes=s_model1,s_model2,demo | --config=FILE] [--steps=5] [--no_hf] [--json]
                                    # on the CPU, interleaved: vivit_jax vs the flax reference and transformers

--model computes in bfloat16 unless --config.model_dtype_str=float32; regularisers only vivit_jax has are off on
both sides, and both sides hold the same weights (checked in float32). Hugging Face implements Model 1 only: for
other variants, or without torch and transformers installed, only vivit_jax's row is printed. --data makes its
videos and records on the spot (nothing is downloaded).

--levers runs ViViT-B/16x2 Models 1 and 2 at their defaults (forward pass and train step, beside transformers),
then with each lever (batch 32 and 16, Model 2 with XLA's attention instead of cuDNN's, remat, cuBLAS for
every matmul, XLA's latency-hiding scheduler, every token through the last block, one fused QKV matmul, cuDNN's
padding per layer), each in its own process sharing one compilation cache; then, where TensorFlow is installed,
trains Model 1 end to end with vivit_jax.main on JPEG DMVR records made on the spot (clips/s against the
model-only train step); then vivit-gpu-check (bfloat16 against float32, every variant) in the last
--gpu_check_s of --budget_s seconds for everything; then times the input pipeline on the same kind of records
against the fastest train step (needs TensorFlow).
--profile_dir traces each config's first train step, in DIR/<config file name>.

--model --cpu computes in float32 on the CPU and times, in turn within each round, vivit_jax, a reference
written from flax's own modules the way Scenic writes ViViT (same parameters, same train step) and, for Model 1,
transformers; it prints each ratio and the share of this machine's float32 matmul rate each reaches. Without
--config it runs the sizes the README quotes: s_model1 and s_model2 (width 384, 6 layers, 16x112x112, batch 4)
and demo (configs/synthetic.py).
"""


def _parser():
  parser = common.parser('vivit-benchmark', USAGE)
  parser.add_argument('--data', action='store_true', help='the input pipeline benchmark')
  parser.add_argument('--model', action='store_true', help='the model and train step benchmark')
  parser.add_argument('--levers', action='store_true', help='each speed lever, on an accelerator')
  parser.add_argument('--budget_s', type=common.positive_int, default=540, help='--levers: seconds for all rows')
  parser.add_argument('--gpu_check_s', type=common.non_negative_int, default=120,
                      help="--levers: the budget's last seconds, for vivit-gpu-check (0: none)")
  parser.add_argument('--train_only', action='store_true', help='--model: time the train step only')
  parser.add_argument('--work_dir', default=None, help='--data: where to make the videos and records (default: '
                      'a temporary directory)')
  parser.add_argument('--config', help='--model: config file[:arg]')
  parser.add_argument('--cpu', action='store_true', help='--model: on the CPU, beside the flax reference')
  parser.add_argument('--sizes', default=None, help='--model --cpu: comma-separated sizes (default: all of '
                      f"{','.join(side_by_side.SIZES)})")
  parser.add_argument('--batch_size', type=common.positive_int, default=None,
                      help='--model: clips per step (default: config)')
  parser.add_argument('--steps', type=common.positive_int, default=None, help='--model: timed calls (median '
                      'reported; default 10, 5 with --cpu)')
  parser.add_argument('--no_hf', action='store_true', help='--model: skip transformers')
  parser.add_argument('--compile_hf', action='store_true', help='--model: torch.compile the transformers model')
  parser.add_argument('--profile_dir', default=None, help='--model: trace two train steps with jax.profiler '
                      'into this directory (TensorBoard and Perfetto files) with the compiled HLO; --levers: '
                      "each config's first row, in a folder per config file")
  parser.add_argument('--json', action='store_true', help='print JSON')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = _parser()
  args, overrides = common.parse(parser, argv)
  if args.data + args.model + args.levers != 1:
    parser.error('choose one benchmark: --data, --model or --levers')
  if args.profile_dir and (args.data or args.cpu):
    parser.error('--profile_dir goes with --model (on an accelerator) or --levers')
  if (args.cpu or args.sizes) and not args.model:
    parser.error('--cpu and --sizes go with --model')
  if args.sizes and (args.config or not args.cpu):
    parser.error('--sizes goes with --model --cpu and without --config')
  if args.model and not (args.config or args.cpu):
    parser.error('--model needs --config (or --cpu, which has sizes of its own)')
  unknown = [n for n in (args.sizes or '').split(',') if n and n not in side_by_side.SIZES]
  if unknown:
    parser.error(f'--sizes: unknown {unknown}; expected names from {list(side_by_side.SIZES)}')
  try:
    if args.profile_dir:
      common.check_output(args.profile_dir, directory=True, what='--profile_dir')
    if args.data:
      _data(args)
    elif args.levers:
      from vivit_jax.experiments.benchmarks import levers  # pylint: disable=g-import-not-at-top
      rows = levers.run_levers(args.steps or 5, args.budget_s, log=(lambda *_: None) if args.json else print,
                               profile_dir=args.profile_dir, gpu_check_s=args.gpu_check_s)
      if args.json:
        print(json.dumps(rows, indent=2))
    elif args.cpu:
      _cpu(args, overrides)
    else:
      _model(args, overrides)
  except common.EXPECTED_ERRORS as e:
    return common.fail(e)
  return 0


def _data(args) -> None:
  if args.work_dir:
    common.check_output(args.work_dir, directory=True)
  with tempfile.TemporaryDirectory() as tmp:
    # Imported here: only --data needs TensorFlow, so --model runs where it is not installed (a GPU image).
    from vivit_jax.experiments.benchmarks import data as data_benchmark  # pylint: disable=g-import-not-at-top
    result = data_benchmark.data_benchmark(args.work_dir or tmp)
  width = max(len(k) for k in result)
  print(json.dumps(result, indent=2) if args.json else '\n'.join(f'{k:<{width}}  {v}' for k, v in result.items()))


def _cpu(args, overrides) -> None:
  jax.config.update('jax_platforms', 'cpu')  # Before anything touches a device.
  steps = args.steps or 5
  if args.batch_size:
    overrides = overrides + [f'batch_size={args.batch_size}']
  if args.config:
    config = load_config(args.config, ['model_dtype_str=float32'] + overrides)
    results = [side_by_side.side_by_side(config, steps, huggingface=not args.no_hf)]
  else:
    results = side_by_side.run_sizes(args.sizes.split(',') if args.sizes else None, steps, not args.no_hf,
                                     tuple(overrides))
  if args.json:
    print(json.dumps(results, indent=2))
  else:
    print('\n\n'.join(side_by_side.format_side_by_side(r) for r in results))


def _model(args, overrides) -> None:
  config = load_config(args.config, ['model_dtype_str=bfloat16'] + overrides)
  why_not = None if args.no_hf else model_benchmark.huggingface_comparison(config)
  if why_not:
    print(f'{why_not}: timing vivit_jax only', file=sys.stderr)
  result = model_benchmark.model_benchmark(config, args.batch_size, args.steps or 10,
                                           huggingface=not (args.no_hf or why_not),
                                           compile_hf=args.compile_hf, forward=not args.train_only,
                                           profile_dir=args.profile_dir)
  print(json.dumps(result, indent=2) if args.json else model_benchmark.format_model_benchmark(result))


if __name__ == '__main__':
  sys.exit(main())
