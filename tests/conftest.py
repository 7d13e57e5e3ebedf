"""Tests run on CPU with 8 simulated devices, set before jax is imported anywhere.

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
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

_OWN_CACHE = None
if os.environ.get('VIVIT_TEST_COMPILE_CACHE', '1') != '0' and 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix='vivit_jax_test_compile_cache_')  # The first process (xdist's controller).
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _OWN_CACHE
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _OWN_CACHE:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)
