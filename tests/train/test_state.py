"""The initial train state: compiled the quick way on the CPU, and bitwise what a default compile gives."""

import os

import jax
import pytest

from tests.train_testing import assert_trees_equal, train_config
from vivit_jax import train
from vivit_jax.train import state as state_lib

DEFAULT_LEVEL = {'xla_backend_optimization_level': 2}  # XLA's own default: LLVM -O2.


@pytest.mark.parametrize('kind', ['spacetime', 'factorized_encoder', 'factorized_dot_product_attention'])
def test_the_quick_compile_gives_bitwise_the_default_compile_s_state(kind, monkeypatch):
  # The suite's XLA_FLAGS set -O0 (tests/conftest.py), which create_state would leave as it is: without it,
  # create_state compiles at -O1, as a user's run does.
  flags = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split() if 'xla_backend_optimization_level' not in f)
  monkeypatch.setenv('XLA_FLAGS', flags)
  overrides = {'model__classifier': 'gap'} if kind == 'factorized_dot_product_attention' else {}
  run = train.setup(train_config(kind, model__dropout_rate=0.1, **overrides), devices=jax.devices()[:1])
  assert state_lib.init_compiler_options(1 << 20) == {'xla_backend_optimization_level': 1}
  quick = state_lib.create_state(run.init, run.shardings)
  default = jax.jit(run.init, out_shardings=run.shardings, compiler_options=DEFAULT_LEVEL)()
  assert_trees_equal(quick, default)


def test_large_states_other_backends_and_a_level_in_xla_flags_keep_the_default(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
  assert state_lib.init_compiler_options(state_lib.SMALL_STATE_BYTES - 1) == {'xla_backend_optimization_level': 1}
  assert state_lib.init_compiler_options(state_lib.SMALL_STATE_BYTES) is None
  monkeypatch.setenv('XLA_FLAGS', '--xla_backend_optimization_level=3')
  assert state_lib.init_compiler_options(1 << 20) is None
  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert state_lib.init_compiler_options(1 << 20) is None
