"""An ablation sweep compiles each program once: its entries share JAX's persistent compilation cache, in a
temporary directory for the sweep's duration (`sweep.compiled_once`), unless a cache directory is already set."""

import contextlib
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.compilation_cache import compilation_cache

from tests import paths
from vivit_jax.experiments.ablation import spec as spec_lib
from vivit_jax.experiments.ablation import sweep as sweep_lib

TINY = os.path.join(str(paths.ROOT), 'configs', 'ablations', 'synthetic_variants.py') + ':tiny'


@contextlib.contextmanager
def no_cache_directory():
  """As a user's process starts: no cache directory (the suite sets one for every test, tests/conftest.py)."""
  suite_dir = jax.config.jax_compilation_cache_dir
  compilation_cache.set_cache_dir(None)
  compilation_cache.reset_cache()
  try:
    yield
  finally:
    compilation_cache.set_cache_dir(suite_dir)
    compilation_cache.reset_cache()


@contextlib.contextmanager
def cache_hits():
  hits = []
  listener = lambda event, **_: hits.append(event) if event == '/jax/compilation_cache/cache_hits' else None
  jax.monitoring.register_event_listener(listener)
  try:
    yield hits
  finally:
    jax.monitoring.unregister_event_listener(listener)


def _program(scale):
  """A new function object each call (as each sweep entry builds its own model): jit's in-memory cache misses."""
  return jax.jit(lambda x: jnp.tanh(x * scale).sum())


def test_a_sweep_s_entries_get_the_programs_an_earlier_entry_compiled_and_the_cache_goes_with_the_sweep():
  x = np.arange(12.0, dtype=np.float32)
  with no_cache_directory():
    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    with sweep_lib.compiled_once(), cache_hits() as hits:
      path = jax.config.jax_compilation_cache_dir
      assert path and os.path.isdir(path)
      first = _program(3.0)(x)
      assert not hits
      assert _program(3.0)(x) == first and len(hits) == 1  # Compiled by the first entry.
    assert jax.config.jax_compilation_cache_dir is None and not os.path.exists(path)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == min_time
    with cache_hits() as hits:  # Nothing is cached after the sweep.
      _program(3.0)(x)
      assert not hits


def test_a_cache_directory_already_set_is_used_as_it_is():
  suite_dir = jax.config.jax_compilation_cache_dir
  assert suite_dir  # tests/conftest.py's.
  with sweep_lib.compiled_once():
    assert jax.config.jax_compilation_cache_dir == suite_dir
  assert jax.config.jax_compilation_cache_dir == suite_dir


def test_training_and_timing_entries_run_inside_the_shared_cache(tmp_path, monkeypatch):
  seen = []
  monkeypatch.setattr(sweep_lib, 'train_and_evaluate',
                      lambda config, workdir: seen.append(jax.config.jax_compilation_cache_dir) or {'status': 'ok'})
  monkeypatch.setattr(sweep_lib, 'time_train_steps_that_fit',
                      lambda config, steps, batch_size: seen.append(jax.config.jax_compilation_cache_dir) or {})
  ablation = spec_lib.load_ablation(TINY)
  with no_cache_directory():
    sweep_lib.run_sweep(ablation, str(tmp_path), only=['model1_spatiotemporal', 'average_pool_baseline'])
    list(sweep_lib.time_sweep(ablation, str(tmp_path), only=['model1_spatiotemporal']))
    assert jax.config.jax_compilation_cache_dir is None
  assert len(seen) == 3 and all(seen) and seen[0] == seen[1] != seen[2]  # One directory per sweep.
