"""Hostile checkpoint inputs (issue 12, cases 4.29, 4.36, 4.39, 4.44): each is refused with one clear error line
naming what was found, before any training or any output."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import paths
from tests.tiny import randomise, tiny_config
from tests.train_testing import train_config
from vivit_jax import train
from vivit_jax.checkpoints import (CheckpointError, CheckpointManager, PretrainedMismatchError, init_from_pretrained,
                                   load_checkpoint, save_vivit_jax)
from vivit_jax.cli import convert as convert_cli
from vivit_jax.models import create_model


def tiny_params(config, seed=1):
  abstract = jax.eval_shape(lambda: create_model(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 16, 16, 3))))
  return jax.tree.map(np.asarray, randomise(abstract['params'], seed=seed))


def tiny_workdir(path, kind='spacetime', steps=(1,)):
  config = tiny_config(kind)
  for step in steps:
    save_vivit_jax(str(path), tiny_params(config, step), {'config': json.loads(config.to_json_best_effort())},
                   step=step)
  return str(path)


# ---------------------------------------------------------------------------------------------- 4.44


def test_init_from_a_tree_matching_nothing_names_both_trees():
  config = tiny_config('spacetime', init_from__checkpoint_path='/ckpt/unrelated.npz')
  with pytest.raises(PretrainedMismatchError) as error:
    init_from_pretrained(tiny_params(config), {'foo': np.ones((3, 3), np.float32)}, config, log=None)
  message = str(error.value)
  assert '\n' not in message
  assert '/ckpt/unrelated.npz' in message and 'none of the 1 arrays' in message
  checkpoint, model = message.split('the checkpoint has ')[1].split('; the model has ')
  assert checkpoint == 'foo (3, 3)'
  assert model.startswith('Transformer/encoder_norm/bias (12,), cls (1, 1, 12), embedding/bias (12,), '
                          'output_projection/bias (5,), Transformer/encoder_norm/scale (12,), ... (35 more)')


def test_init_from_a_tree_matching_one_parameter_still_initialises_it():
  config = tiny_config('spacetime')
  fresh = tiny_params(config)
  norm = {'scale': np.full(12, 3.0, np.float32), 'bias': np.ones(12, np.float32)}
  params = init_from_pretrained(fresh, {'Transformer': {'encoder_norm': norm}, 'foo': np.ones(2)}, config, log=None)
  np.testing.assert_array_equal(params['Transformer']['encoder_norm']['scale'], norm['scale'])


def test_trainer_refuses_an_init_from_npz_of_unrelated_arrays_before_training(tmp_path):
  path = str(tmp_path / 'unrelated.npz')
  np.savez(path, foo=np.ones((3, 3), np.float32))
  config = train_config('spacetime', init_from__checkpoint_path=path, init_from__checkpoint_format='auto')
  workdir = str(tmp_path / 'run')
  run = train.setup(config, workdir)
  with pytest.raises(PretrainedMismatchError, match=r'unrelated\.npz.*foo \(3, 3\)'):
    train.restore_or_initialise(run, CheckpointManager(workdir))
  assert not os.path.isdir(os.path.join(workdir, 'checkpoints', '0'))


# ---------------------------------------------------------------------------------------------- 4.36


@pytest.mark.parametrize('where, what', [('', 'a vivit_jax workdir'), ('checkpoints/1', 'a vivit_jax step directory')])
def test_scenic_format_on_a_vivit_jax_checkpoint_names_its_format(tmp_path, where, what):
  path = os.path.join(tiny_workdir(tmp_path / 'run'), where) if where else tiny_workdir(tmp_path / 'run')
  with pytest.raises(CheckpointError) as error:
    load_checkpoint(path, 'scenic')
  assert str(error.value) == (f"{path} is {what}, not a Scenic checkpoint (format 'scenic'): set "
                              "init_from.checkpoint_format='vivit_jax' (or 'auto')")


def test_a_format_that_fits_keeps_its_own_error(tmp_path):
  npz = str(tmp_path / 'arrays.npz')
  np.savez(npz, foo=np.ones(2, np.float32))
  with pytest.raises(CheckpointError, match=r"arrays\.npz is an \.npz checkpoint .*checkpoint_format='vit_npz'"):
    load_checkpoint(npz, 'scenic')
  (tmp_path / 'checkpoint_1').write_bytes(b'\x81\xa1a')  # A msgpack map cut short: a broken Scenic file.
  with pytest.raises(CheckpointError, match='is not a readable Flax msgpack checkpoint'):
    load_checkpoint(str(tmp_path / 'checkpoint_1'), 'scenic')


# ---------------------------------------------------------------------------------------------- 4.39


def test_convert_model_2_to_hugging_face_is_one_error_line_and_writes_nothing(tmp_path, capsys):
  source = tiny_workdir(tmp_path / 'fe', 'factorized_encoder')
  output = tmp_path / 'fe_hf'
  status = convert_cli.main([f'--input={source}', f'--output={output}', '--to=huggingface'])
  err = capsys.readouterr().err
  assert status == 2 and 'Traceback' not in err, err
  lines = [line for line in err.splitlines() if line.startswith('error:')]
  assert lines == [f'error: Cannot convert {source} to Hugging Face: Hugging Face supports ViViT Model 1 only '
                   '(spacetime attention, token classifier, 3d_conv tubelets, no pre-logits); this config has '
                   "attention_config.type is 'factorized_encoder' (expected 'spacetime')"], err
  assert not output.exists()


# ---------------------------------------------------------------------------------------------- 4.29

_READ_DAMAGED = textwrap.dedent('''
    import sys, time, warnings
    from vivit_jax.checkpoints import CheckpointError, load_checkpoint
    from vivit_jax.cli import evaluate
    warnings.simplefilter('ignore', RuntimeWarning)  # The warnings for the unreadable steps.
    for _ in range(8):  # Orbax's failed reads race TensorStore's callbacks; repeat to meet the race.
      try:
        load_checkpoint(sys.argv[1])
      except CheckpointError:
        pass
    print('status', evaluate.main([f'--checkpoint={sys.argv[1]}', f'--output={sys.argv[2]}']))
    time.sleep(0.5)  # Callbacks of reads still in flight would print now.
''')


def test_unreadable_steps_end_with_the_error_and_no_event_loop_traceback(tmp_path):
  workdir = tiny_workdir(tmp_path / 'run', steps=(1, 2))
  for step in ('1', '2'):
    for name in ('d', 'ocdbt.process_0'):  # The array files of both steps are gone.
      shutil.rmtree(os.path.join(workdir, 'checkpoints', step, 'state', name))
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(paths.ROOT))
  result = subprocess.run([sys.executable, '-c', _READ_DAMAGED, workdir, str(tmp_path / 'eval.json')],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
  assert 'status 2' in result.stdout, result.stderr[-3000:]
  assert 'Event loop is closed' not in result.stderr, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr and 'never retrieved' not in result.stderr, result.stderr[-3000:]
  lines = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert lines == [f'error: No checkpoint in {workdir}/checkpoints can be read:'], result.stderr[-3000:]
