"""vivit_jax/experiments/image_pretrain.py: the image ViT's Scenic tree, occupancy targets, the saved checkpoint, and
initialising configs/synthetic.py's Model 2 from it (directly and through the trainer)."""

import logging
import os

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

from tests import paths
from vivit_jax import train
from vivit_jax.experiments import image_pretrain
from vivit_jax.experiments.ablation import spec as spec_lib
from vivit_jax.experiments.ablation import sweep as sweep_lib
from vivit_jax.checkpoints import detect_format, init_from_pretrained, load_params
from vivit_jax.config import import_config_file, load_config, validate_config
from vivit_jax.models import create_model, encoder, heads

ROOT = str(paths.ROOT)
ABLATION = os.path.join(ROOT, 'configs', 'ablations', 'synthetic_init.py')
synthetic = import_config_file(os.path.join(ROOT, 'configs', 'synthetic.py'))


def _shapes(tree):
  return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(tree, sep='/').items()}


def _scenic_vit_shapes(d=64, mlp=128, heads=4, layers=2, tokens=16, classes=64, patch=8):
  """Scenic's ViT tree, written out by hand."""
  shapes = {'embedding/kernel': (patch, patch, 3, d), 'embedding/bias': (d,), 'cls': (1, 1, d),
            'Transformer/posembed_input/pos_embedding': (1, 1 + tokens, d),
            'Transformer/encoder_norm/scale': (d,), 'Transformer/encoder_norm/bias': (d,),
            'head/kernel': (d, classes), 'head/bias': (classes,)}
  for i in range(layers):
    block = f'Transformer/encoderblock_{i}'
    for norm in ('LayerNorm_0', 'LayerNorm_1'):
      shapes.update({f'{block}/{norm}/scale': (d,), f'{block}/{norm}/bias': (d,)})
    for name in ('query', 'key', 'value'):
      shapes.update({f'{block}/MultiHeadDotProductAttention_0/{name}/kernel': (d, heads, d // heads),
                     f'{block}/MultiHeadDotProductAttention_0/{name}/bias': (heads, d // heads)})
    shapes.update({f'{block}/MultiHeadDotProductAttention_0/out/kernel': (heads, d // heads, d),
                   f'{block}/MultiHeadDotProductAttention_0/out/bias': (d,),
                   f'{block}/MlpBlock_0/Dense_0/kernel': (d, mlp), f'{block}/MlpBlock_0/Dense_0/bias': (mlp,),
                   f'{block}/MlpBlock_0/Dense_1/kernel': (mlp, d), f'{block}/MlpBlock_0/Dense_1/bias': (d,)})
  return shapes


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
  """(path, params) of an image ViT pretrained for 3 steps on the frames of 4 videos."""
  path = str(tmp_path_factory.mktemp('pretrained') / 'vit_synthetic')
  result = image_pretrain.pretrain_image_vit(path, steps=3, batch_size=8, num_videos=4, eval_videos=2, log=None)
  assert result['path'] == path and result['steps'] == 3
  assert 0.0 <= result['frame_accuracy'] <= result['cell_accuracy'] <= 1.0
  return path, load_params(path)


def test_spec_matches_the_spatial_encoder_of_configs_synthetic():
  assert image_pretrain.spec_from_config(synthetic.get_config()) == image_pretrain.ImageViTSpec()


def test_image_vit_tree_is_scenics_vit_tree():
  model = image_pretrain.create_image_vit(image_pretrain.ImageViTSpec())
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3), np.float32))['params']
  assert _shapes(params) == _scenic_vit_shapes()


class _ScenicImageViT(image_pretrain.ImageViT):
  """Scenic's ViT as it is written: a strided convolution cuts the patches, every token goes through every block."""

  @nn.compact
  def __call__(self, images, *, train=False):
    x = nn.Conv(self.hidden_size, self.patch, strides=self.patch, padding='VALID', name='embedding')(images)
    b, h, w, d = x.shape
    x = heads.add_class_token(self, x.reshape(b, h * w, d), 'cls')
    x = encoder.Encoder(self.num_layers, self.mlp_dim, self.num_heads, name='Transformer')(x, train=train)
    return nn.Dense(self.num_classes, name='head')(heads.pool(x, 'token'))


def test_the_image_vit_computes_scenics_vit_with_the_patches_as_a_matmul_and_the_class_token_alone_at_the_end():
  spec = image_pretrain.ImageViTSpec()
  ours = image_pretrain.create_image_vit(spec)
  scenic = _ScenicImageViT(**{f: getattr(ours, f) for f in ('num_classes', 'hidden_size', 'num_heads', 'mlp_dim',
                                                            'num_layers', 'patch')})
  images = jax.random.uniform(jax.random.PRNGKey(1), (8, 32, 32, 3), minval=-1.0, maxval=1.0)
  targets = (jax.random.uniform(jax.random.PRNGKey(2), (8, 64)) > 0.8).astype(np.float32)
  params = jax.jit(scenic.init)(jax.random.PRNGKey(0), images[:1])['params']  # A head that is not zero.
  assert _shapes(params) == _shapes(jax.eval_shape(ours.init, jax.random.PRNGKey(0), images[:1])['params'])

  def compiled(model):
    def loss(p):
      logits = model.apply({'params': p}, images)
      return optax.sigmoid_binary_cross_entropy(logits, targets).mean(), logits
    return jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(params).compile()

  ours_step, scenic_step = compiled(ours), compiled(scenic)
  ((ours_loss, ours_logits), ours_grads), ((scenic_loss, scenic_logits), scenic_grads) = (
      ours_step(params), scenic_step(params))
  np.testing.assert_allclose(ours_logits, scenic_logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ours_loss, scenic_loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), ours_grads, scenic_grads)
  # The last block computes the class token alone: fewer FLOPs than every token through it.
  assert ours_step.cost_analysis()['flops'] < 0.8 * scenic_step.cost_analysis()['flops']


def test_occupancy_marks_the_cells_a_square_covers_with_wrapping():
  positions = np.array([[[0.0, 0.0], [6.4, 30.0]]])  # Corners (0, 0) and (6, 30): the second wraps.
  cells = image_pretrain.occupancy(positions, 32, 32, object_size=4, grid=4).reshape(4, 4)
  expected = np.zeros((4, 4), np.float32)
  expected[0, 0] = 1.0  # Rows 0-3, columns 0-3.
  expected[0:2, 3] = expected[0:2, 0] = 1.0  # Rows 6-9, columns 30, 31, 0, 1.
  np.testing.assert_array_equal(cells, expected)


def test_frame_dataset_scales_to_the_trainers_range_and_labels_every_frame():
  data = image_pretrain.frame_dataset(image_pretrain.ImageViTSpec(), 'train', 2)
  assert data['images'].shape == (16, 32, 32, 3) and data['targets'].shape == (16, 64)
  assert data['images'].min() >= -1.0 and data['images'].max() <= 1.0
  assert np.all(data['targets'].sum(axis=1) >= 1)  # Every frame shows a square.


def test_frame_metrics():
  targets = np.array([[1, 0], [0, 1]], np.float32)
  logits = np.array([[3.0, -1.0], [2.0, 4.0]])
  metrics = image_pretrain.frame_metrics(logits, targets)
  assert metrics['frame_accuracy'] == 0.5 and metrics['cell_accuracy'] == 0.75
  assert metrics['cell_f1'] == pytest.approx(2 * 2 / (3 + 2))


def test_the_saved_file_is_a_scenic_checkpoint(pretrained):
  path, params = pretrained
  assert detect_format(path) == 'scenic'
  assert _shapes(params) == _scenic_vit_shapes()
  assert not np.allclose(params['embedding']['kernel'], 0.0)


def _central_frame_config(path):
  config = synthetic.get_config()
  config.init_from.checkpoint_path = path
  config.model.temporal_encoding_config.kernel_init_method = 'central_frame_initializer'
  return validate_config(config)


def test_init_from_pretrained_loads_the_spatial_encoder_with_a_central_frame_kernel(pretrained):
  path, source = pretrained
  config = _central_frame_config(path)
  model = create_model(config)
  fresh = model.init(jax.random.PRNGKey(1), np.zeros((1, 8, 32, 32, 3), np.float32))['params']
  params = init_from_pretrained(jax.device_get(fresh), source, config, log=None)
  kernel = params['embedding']['kernel']
  assert kernel.shape == (4, 8, 8, 3, 64)
  np.testing.assert_array_equal(kernel[2], source['embedding']['kernel'])
  np.testing.assert_array_equal(kernel[[0, 1, 3]], 0.0)
  np.testing.assert_array_equal(params['embedding']['bias'], source['embedding']['bias'])
  jax.tree.map(np.testing.assert_array_equal, params['SpatialTransformer']['encoderblock_1'],
               source['Transformer']['encoderblock_1'])
  np.testing.assert_array_equal(params['SpatialTransformer']['posembed_input']['pos_embedding'],
                                source['Transformer']['posembed_input']['pos_embedding'])
  np.testing.assert_array_equal(params['cls_SpatialTransformer'], source['cls'])
  jax.tree.map(np.testing.assert_array_equal, params['TemporalTransformer'],
               jax.device_get(fresh)['TemporalTransformer'])


def test_the_sweep_has_random_and_central_frame_entries():
  sweep = spec_lib.load_ablation(ABLATION)
  names = [e.name for e in sweep.entries]
  assert names[:2] == ['random', 'central_frame']
  central = sweep_lib.entry_config(sweep, sweep.entries[1])
  assert central.init_from.checkpoint_path == 'runs/pretrained/vit_synthetic'
  assert central.model.temporal_encoding_config.kernel_init_method == 'central_frame_initializer'
  assert sweep_lib.entry_config(sweep, sweep.entries[0]).init_from.checkpoint_path is None


def test_the_seeds_preset_runs_every_start_at_every_learning_rate_and_seed_of_the_default_config():
  module = import_config_file(ABLATION)
  sweep = spec_lib.load_ablation(ABLATION + ':seeds')
  assert sweep.name == 'synthetic_init_seeds'
  default = load_config(ABLATION)
  runs = set()
  for entry in sweep.entries:
    config = sweep_lib.entry_config(sweep, entry)
    start = 'random'
    if config.init_from.checkpoint_path:
      start = config.model.temporal_encoding_config.kernel_init_method.replace('_initializer', '')
    rate, seed = config.lr_configs.base_learning_rate, config.rng_seed
    assert entry.name == f'{start}_lr{rate:g}_seed{seed}'
    runs.add((start, rate, seed))
    # Nothing else moves: the entry is the default config with its start, rate and seed.
    config.lr_configs.base_learning_rate, config.rng_seed = default.lr_configs.base_learning_rate, default.rng_seed
    if start == 'random':
      assert config.to_dict() == default.to_dict(), entry.name
  assert runs == {(start, rate, seed) for start in ('random', 'central_frame', 'average_frame')
                  for rate in module.LEARNING_RATES for seed in module.SEEDS}
  assert module.LEARNING_RATES[0] == default.lr_configs.base_learning_rate
  assert len(sweep.entries) == 3 * len(module.LEARNING_RATES) * len(module.SEEDS) == 36


def test_two_trainer_steps_from_the_pretrained_file(pretrained, tmp_path, caplog):
  path, _ = pretrained
  overrides = [f'init_from.checkpoint_path={path}',
               'model.temporal_encoding_config.kernel_init_method=central_frame_initializer',
               'num_training_steps=2', 'batch_size=8', 'eval_batch_size=8', 'log_summary_steps=1',
               'dataset_configs.examples_per_subset.train=16', 'dataset_configs.examples_per_subset.validation=8',
               'dataset_configs.prefetch_to_device=1', 'lr_configs.warmup_steps=1.0',
               'dataset_configs.examples_per_subset.test=8']  # Not the file's 512 clips x 3 crops at the end.
  config = load_config(ABLATION, overrides)
  with caplog.at_level(logging.INFO):
    results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['step'] == 2
  assert 0.0 <= results['metrics']['valid/accuracy'] <= 1.0
  assert f'Initialised the params from {path}' in caplog.text
  assert 'inflated to 4 frames by central_frame_initializer' in caplog.text
