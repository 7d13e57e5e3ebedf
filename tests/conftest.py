"""Tests run on CPU with 8 simulated devices, set before jax is imported anywhere.

They also compile the quick way: the tests compile hundreds of tiny programs and compute little with each, so
compiling is most of their time. LLVM's optimisations are off (`--xla_backend_optimization_level=0`:
tests/models/test_models.py and tests/train/test_step.py, 163 s -> 96 s on 2 cores), and fused elementwise code
comes from XLA's older LLVM emitters instead of its MLIR fusion emitters (`--xla_cpu_use_fusion_emitters=false`:
a tiny train step compiles in 0.4-0.7 s instead of 1.0-1.7 s; tests/train/test_loop.py 106 s -> 78 s on one
worker), and each program's machine code is generated as one LLVM module instead of XLA's default split into
several compiled in parallel (`--xla_cpu_parallel_codegen_split_count=1`: a split's fixed cost outweighs its
parallelism for tiny programs on 2 cores; tests/train, tests/models and tests/serving 166-167 s -> 152-158 s on 2
workers, alternated runs). The graph-level (HLO) passes are a default compile's (float results may differ in their
last bits, as between CPUs); the README demos' runs (tests/experiments/test_demos.py) start without the tests'
XLA_FLAGS and compile as users' runs do. A flag set in XLA_FLAGS beforehand is kept.

Compiled programs are shared through JAX's persistent compilation cache in a directory made for this run
(inherited by pytest-xdist's workers and by the commands the tests start, removed when the run ends): many tests
compile the same tiny models, and compiling, not computing, is most of their time on a CPU. The programs are the
ones a cold compile makes; `VIVIT_TEST_COMPILE_CACHE=0` turns the sharing off.
"""

import os
import shutil
import tempfile

os.environ['JAX_PLATFORMS'] = 'cpu'
os.environ['CUDA_VISIBLE_DEVICES'] = ''
for _flag, _value in (('--xla_force_host_platform_device_count', '8'), ('--xla_backend_optimization_level', '0'),
                      ('--xla_cpu_use_fusion_emitters', 'false'), ('--xla_cpu_parallel_codegen_split_count', '1')):
  if _flag not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}={_value}".strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

_OWN_CACHE = None
if os.environ.get('VIVIT_TEST_COMPILE_CACHE', '1') != '0' and 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix='vivit_jax_test_compile_cache_')  # The first process (xdist's controller).
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _OWN_CACHE
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'


# The longest tests start first, so that with several workers none of them is left running alone at the end: the
# files holding a test of 7 s or more in CI's `--durations=20`, longest first (the rest are shorter than 7 s).
LONGEST_FIRST = ('tests/experiments/test_demos.py', 'tests/test_custom_folder.py',
                 'tests/experiments/test_benchmarks.py', 'tests/train/test_multiprocess.py', 'tests/test_main.py',
                 'tests/train/test_step.py', 'tests/train/test_loop.py', 'tests/experiments/test_image_pretrain.py',
                 'tests/cli/test_quiet.py', 'tests/models/test_fast_paths.py', 'tests/experiments/test_ablation.py',
                 'tests/checkpoints/test_huggingface.py', 'tests/data/ingest/test_prepare.py',
                 'tests/data/test_video_training.py')


def pytest_collection_modifyitems(session, config, items):
  del session, config
  rank = lambda item: next((i for i, path in enumerate(LONGEST_FIRST) if item.nodeid.startswith(path)),
                           len(LONGEST_FIRST))
  items.sort(key=rank)  # Stable: the order within each rank is kept.


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _OWN_CACHE:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)
