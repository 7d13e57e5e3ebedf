"""ONNX export: every variant and task run by ONNX Runtime matches the JAX model, the batch dimension is dynamic,
the metadata carries labels and preprocessing, a model that disagrees is never written, and a missing extra is
one clear error."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.tiny import randomise, tiny_config
from vivit_jax.data.base import preprocessing_spec
from vivit_jax.models import create_model
from vivit_jax.models.embedding import TokenEmbedding
from vivit_jax.serving import export_onnx
from vivit_jax.serving.export import ExportError
from vivit_jax.serving.predict import Predictor

MULTIHEAD = dict(model_name='vivit_multihead_classification', dataset_configs__class_splits=(2, 3),
                 dataset_configs__split_names=('noun', 'verb'))
# (id, attention type, tiny_config overrides): Models 1-4, the spatial-only baseline, the tasks, temporal sampling.
CASES = [
    ('model1', 'spacetime', {}),
    ('model2', 'factorized_encoder', {}),
    ('model3', 'factorized_self_attention_block', {}),
    ('model4', 'factorized_dot_product_attention', {}),
    ('spatial_only', 'factorized_encoder', {'model__attention_config__spatial_only_baseline': True}),
    ('multihead', 'factorized_self_attention_block', MULTIHEAD),
    ('multilabel', 'factorized_encoder', {'model_name': 'vivit_multilabel_classification'}),
    ('temporal_sampling', 'spacetime', {'model__temporal_encoding_config__method': 'temporal_sampling',
                                        'model__temporal_encoding_config__n_sampled_frames': 4}),
    ('bfloat16', 'factorized_dot_product_attention', {'model_dtype_str': 'bfloat16'}),
]


def tiny_predictor(kind='spacetime', seed=1, **overrides):
  """A Predictor of an untrained tiny model with strong random weights (a wrong weight or normalisation shows)."""
  config = tiny_config(kind, **overrides)
  model = create_model(config)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), jnp.zeros((1, 8, 16, 16, 3)))
  params = shapes['params']  # Shapes only: `randomise` draws the weights, with no op-by-op initialisation.
  names = [f'class {i}' for i in range(config.dataset_configs.num_classes)]
  return Predictor(model=model, params=randomise(params, seed=seed), config=config,
                   spec=preprocessing_spec(config, names), label_names=names)


def clips(batch, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (batch, 8, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize('kind, overrides', [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_variant_and_task_matches_the_jax_model(kind, overrides, tmp_path):
  predictor = tiny_predictor(kind, **overrides)
  path = str(tmp_path / 'model.onnx')
  difference = export_onnx.write_onnx(predictor, path)
  print(f'{kind} {overrides}: max |ONNX Runtime - JAX| = {difference:.3g}')
  assert difference <= 1e-5  # float32 round-off (measured 1e-8 to 1e-7); the command's bar is 1e-4.
  for batch in (1, 3):  # The batch dimension is dynamic.
    probs = export_onnx.run_onnx(path, clips(batch, seed=batch))
    assert probs.shape == (batch, 5) and probs.dtype == np.float32
    expected = [predictor.probabilities(predictor.logits(predictor.normalize(clip[None]))) for clip in
                clips(batch, seed=batch)]
    # A bfloat16 model is exported in float32: its JAX outputs round differently.
    np.testing.assert_allclose(probs, np.stack(expected), atol=1e-3 if 'model_dtype_str' in overrides else 1e-5)
  heads = [(0, 2), (2, 5)] if overrides is MULTIHEAD else [(0, 5)]
  if overrides.get('model_name') != 'vivit_multilabel_classification':
    for start, stop in heads:  # Softmax within each head.
      np.testing.assert_allclose(probs[:, start:stop].sum(axis=1), 1.0, atol=1e-5)
      assert probs[:, start:stop].max() > 1.25 / (stop - start)  # Not the near-uniform output any model matches.
  else:
    assert probs.sum(axis=1).max() > 1.1  # Independent sigmoids, not a softmax.


def test_tubelets_times_kernel_equals_the_convolution():
  video = jax.random.normal(jax.random.PRNGKey(3), (2, 8, 16, 16, 3))
  for method, patch in (('3d_conv', (4, 4, 2)), ('temporal_sampling', (4, 4))):
    module = TokenEmbedding(hidden_size=6, patch_size=patch, method=method, n_sampled_frames=3)
    variables = randomise(jax.eval_shape(module.init, jax.random.PRNGKey(0), video))
    expected = jax.jit(module.apply)(variables, video)
    got = jax.jit(lambda w, v: module.apply(w, v, method=export_onnx._tubelets_times_kernel))(variables, video)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_metadata_and_signature(tmp_path):
  predictor = tiny_predictor('factorized_encoder', **MULTIHEAD)
  path = str(tmp_path / 'model.onnx')
  export_onnx.write_onnx(predictor, path)
  info = export_onnx.read_onnx_info(path)
  assert info['label_names'] == [f'class {i}' for i in range(5)] and info['format'] == 'onnx'
  assert info['preprocessing']['crop_size'] == 16 and info['preprocessing']['value_range'] == [-1.0, 1.0]
  assert info['task']['heads'] == [{'name': 'noun', 'start': 0, 'stop': 2}, {'name': 'verb', 'start': 2, 'stop': 5}]
  assert info['input'] == {'name': 'clips', 'dtype': 'uint8', 'shape': [None, 8, 16, 16, 3],
                           'description': 'RGB 0..255 clips, already sampled, resized and cropped'}
  assert info['output'] == {'name': 'probabilities', 'dtype': 'float32', 'shape': [None, 5]}
  assert info['opset'] == export_onnx.OPSET and info['converter'].startswith('jax2onnx ')
  session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
  assert 'vivit_export' in session.get_modelmeta().custom_metadata_map
  (inputs,), (outputs,) = session.get_inputs(), session.get_outputs()
  assert (inputs.name, inputs.type, inputs.shape) == ('clips', 'tensor(uint8)', ['batch', 8, 16, 16, 3])
  assert (outputs.name, outputs.type, outputs.shape) == ('probabilities', 'tensor(float)', ['batch', 5])
  onnx.checker.check_model(path)


def test_fixed_batch_size_and_mean_std_normalisation(tmp_path):
  predictor = tiny_predictor('spacetime')
  predictor.spec = {**predictor.spec, 'mean_rgb': [120.0, 110.0, 100.0], 'std_rgb': [60.0, 50.0, 40.0]}
  path = str(tmp_path / 'fixed.onnx')
  assert export_onnx.write_onnx(predictor, path, batch_size=2) <= 1e-5
  assert ort.InferenceSession(path, providers=['CPUExecutionProvider']).get_inputs()[0].shape == [2, 8, 16, 16, 3]
  assert export_onnx.read_onnx_info(path)['input']['shape'] == [2, 8, 16, 16, 3]
  with pytest.raises(ExportError, match='batch_size must be positive'):
    export_onnx.write_onnx(predictor, path, batch_size=0)


def test_a_model_that_disagrees_is_not_written(tmp_path, monkeypatch):
  predictor = tiny_predictor('factorized_encoder')
  path = tmp_path / 'model.onnx'
  export_onnx.write_onnx(predictor, str(path))
  good = path.read_bytes()
  wrong = export_onnx._tubelets_times_kernel
  monkeypatch.setattr(export_onnx, '_tubelets_times_kernel', lambda module, video: 1.5 * wrong(module, video))
  with pytest.raises(ExportError, match=r'model.onnx: the ONNX model differs from the JAX model by .*'
                                        r'tolerance 0.0001\); .*model.onnx was not written'):
    export_onnx.write_onnx(predictor, str(path))
  assert path.read_bytes() == good  # The earlier export stays; no staging folder is left behind.
  assert sorted(p.name for p in tmp_path.iterdir()) == ['model.onnx']


def test_large_params_go_to_one_data_file(tmp_path, monkeypatch):
  predictor = tiny_predictor('factorized_dot_product_attention')
  path = tmp_path / 'model.onnx'
  monkeypatch.setattr(export_onnx, 'EXTERNAL_DATA_BYTES', 0)
  assert export_onnx.write_onnx(predictor, str(path)) <= 1e-5
  assert sorted(p.name for p in tmp_path.iterdir()) == ['model.onnx', 'model.onnx.data']
  stored = onnx.load(str(path), load_external_data=False).graph.initializer
  assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in stored)
  monkeypatch.setattr(export_onnx, 'EXTERNAL_DATA_BYTES', 2**31)
  export_onnx.write_onnx(predictor, str(path))  # In one file again: the earlier params file goes.
  assert sorted(p.name for p in tmp_path.iterdir()) == ['model.onnx']


@pytest.mark.parametrize('missing', export_onnx.REQUIRED)
def test_a_missing_dependency_names_the_extra(missing, monkeypatch):
  monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now raises ImportError.
  with pytest.raises(export_onnx.OnnxUnavailable) as raised:
    export_onnx.convert_to_onnx(tiny_predictor())
  assert str(raised.value) == ("--format=onnx needs jax2onnx, onnx, onnxruntime; not installed: "
                               f"{missing}. Install them with: pip install 'vivit_jax[onnx]'")
