"""scripts/model_table.py: exact parameter counts and paper-convention GFLOPs, computed abstractly."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from tests import paths
from vivit_jax.models import complexity

ROOT = str(paths.ROOT)


def run_script(*args):
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'model_table.py'), *args],
                       capture_output=True, text=True, cwd=ROOT, check=True)
  return out.stdout


@pytest.fixture(scope='module')
def paper_rows():
  return json.loads(run_script('--paper', '--json'))


def test_paper_table_parameter_counts_are_exact(paper_rows):
  assert [r['params'] for r in paper_rows] == [p['params'] for p in complexity.PAPER_MODEL_TABLE]
  assert [r['params'] for r in paper_rows] == [88_954_000, 115_062_928, 117_319_312, 88_952_464,
                                               86_696_080]


def test_paper_table_gflops_within_one_and_a_half_percent(paper_rows):
  for row, paper in zip(paper_rows, complexity.PAPER_MODEL_TABLE):
    assert set(row) >= {'config', 'variant', 'params', 'gflops'}
    assert abs(row['gflops'] - paper['gflops']) / paper['gflops'] < 0.015, (row, paper)


def test_text_table_shows_paper_columns():
  text = run_script('--paper')
  assert 'paper GFLOPs' in text and '455.2' in text and '88,954,000' in text


def test_macs_of_a_dense_layer_and_a_convolution_by_hand():
  dense = jax.make_jaxpr(lambda x, w: x @ w)(jnp.zeros((2, 3)), jnp.zeros((3, 4)))
  assert complexity.count_jaxpr_macs(dense.jaxpr) == 2 * 3 * 4
  conv = jax.make_jaxpr(lambda x, k: jax.lax.conv_general_dilated(
      x, k, (2, 2), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))(
          jnp.zeros((1, 8, 8, 3)), jnp.zeros((2, 2, 3, 5)))
  assert complexity.count_jaxpr_macs(conv.jaxpr) == (4 * 4 * 5) * (2 * 2 * 3)
  nested = jax.make_jaxpr(jax.jit(lambda x, w: jax.checkpoint(lambda a: a @ w)(x)))(
      jnp.zeros((2, 3)), jnp.zeros((3, 4)))
  assert complexity.count_jaxpr_macs(nested.jaxpr) == 24


def test_gflops_do_not_depend_on_the_attention_implementation():
  # A fused cuDNN call is opaque to the jaxpr count: counting always traces XLA attention (and so needs no GPU).
  from tests.tiny import tiny_config  # pylint: disable=g-import-not-at-top
  from vivit_jax.models import create_model  # pylint: disable=g-import-not-at-top
  counts = []
  for implementation in (None, 'xla', 'cudnn'):
    config = tiny_config('spacetime', model__attention_implementation=implementation)
    model, shape = create_model(config), complexity.input_shape(config)
    counts.append(complexity.count_gflops(model, complexity.abstract_params(model, shape), shape))
  assert counts[0] == counts[1] == counts[2] > 0
