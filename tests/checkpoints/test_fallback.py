"""Evaluation and prediction read a workdir's newest readable step: a newer step that cannot be read is skipped
with the warning the trainer gives (`manager.warn_unreadable`), and params, config and metadata all come from
the step read. A step named explicitly never falls back."""

import json
import os
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tiny import randomise, tiny_config
from vivit_jax.checkpoints import (CheckpointError, load_checkpoint, load_metadata, load_params, restore_for_use,
                                   save_vivit_jax)
from vivit_jax.models import create_model
from vivit_jax.serving import predict



@pytest.fixture(scope='module')
def params_and_config():
  config = tiny_config('spacetime')
  abstract = jax.eval_shape(lambda: create_model(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 16, 16, 3))))
  steps = {step: jax.tree.map(np.asarray, randomise(abstract['params'], seed=step)) for step in (1, 2)}
  return steps, json.loads(config.to_json_best_effort())


@pytest.fixture
def workdir(tmp_path, params_and_config):
  """Steps 1 and 2, each with the tiny config and its step number in the metadata."""
  steps, config = params_and_config
  for step, params in steps.items():
    save_vivit_jax(str(tmp_path), params, {'config': config, 'saved_at': step}, step=step)
  return str(tmp_path)


def step_dir(workdir: str, step: int) -> str:
  return os.path.join(workdir, 'checkpoints', str(step))


def corrupt_arrays(step: str) -> None:
  """Truncates the array data of a step, as a torn copy would."""
  for root, _, names in os.walk(os.path.join(step, 'state')):
    for name in names:
      if f'{os.sep}d' in root[len(step):]:
        open(os.path.join(root, name), 'wb').close()


def corrupt_metadata(step: str) -> str:
  path = os.path.join(step, 'metadata', 'metadata')
  with open(path, 'w') as f:
    f.write('{"config": ')
  return os.path.dirname(path)


def damage_step(step: str, damage: str) -> str:
  """Damages the arrays or the metadata JSON of `step`; returns what the message must name beyond the step."""
  if damage == 'metadata':
    return corrupt_metadata(step)
  if damage == 'tree_metadata':  # The JSON that Orbax keeps beside the arrays.
    with open(os.path.join(step, 'state', '_METADATA'), 'w') as f:
      f.write('{"tree_metadata": [')
    return os.path.join(step, 'state')
  corrupt_arrays(step)
  return ''


def assert_params_of(loaded, params_and_config, step: int) -> None:
  expected = params_and_config[0][step]
  np.testing.assert_array_equal(np.asarray(loaded['embedding']['kernel']), expected['embedding']['kernel'])


@pytest.mark.parametrize('damage', ['arrays', 'metadata', 'tree_metadata'])
def test_load_params_and_metadata_fall_back_with_the_trainers_warning(workdir, params_and_config, damage):
  newest = step_dir(workdir, 2)
  why = damage_step(newest, damage)
  with pytest.warns(RuntimeWarning, match=f'Cannot read checkpoint {re.escape(newest)} .*' + re.escape(why) +
                    '.*trying the next older one') as record:
    loaded = load_checkpoint(workdir)
  assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
  assert loaded.source == os.path.join(step_dir(workdir, 1), 'state') and loaded.metadata['saved_at'] == 1
  assert_params_of(loaded.params, params_and_config, 1)
  with pytest.warns(RuntimeWarning, match=re.escape(newest)):
    assert_params_of(load_params(workdir), params_and_config, 1)
  if damage == 'metadata':
    with pytest.warns(RuntimeWarning, match=re.escape(why) + '.* is unreadable: JSONDecodeError'):
      assert load_metadata(workdir)['saved_at'] == 1
  else:  # The metadata JSON of step 2 is intact, and is what load_metadata alone reads.
    assert load_metadata(workdir)['saved_at'] == 2


@pytest.mark.parametrize('damage', ['arrays', 'metadata', 'tree_metadata'])
def test_a_step_named_explicitly_never_falls_back(workdir, damage):
  newest = step_dir(workdir, 2)
  why = damage_step(newest, damage)
  with warnings.catch_warnings():
    warnings.simplefilter('error', RuntimeWarning)
    with pytest.raises(CheckpointError, match=f'Cannot read checkpoint {re.escape(newest)}: .*{re.escape(why)}'):
      load_params(newest)


def test_restore_for_use_falls_back_and_reads_everything_from_one_step(workdir, params_and_config):
  corrupt_arrays(step_dir(workdir, 2))
  with pytest.warns(RuntimeWarning, match=f'Cannot read checkpoint {re.escape(step_dir(workdir, 2))} '):
    restored = restore_for_use(workdir)
  assert restored.metadata['saved_at'] == 1
  assert_params_of(restored.host_params(), params_and_config, 1)


def test_predict_falls_back_with_the_warning(workdir, params_and_config):
  corrupt_arrays(step_dir(workdir, 2))
  with pytest.warns(RuntimeWarning, match=f'Cannot read checkpoint {re.escape(step_dir(workdir, 2))} '):
    predictor = predict.load_for_inference(workdir)
  assert_params_of(jax.device_get(predictor.params), params_and_config, 1)


def test_no_readable_step_lists_every_one(workdir):
  for step in (1, 2):
    corrupt_arrays(step_dir(workdir, step))
  with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match='No checkpoint in .* can be read') as error:
    load_params(workdir)
  for step in (1, 2):
    assert step_dir(workdir, step) in str(error.value)


def test_non_finite_newest_step_is_an_error_not_a_fallback(workdir, params_and_config, tmp_path):
  bad = jax.tree.map(np.copy, params_and_config[0][2])
  bad['cls'][...] = np.nan
  save_vivit_jax(workdir, bad, {'config': params_and_config[1]}, step=3)
  with warnings.catch_warnings():
    warnings.simplefilter('error', RuntimeWarning)
    with pytest.raises(CheckpointError, match=re.escape(os.path.join(step_dir(workdir, 3), 'state')) + '.*cls'):
      restore_for_use(workdir)
