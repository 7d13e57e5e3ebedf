"""Hugging Face checkpoints: parity with transformers both ways, 4.x and 5.x names, ViT trees, conversion."""

import copy
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers

from tests import paths
from tests.tiny import randomise, tiny_config
from vivit_jax import checkpoints
from vivit_jax.checkpoints import convert, restore
from vivit_jax.cli import convert as convert_cli
from vivit_jax.checkpoints import CheckpointError
from vivit_jax.checkpoints.formats import huggingface as hf
from vivit_jax.models import create_model

REPO = str(paths.ROOT)
LABELS = ['abseiling', 'bowling', 'cooking', 'dancing', 'eating']
TINY_HF = dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=2, intermediate_size=32, image_size=16)
LEGACY = {'layers.': 'encoder.layer.', 'attention.q_proj': 'attention.attention.query',
          'attention.k_proj': 'attention.attention.key', 'attention.v_proj': 'attention.attention.value',
          'attention.o_proj': 'attention.output.dense', 'mlp.fc1': 'intermediate.dense', 'mlp.fc2': 'output.dense'}


def _perturb(model, seed=0):
  """Every weight random (LayerNorm scales around 1), so that no layer is trivially the identity or zero."""
  torch.manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      centre = 1.0 if ('layernorm' in name and name.endswith('weight')) else 0.0
      p.copy_(centre + 0.2 * torch.randn_like(p))
  return model.eval()


def _clip(shape=(2, 8, 16, 16, 3), seed=0):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _hf_logits(model, clip):
  with torch.no_grad():  # Ours: [B, T, H, W, 3]; transformers: [B, T, 3, H, W].
    return model(pixel_values=torch.from_numpy(clip.transpose(0, 1, 4, 2, 3).copy())).logits.numpy()


def _our_logits(config, params, clip):
  return np.asarray(create_model(config).apply({'params': params}, clip, train=False))


def _flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _assert_trees_equal(a, b):
  fa, fb = _flat(a), _flat(b)
  assert fa.keys() == fb.keys()
  for key in fa:
    np.testing.assert_array_equal(fa[key], fb[key], err_msg=key)


@pytest.fixture(scope='module')
def hf_vivit(tmp_path_factory):
  """A randomly initialised, perturbed tiny VivitForVideoClassification saved by save_pretrained."""
  config = transformers.VivitConfig(num_frames=8, tubelet_size=[2, 4, 4], num_labels=5,
                                    id2label=dict(enumerate(LABELS)), **TINY_HF)
  model = _perturb(transformers.VivitForVideoClassification(config))
  path = str(tmp_path_factory.mktemp('hf_vivit'))
  model.save_pretrained(path)
  return model, path


@pytest.fixture(scope='module')
def ours():
  """Our tiny Model 1 (d=12, 2 heads, patches 4x4x2, 8x16x16 clips, 5 classes) with random weights."""
  config = tiny_config('spacetime')
  abstract = jax.eval_shape(lambda: create_model(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 16, 16, 3))))
  return config, jax.tree.map(np.asarray, randomise(abstract['params'], seed=3))


def test_huggingface_vivit_loads_with_identical_logits(hf_vivit):
  model, path = hf_vivit
  assert hf.is_huggingface_dir(path)
  params, info = hf.load_huggingface(path)
  assert info['architecture'] == 'VivitForVideoClassification' and info['model_type'] == 'vivit'
  assert info['label_names'] == LABELS
  overrides = info['config']
  assert overrides['model.patches.size'] == (4, 4, 2) and overrides['dataset_configs.num_frames'] == 8
  assert params['embedding']['kernel'].shape == (2, 4, 4, 3, 16)
  config = restore.config_from_overrides(overrides)
  clip = _clip()
  diff = np.abs(_our_logits(config, params, clip) - _hf_logits(model, clip)).max()
  print(f'HF -> vivit_jax max |logit difference|: {diff:.3g}')
  assert diff <= 1e-4


def test_preprocessing_matches_vivit_image_processor(hf_vivit):
  spec = hf.load_huggingface(hf_vivit[1])[1]['preprocessing']
  assert spec['mean_rgb'] == [191.25] * 3 and spec['std_rgb'] == [63.75] * 3 and spec['value_range'] == [-3, 1]
  frames = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  processed = transformers.VivitImageProcessor()(list(frames), do_resize=False, do_center_crop=False,
                                                 return_tensors='np')['pixel_values'][0]
  expected = ((frames.astype(np.float32) - 191.25) / 63.75).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(processed, expected, atol=1e-5)


def test_transformers_4x_names_load_the_same_params(hf_vivit, tmp_path):
  _, path = hf_vivit
  tensors = safetensors.numpy.load_file(os.path.join(path, hf.WEIGHTS_FILE))
  legacy = {}
  for name, value in tensors.items():
    for new, old in LEGACY.items():
      name = name.replace(new, old)
    legacy[name] = value
  assert 'vivit.encoder.layer.1.attention.attention.query.weight' in legacy
  assert 'vivit.encoder.layer.0.output.dense.bias' in legacy
  safetensors.numpy.save_file(legacy, str(tmp_path / hf.WEIGHTS_FILE), metadata={'format': 'pt'})
  config = json.load(open(os.path.join(path, hf.CONFIG_FILE)))
  json.dump({**config, 'hidden_act': 'gelu'}, open(tmp_path / hf.CONFIG_FILE, 'w'))
  with pytest.warns(UserWarning, match="hidden_act 'gelu'"):
    params, _ = hf.load_huggingface(str(tmp_path))
  _assert_trees_equal(params, hf.load_huggingface(path)[0])


def test_sharded_bfloat16_checkpoint_loads(hf_vivit, tmp_path):
  model, path = hf_vivit
  copy.deepcopy(model).to(torch.bfloat16).save_pretrained(str(tmp_path), max_shard_size='8KB')
  assert os.path.isfile(tmp_path / hf.INDEX_FILE) and not os.path.isfile(tmp_path / hf.WEIGHTS_FILE)
  params, _ = hf.load_huggingface(str(tmp_path))
  assert params['cls'].dtype == ml_dtypes.bfloat16
  _assert_trees_equal(params, jax.tree.map(lambda x: x.astype(ml_dtypes.bfloat16), hf.load_huggingface(path)[0]))


def test_no_qkv_bias_loads_as_zero_biases(tmp_path):
  config = transformers.VivitConfig(num_frames=4, tubelet_size=[2, 4, 4], num_labels=3, qkv_bias=False, **TINY_HF)
  model = _perturb(transformers.VivitForVideoClassification(config))
  model.save_pretrained(str(tmp_path))
  params, info = hf.load_huggingface(str(tmp_path))
  attention = params['Transformer']['encoderblock_0']['MultiHeadDotProductAttention_0']
  np.testing.assert_array_equal(attention['key']['bias'], np.zeros((2, 8)))
  clip = _clip((1, 4, 16, 16, 3))
  ours_logits = _our_logits(restore.config_from_overrides(info['config']), params, clip)
  np.testing.assert_allclose(ours_logits, _hf_logits(model, clip), atol=1e-4)


def test_unknown_parameter_is_named(hf_vivit, tmp_path):
  _, path = hf_vivit
  tensors = safetensors.numpy.load_file(os.path.join(path, hf.WEIGHTS_FILE))
  tensors['vivit.layers.0.attention.rotary.weight'] = np.zeros((2,), np.float32)
  safetensors.numpy.save_file(tensors, str(tmp_path / hf.WEIGHTS_FILE), metadata={'format': 'pt'})
  with open(tmp_path / hf.CONFIG_FILE, 'w') as f:
    f.write(open(os.path.join(path, hf.CONFIG_FILE)).read())
  with pytest.raises(CheckpointError, match=r"unknown Hugging Face vivit parameter 'vivit\.layers\.0\.attention"
                     r"\.rotary\.weight'"):
    hf.load_huggingface(str(tmp_path))


def test_ours_exported_loads_in_transformers_with_identical_logits(ours, tmp_path):
  config, params = ours
  hf.save_huggingface(str(tmp_path), params, config, LABELS)
  saved = json.load(open(tmp_path / hf.CONFIG_FILE))
  assert saved['hidden_act'] == 'gelu_fast' and saved['layer_norm_eps'] == 1e-6
  assert saved['tubelet_size'] == [2, 4, 4]
  model, loading = transformers.VivitForVideoClassification.from_pretrained(str(tmp_path),
                                                                           output_loading_info=True)
  assert not (loading['missing_keys'] or loading['unexpected_keys'] or loading['mismatched_keys'])
  assert model.eval().config.id2label[4] == 'eating'
  clip = _clip(seed=2)
  diff = np.abs(_hf_logits(model, clip) - _our_logits(config, params, clip)).max()
  print(f'vivit_jax -> HF max |logit difference|: {diff:.3g}')
  assert diff <= 1e-4
  reread, info = hf.load_huggingface(str(tmp_path))
  _assert_trees_equal(reread, params)
  # The written preprocessor config reproduces our [-1, 1] zero-centring, not HF's default range.
  assert info['preprocessing']['mean_rgb'] == [127.5] * 3 and info['preprocessing']['std_rgb'] == [127.5] * 3
  frames = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  processed = transformers.VivitImageProcessor.from_pretrained(str(tmp_path))(
      list(frames), do_resize=False, return_tensors='np')['pixel_values'][0]
  np.testing.assert_allclose(processed, (frames / 127.5 - 1).transpose(0, 3, 1, 2), atol=1e-5)


@pytest.mark.parametrize('kind, overrides, problem', [
    ('factorized_encoder', {}, "attention_config.type is 'factorized_encoder'"),
    ('factorized_self_attention_block', {}, "attention_config.type is 'factorized_self_attention_block'"),
    ('spacetime', {'classifier': 'gap'}, "classifier is 'gap'"),
    ('spacetime', {'model__representation_size': 8}, 'representation_size is 8 (expected None)'),
])
def test_export_other_than_model_1_is_refused(kind, overrides, problem, tmp_path):
  config = tiny_config(kind, **overrides)
  abstract = jax.eval_shape(lambda: create_model(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 16, 16, 3))))
  with pytest.raises(ValueError, match='Hugging Face supports ViViT Model 1 only') as error:
    hf.save_huggingface(str(tmp_path / 'out'), abstract['params'], config)
  assert problem in str(error.value)
  assert not os.path.exists(tmp_path / 'out')


@pytest.mark.parametrize('architecture', ['ViTModel', 'ViTForImageClassification'])
def test_vit_loads_as_the_scenic_vit_tree(architecture, tmp_path):
  config = transformers.ViTConfig(patch_size=4, num_labels=3, **TINY_HF)
  model = _perturb(getattr(transformers, architecture)(config))
  model.save_pretrained(str(tmp_path))
  params, info = hf.load_huggingface(str(tmp_path))
  head = 'pre_logits' if architecture == 'ViTModel' else 'head'
  assert sorted(params) == sorted(['embedding', 'cls', 'Transformer', head])
  assert params['embedding']['kernel'].shape == (4, 4, 3, 16)
  assert params['cls'].shape == (1, 1, 16)
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (1, 17, 16)
  assert sorted(params['Transformer']) == ['encoder_norm', 'encoderblock_0', 'encoderblock_1', 'posembed_input']
  block = params['Transformer']['encoderblock_1']
  assert sorted(block) == ['LayerNorm_0', 'LayerNorm_1', 'MlpBlock_0', 'MultiHeadDotProductAttention_0']
  assert block['MultiHeadDotProductAttention_0']['query']['kernel'].shape == (16, 2, 8)
  assert block['MultiHeadDotProductAttention_0']['out']['kernel'].shape == (2, 8, 16)
  assert block['MlpBlock_0']['Dense_0']['kernel'].shape == (16, 32)
  assert params[head]['kernel'].shape == ((16, 16) if head == 'pre_logits' else (16, 3))
  prefix = '' if architecture == 'ViTModel' else 'vit.'
  conv = model.state_dict()[f'{prefix}embeddings.patch_embeddings.projection.weight'].numpy()
  np.testing.assert_array_equal(params['embedding']['kernel'], conv.transpose(2, 3, 1, 0))
  assert info['config']['model.num_layers'] == 2 and info['preprocessing']['mean_rgb'] == [127.5] * 3
  assert checkpoints.load_params(str(tmp_path))['cls'].shape == (1, 1, 16)


def _run_convert(capsys, *argv):
  assert convert_cli.main(list(argv)) == 0
  out = capsys.readouterr().out
  return float(re.findall(r'max \|logit difference\| .*: (\S+)$', out, re.M)[-1]), out


def test_convert_script_between_all_formats(hf_vivit, tmp_path, capsys):
  _, hf_dir = hf_vivit
  jax_dir, scenic_dir, hf_out = (str(tmp_path / n) for n in ('vivit_jax', 'scenic', 'hf'))
  diff, out = _run_convert(capsys, f'--input={hf_dir}', f'--output={jax_dir}', '--to=vivit_jax')
  assert diff <= 1e-4 and 'source: transformers' in out
  diffs = {'HF -> vivit_jax': diff}
  _assert_trees_equal(checkpoints.load_params(jax_dir), hf.load_huggingface(hf_dir)[0])
  metadata = checkpoints.load_metadata(jax_dir)
  assert metadata['preprocessing']['mean_rgb'] == [191.25] * 3 and metadata['label_names'] == LABELS
  assert metadata['config']['model']['hidden_size'] == 16

  diffs['vivit_jax -> scenic'], _ = _run_convert(capsys, f'--input={jax_dir}', f'--output={scenic_dir}',
                                                 '--to=scenic')
  assert diffs['vivit_jax -> scenic'] <= 1e-6  # Our model on both sides (jit vs eager: not bit-identical).
  _assert_trees_equal(checkpoints.load_params(scenic_dir), checkpoints.load_params(jax_dir))
  with pytest.raises(ValueError, match='carries no model config.*--config'):
    convert.convert(scenic_dir, str(tmp_path / 'x'), 'huggingface')

  config_file = tmp_path / 'tiny_hf.py'
  overrides = hf.load_huggingface(hf_dir)[1]['config']
  config_file.write_text(f'from vivit_jax.checkpoints.restore import config_from_overrides\n\n\ndef get_config():\n'
                         f'  return config_from_overrides({overrides!r})\n')
  diff, out = _run_convert(capsys, f'--input={scenic_dir}', f'--output={hf_out}', '--to=huggingface',
                           f'--config={config_file}')
  assert diff <= 1e-4 and 'converted: transformers' in out
  diffs['scenic -> HF'] = diff
  _assert_trees_equal(hf.load_huggingface(hf_out)[0], checkpoints.load_params(scenic_dir))
  print('convert_checkpoint max |logit difference|:', diffs)


def test_convert_script_command_line(ours, tmp_path):
  config, params = ours
  source = str(tmp_path / 'source')
  checkpoints.save_vivit_jax(source, params, {'config': json.loads(config.to_json_best_effort())})
  result = subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'convert_checkpoint.py'),
                           f'--input={source}', f'--output={tmp_path / "hf"}', '--to=huggingface'],
                          capture_output=True, text=True, cwd=REPO, check=False,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Loading weights' not in result.stderr  # transformers' progress bar is library noise (cli/quiet.py).
  diff = float(re.search(r'max \|logit difference\| .*: (\S+)$', result.stdout, re.M).group(1))
  print(result.stdout)
  assert diff <= 1e-4


def test_convert_refuses_image_vit_and_model_2(tmp_path):
  transformers.ViTModel(transformers.ViTConfig(patch_size=4, **TINY_HF)).save_pretrained(str(tmp_path / 'vit'))
  with pytest.raises(ValueError, match='ViTModel has no video classifier'):
    convert.convert(str(tmp_path / 'vit'), str(tmp_path / 'out'), 'vivit_jax')
  config = tiny_config('factorized_encoder')
  abstract = jax.eval_shape(lambda: create_model(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 16, 16, 3))))
  source = str(tmp_path / 'fe')
  checkpoints.save_vivit_jax(source, jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract['params']),
                             {'config': json.loads(config.to_json_best_effort())})
  with pytest.raises(ValueError, match='Model 1 only'):
    convert.convert(source, str(tmp_path / 'fe_hf'), 'huggingface')
