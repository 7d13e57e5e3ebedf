"""TF SavedModel export: the reloaded model matches the JAX model, its signature, the saved label names and
scripts/export.py end to end."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.serving.test_predict import load_script, trained_workdir
from tests.tiny import randomise
from vivit_jax.serving import export
from vivit_jax.serving import predict as inference


@pytest.fixture(scope='module')
def tiny_workdir(tmp_path_factory):
  return trained_workdir(tmp_path_factory)


@pytest.fixture(scope='module')
def predictor(tiny_workdir):
  loaded = inference.load_for_inference(tiny_workdir)
  loaded.params = randomise(loaded.params)  # Strong weights: a wrong normalisation or weight would show.
  return loaded


@pytest.fixture(scope='module')
def exported(predictor, tmp_path_factory):
  return export.export_saved_model(predictor, str(tmp_path_factory.mktemp('export') / 'saved_model'))


def test_reloaded_saved_model_matches_the_jax_model(exported, predictor):
  difference = export.verify_saved_model(exported, predictor, batch_size=3, seed=1)
  assert difference <= 1e-4
  clips = np.random.default_rng(2).integers(0, 256, (2, 8, 16, 16, 3), dtype=np.uint8)
  probs = tf.saved_model.load(exported).signatures['serving_default'](clips=tf.constant(clips))
  probs = probs['probabilities'].numpy()
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
  assert probs.max() > 1.25 / probs.shape[1]  # Not a near-uniform output that any model would match.
  for clip, row in zip(clips, probs):
    views = predictor.normalize(clip[None])
    np.testing.assert_allclose(row, predictor.probabilities(predictor.logits(views)), atol=1e-5)


def test_signature_takes_uint8_clips_and_returns_probabilities(exported):
  signature = tf.saved_model.load(exported).signatures['serving_default']
  _, inputs = signature.structured_input_signature
  assert inputs['clips'].dtype == tf.uint8 and inputs['clips'].shape.as_list() == [None, 8, 16, 16, 3]
  output = signature.structured_outputs['probabilities']
  assert output.dtype == tf.float32 and output.shape.as_list() == [None, 5]
  info = export.read_export_info(exported)
  assert info['label_names'][0].startswith('direction_') and len(info['label_names']) == 5
  assert info['input']['shape'] == [None, 8, 16, 16, 3] and info['preprocessing']['value_range'] == [-1, 1]


def test_fixed_batch_size_and_mean_std_normalisation(predictor, tmp_path):
  original = predictor.spec
  predictor.spec = {**original, 'mean_rgb': [120.0, 110.0, 100.0], 'std_rgb': [60.0, 50.0, 40.0]}
  try:
    path = export.export_saved_model(predictor, str(tmp_path / 'fixed'), batch_size=2)
    assert export.verify_saved_model(path, predictor, batch_size=2) <= 1e-4
  finally:
    predictor.spec = original
  signature = tf.saved_model.load(path).signatures['serving_default']
  assert signature.structured_input_signature[1]['clips'].shape.as_list() == [2, 8, 16, 16, 3]


def test_verification_fails_when_the_models_differ(exported, predictor):
  original = predictor.params
  predictor.params = randomise(original, seed=7)
  try:
    with pytest.raises(export.ExportError, match='differs from the JAX model'):
      export.verify_saved_model(exported, predictor)
  finally:
    predictor.params = original


def test_cli_exports_and_prints_the_difference(tiny_workdir, tmp_path, capsys):
  script = load_script('export')
  output = tmp_path / 'cli_export'
  assert script.main([f'--checkpoint={tiny_workdir}', f'--output={output}', '--format=saved_model']) == 0
  printed = capsys.readouterr().out
  assert 'max |SavedModel - JAX|' in printed
  assert float(printed.split('= ')[1].split()[0]) <= 1e-4
  assert json.loads((output / 'assets' / export.INFO_FILE).read_text())['output']['shape'] == [None, 5]
  assert script.main([f'--checkpoint={tmp_path / "missing"}', f'--output={tmp_path / "x"}']) == 2
