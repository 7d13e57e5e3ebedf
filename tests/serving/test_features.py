"""Video features (vivit_jax/serving/features.py): pre-logits for every variant, averaged over the views, from a
split or from video files, written to a .npz that loads without pickle, and good enough for retrieval."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from tests.tiny import randomise, tiny_config
from tests.train_testing import train_config
from vivit_jax import tasks, train
from vivit_jax.config import load_config
from vivit_jax.data import Views, create_pipeline
from vivit_jax.data.ingest import video_io
from vivit_jax.data.transforms import augment, sampling
from vivit_jax.models import create_model
from vivit_jax.serving import features

FPS = 10
CLASSES = 5
VALIDATION = 40
_RUNS = {}


def retrieval_config():
  """Model 1 with a 16-wide tanh representation, 40 steps on plain-background synthetic motion (2 pixels a frame):
  enough for its features to tell the directions apart; 40 validation videos, min_resize 16 for 24x32 files."""
  return train_config('spacetime', num_training_steps=40, optimizer='adamw', model__representation_size=16,
                      lr_configs__base_learning_rate=5e-3, dataset_configs__min_resize=16,
                      dataset_configs__synthetic_speed=2.0, dataset_configs__synthetic_background='plain',
                      dataset_configs__examples_per_subset__train=4096,
                      dataset_configs__examples_per_subset__validation=VALIDATION)


def trained_workdir(tmp_path_factory):
  """`retrieval_config` trained once a session (tests/cli/test_features.py uses it too)."""
  if 'retrieval' not in _RUNS:
    workdir = str(tmp_path_factory.mktemp('features_run'))
    train.train(retrieval_config(), workdir)
    _RUNS['retrieval'] = workdir
  return _RUNS['retrieval']


def write_videos(root):
  """Two short mp4s (24x32) in a folder named after class 0, and a corrupt one beside them."""
  rng = np.random.default_rng(0)
  folder = root / class_names()[0]
  folder.mkdir(parents=True, exist_ok=True)
  for name, frames in (('a.mp4', 20), ('b.mp4', 26)):
    video_io.write_video(str(folder / name), rng.integers(0, 256, (frames, 24, 32, 3), dtype=np.uint8), fps=FPS)
  (root / 'corrupt.mp4').write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
  return root


def class_names():
  """The synthetic data's class names, which the checkpoint saves."""
  return create_pipeline(retrieval_config()).label_names


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return trained_workdir(tmp_path_factory)


@pytest.fixture(scope='module')
def split_table(workdir):
  return features.extract_split(features.load(workdir), 'validation')


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  return write_videos(tmp_path_factory.mktemp('feature_videos'))


def prelogits_by_hand(config, params, views):
  """The config's own `model.return_prelogits` switch, on views [V, T, H, W, 3], averaged."""
  direct = create_model(load_config(config, overrides=['model.return_prelogits=True']))
  return np.asarray(direct.apply({'params': params}, jnp.asarray(views), train=False)).mean(axis=0)


def test_split_features_retrieve_their_class_well_above_chance(split_table):
  assert split_table.features.shape == (VALIDATION, 16) and split_table.features.dtype == np.float32
  np.testing.assert_array_equal(split_table.labels, np.arange(VALIDATION) % CLASSES)  # Synthetic: index mod C.
  assert split_table.ids[:2] == ['validation/00', 'validation/01'] and len(set(split_table.ids)) == VALIDATION
  result = features.retrieval_accuracy(split_table.features, split_table.labels)
  assert result['chance'] == pytest.approx(7 / 39)  # 8 videos a class: 7 of the 39 others share it.
  assert result['top1'] >= 0.5 and result['top1'] >= result['chance'] + 0.3, result
  assert split_table.meta['views'] == '4x3' and split_table.meta['feature'] == 'pre_logits'


def test_split_features_equal_the_models_prelogits_averaged_over_the_views(workdir, split_table):
  restored = features.load(workdir)
  pipeline = create_pipeline(restored.config)
  n = 7
  clip = pipeline.examples('validation', np.array([n]))['inputs']
  views = pipeline.views(clip, Views(4, 3))[0]  # [12, T, H, W, 3], as the evaluation's multi-view pass.
  expected = prelogits_by_hand(restored.config, restored.params, views)
  np.testing.assert_allclose(split_table.features[n], expected, atol=2e-5)
  # Projected, the feature gives the mean of the views' logits: what the evaluation scores.
  logits = restored.model.apply({'params': restored.params}, jnp.asarray(views), train=False)
  head = restored.params['output_projection']
  projected = split_table.features[n] @ np.asarray(head['kernel']) + np.asarray(head['bias'])
  np.testing.assert_allclose(projected, np.asarray(logits).mean(axis=0), atol=2e-5)


def test_one_view_is_the_centre_clip(workdir, split_table):
  restored = features.load(workdir, overrides=features.view_overrides(Views(1, 1)))
  table = features.extract_split(restored, 'validation', batch_size=8)
  assert table.meta['views'] == '1x1' and table.meta['num_views'] == 1
  clip = create_pipeline(restored.config).examples('validation', np.array([3]))['inputs']
  np.testing.assert_allclose(table.features[3], prelogits_by_hand(restored.config, restored.params, clip), atol=2e-5)
  assert not np.allclose(table.features, split_table.features, atol=1e-3)  # Not the 4x3 views' mean.


def test_files_give_the_prelogits_of_their_views_and_a_corrupt_one_is_reported(workdir, videos):
  restored = features.load(workdir, for_files=True)
  paths = [str(p) for p in sorted(videos.rglob('*.mp4'))]
  seen = []
  table = features.extract_files(restored, paths, fps=FPS, on_file=lambda i, path, result: seen.append(path))
  assert seen == paths  # Every file reported, the corrupt one included.
  good = [p for p in paths if 'corrupt' not in p]
  assert table.ids == good and list(table.failed) == [str(videos / 'corrupt.mp4')]
  assert 'not a video' in table.failed[str(videos / 'corrupt.mp4')]
  np.testing.assert_array_equal(table.labels, [0, 0])  # Their folder is class 0's name.
  frames = video_io.decode_video(good[1], fps=FPS, short_side=16)
  starts = sampling.multi_view_indices(len(frames), 8, 2, 4, mode='wrap').numpy()
  views = augment.normalize(tf.concat([augment.eval_preprocess(tf.constant(frames[i]), min_resize=16, crop_size=16,
                                                               num_crops=3) for i in starts], 0),
                            zero_centering=True).numpy()
  assert views.shape == (12, 8, 16, 16, 3)
  expected = prelogits_by_hand(restored.config, restored.params, views)
  np.testing.assert_allclose(table.features[1], expected, atol=2e-5)
  assert not np.allclose(table.features[0], table.features[1])


def test_the_npz_loads_without_pickle_and_is_replaced_whole(split_table, tmp_path):
  path = tmp_path / 'out' / 'features.npz'
  features.write_features(str(path), split_table)
  with np.load(path, allow_pickle=False) as data:
    np.testing.assert_array_equal(data['features'], split_table.features)
    np.testing.assert_array_equal(data['labels'], split_table.labels)
    assert list(data['ids']) == split_table.ids and len(data['label_names']) == CLASSES
    assert str(data['views']) == '4x3' and int(data['num_views']) == 12 and str(data['source']) == 'split:validation'
    assert data['failed_ids'].shape == (0,)
  smaller = features.FeatureTable(ids=['x'], labels=np.array([-1]), features=np.ones((1, 3)), label_names=['c'],
                                  head_names=[], meta={'views': '1x1'}, failed={'y.mp4': 'empty file'})
  features.write_features(str(path), smaller)
  loaded = features.load_features(str(path))
  assert loaded['views'] == '1x1' and list(loaded['failed_ids']) == ['y.mp4'] and loaded['features'].shape == (1, 3)
  assert os.listdir(path.parent) == ['features.npz']  # No temporary file left behind.


@pytest.mark.parametrize('kind,settings', [
    ('spacetime', {}), ('factorized_self_attention_block', {}), ('factorized_dot_product_attention', {}),
    ('factorized_encoder', {}), ('factorized_encoder', {'model__representation_size': 7}),
    ('factorized_encoder', {'model__attention_config__spatial_only_baseline': True}),
    ('spacetime', {'model__return_preclassifier': True, 'model__classifier': 'gap'}),
    ('factorized_encoder', {'model_name': tasks.MULTIHEAD, 'dataset_configs__class_splits': [2, 3],
                            'dataset_configs__split_names': ['noun', 'verb']}),
])
def test_every_variant_gives_the_input_of_its_output_projection(kind, settings):
  config = tiny_config(kind, **settings)
  model = create_model(config)
  full = model.clone(return_preclassifier=False) if config.model.return_preclassifier else model  # With its head.
  video = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 8, 16, 16, 3)), jnp.float32)
  params = randomise(jax.eval_shape(lambda: full.init(jax.random.PRNGKey(0), video, train=False))['params'])
  both = jax.jit(lambda p, x: (features.prelogits_model(model).apply({'params': p}, x, train=False),
                                full.apply({'params': p}, x, train=False)))  # One compilation: fast.
  prelogits, logits = both(params, video)
  assert prelogits.shape == (2, features.feature_size(config))
  head = params['output_projection']
  np.testing.assert_allclose(prelogits @ head['kernel'] + head['bias'], logits, atol=1e-5)
  if config.model.representation_size:
    assert float(jnp.abs(prelogits).max()) < 1.0  # Through the tanh representation layer.


def test_labels_for_every_task():
  multi_head = tasks.Task(tasks.MULTIHEAD, (tasks.Head('noun', 0, 2), tasks.Head('verb', 2, 5)))
  one_hot = np.array([[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]], np.float32)
  np.testing.assert_array_equal(features.labels_of(one_hot, multi_head), [[1, 2], [-1, -1]])
  multi_label = tasks.Task(tasks.MULTILABEL, (tasks.Head('', 0, 3),))
  np.testing.assert_array_equal(features.labels_of(np.array([[1, 0, 1]]), multi_label), [[1, 0, 1]])
  single = tasks.Task(tasks.CLASSIFICATION, (tasks.Head('', 0, 3),))
  np.testing.assert_array_equal(features.labels_of(np.eye(3)[[2, 0]], single), [2, 0])
  assert features.file_label('/x/cat/a.mp4', single, ['dog', 'cat', 'cow']) == 1
  assert features.file_label('/x/other/a.mp4', single, ['dog', 'cat', 'cow']) == -1
  assert features.file_label('/x/cat/a.mp4', single, None) == -1
  assert features.file_label('/x/noun/a.mp4', multi_head, ['noun'] * 5).tolist() == [-1, -1]


def test_retrieval_accuracy_by_hand():
  x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 1], [1, 0.05]])
  labels = np.array([0, 0, 1, 1, -1])  # The unlabelled video is left out.
  result = features.retrieval_accuracy(x, labels)
  assert result == {'top1': 1.0, 'chance': pytest.approx(1 / 3), 'videos': 4}
  assert features.retrieval_accuracy(x[:4], np.array([0, 1, 0, 1]))['top1'] == 0.0
  with pytest.raises(ValueError, match='one label per video'):
    features.retrieval_accuracy(x, np.zeros((5, 2), int))
