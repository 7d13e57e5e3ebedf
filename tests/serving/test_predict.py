"""Video-file inference: loading a checkpoint with its preprocessing, multi-view and window predictions, bad
files, and scripts/predict.py end to end."""

import importlib.util
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from tests import paths
from tests.tiny import randomise
from tests.train_testing import host_tree, train_config
from vivit_jax import train
from vivit_jax.serving import predict as inference
from vivit_jax.checkpoints import CheckpointError, load_params, save_scenic
from vivit_jax.data.ingest import video_io
from vivit_jax.data.transforms import augment, sampling
from vivit_jax.serving import frame_plan

ROOT = paths.ROOT
FPS = 10
CONFIG_FILE = """
from tests.train_testing import train_config

def get_config():
  return train_config('spacetime', dataset_configs__min_resize=16)
"""


def load_script(name):
  spec = importlib.util.spec_from_file_location(f'_script_{name}', ROOT / 'scripts' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_RUNS = {}


def trained_workdir(tmp_path_factory):
  """A 2-step spacetime run on synthetic 8x16x16 clips, 5 classes, min_resize 16; trained once a session
  (test_export uses it too)."""
  if 'tiny' not in _RUNS:
    workdir = str(tmp_path_factory.mktemp('predict_run'))
    train.train(train_config('spacetime', dataset_configs__min_resize=16), workdir)
    _RUNS['tiny'] = workdir
  return _RUNS['tiny']


@pytest.fixture(scope='module')
def tiny_workdir(tmp_path_factory):
  return trained_workdir(tmp_path_factory)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  """Two short mp4s (24x32), a long one, a zero-byte file and a garbage file, in one directory."""
  root = tmp_path_factory.mktemp('videos')
  rng = np.random.default_rng(0)
  for name, frames in (('a.mp4', 20), ('b.mp4', 20), ('long.mp4', 60)):
    video_io.write_video(str(root / name), rng.integers(0, 256, (frames, 24, 32, 3), dtype=np.uint8), fps=FPS)
  (root / 'empty.mp4').write_bytes(b'')
  (root / 'garbage.avi').write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
  (root / 'notes.txt').write_text('not a video')
  return root


@pytest.fixture(scope='module')
def predictor(tiny_workdir):
  return inference.load_for_inference(tiny_workdir)


def hand_probabilities(predictor, path):
  """Decode, sample 4 views x 3 crops, normalise and run the model: written out step by step."""
  frames = video_io.decode_video(str(path), fps=FPS, short_side=16)
  starts = sampling.multi_view_indices(len(frames), 8, 2, 4, mode='wrap').numpy()
  views = [augment.eval_preprocess(tf.constant(frames[i]), min_resize=16, crop_size=16, num_crops=3)
           for i in starts]
  inputs = augment.normalize(tf.concat(views, 0), zero_centering=True).numpy()
  assert inputs.shape == (12, 8, 16, 16, 3)
  logits = predictor.model.apply({'params': predictor.params}, jnp.asarray(inputs), train=False)
  return np.asarray(jax.nn.softmax(jnp.mean(logits, axis=0)))


def test_loads_config_spec_labels_and_params_from_the_checkpoint(tiny_workdir, predictor):
  assert predictor.spec['min_resize'] == 16 and predictor.spec['crop_size'] == 16
  assert predictor.spec['value_range'] == [-1.0, 1.0]
  assert predictor.label_names[0].startswith('direction_') and len(predictor.label_names) == 5
  assert (predictor.num_test_clips, predictor.num_crops, predictor.batch_size) == (4, 3, 12)
  saved = load_params(tiny_workdir)
  for a, b in zip(jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(host_tree(predictor.params))):
    np.testing.assert_array_equal(a, b)


def test_top_k_is_sorted_valid_and_matches_a_hand_computation(predictor, videos):
  top = predictor.predict_video(str(videos / 'a.mp4'), top_k=3)
  assert len(top) == 3
  probs = [p for _, p in top]
  assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
  assert all(label in predictor.label_names for label, _ in top)
  original = predictor.params
  predictor.params = randomise(original)  # Strong weights, so any preprocessing difference shows.
  try:
    expected = hand_probabilities(predictor, videos / 'a.mp4')
    full = predictor.predict_video(str(videos / 'a.mp4'), top_k=5)
  finally:
    predictor.params = original
  got = np.array([dict(full)[name] for name in predictor.label_names])
  np.testing.assert_allclose(got, expected, atol=1e-6)
  assert expected.max() > 0.3  # The comparison is not between two near-uniform vectors.
  np.testing.assert_allclose(got.sum(), 1.0, atol=1e-5)


def test_unreadable_files_are_reported_and_the_others_predicted(predictor, videos):
  empty = inference.predict_file(predictor, str(videos / 'empty.mp4'))
  garbage = inference.predict_file(predictor, str(videos / 'garbage.avi'))
  assert 'empty' in empty['error'] and 'top_k' not in empty
  assert garbage['error']
  good = inference.predict_file(predictor, str(videos / 'b.mp4'), top_k=2)
  assert [set(e) for e in good['top_k']] == [{'label', 'probability'}] * 2


def test_window_mode_gives_one_prediction_per_window(predictor, videos):
  windows = predictor.predict_video(str(videos / 'long.mp4'), window=2.0, top_k=2)
  assert [(w['start_s'], w['end_s']) for w in windows] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
  assert all(len(w['top_k']) == 2 for w in windows)
  assert len({tuple(p for _, p in w['top_k']) for w in windows}) == 3  # Different clips, different outputs.


def test_window_clips_are_centred_and_stay_inside_the_video():
  windows = frame_plan.window_indices(60, fps=10, window_s=2.0, num_frames=8, stride=2, mode='wrap')
  spans = [(w[2][0], w[2][-1]) for w in windows]
  assert spans == [(2, 16), (22, 36), (42, 56)]  # 15 frames centred in each 20-frame window.
  clamped = frame_plan.window_indices(30, fps=10, window_s=0.5, num_frames=8, stride=2, mode='wrap')
  assert len(clamped) == 6 and clamped[0][2][0] == 0 and clamped[-1][2][-1] == 29
  short = frame_plan.window_indices(10, fps=10, window_s=2.0, num_frames=8, stride=2, mode='wrap')
  assert [list(w[2]) for w in short] == [[0, 2, 4, 6, 8, 0, 2, 4]]  # Shorter than a clip: wrapped.


def test_overrides_change_the_views(tiny_workdir, videos):
  one = inference.load_for_inference(
      tiny_workdir, overrides=['dataset_configs.num_test_clips=1', 'dataset_configs.do_three_spatial_crops=False'])
  assert (one.num_test_clips, one.num_crops, one.batch_size) == (1, 1, 1)
  assert len(one.predict_video(str(videos / 'a.mp4'), top_k=5)) == 5


def test_label_map_names_the_classes(tiny_workdir, tmp_path):
  path = tmp_path / 'label_map.json'
  path.write_text(json.dumps({'names': list('abcde'), 'index': {}}))
  assert inference.load_for_inference(tiny_workdir, label_map=str(path)).label_names == list('abcde')
  path.write_text(json.dumps({'names': ['a', 'b']}))
  with pytest.raises(CheckpointError, match='2 label names for a model with 5 classes'):
    inference.load_for_inference(tiny_workdir, label_map=str(path))


def test_foreign_checkpoint_needs_a_config(predictor, tmp_path, videos):
  checkpoint = str(tmp_path / 'checkpoint')
  save_scenic(checkpoint, host_tree(predictor.params))
  with pytest.raises(CheckpointError, match='--config'):
    inference.load_for_inference(checkpoint)
  config = tmp_path / 'tiny_config.py'
  config.write_text(CONFIG_FILE)
  foreign = inference.load_for_inference(checkpoint, config_path=str(config))
  assert foreign.label_names == [f'class_{i}' for i in range(5)]
  expected = predictor.predict_video(str(videos / 'a.mp4'))
  got = foreign.predict_video(str(videos / 'a.mp4'))
  assert [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-6)


def test_cli_predicts_a_directory_and_reports_bad_files(tiny_workdir, videos, tmp_path, capsys):
  script = load_script('predict')
  output = tmp_path / 'predictions.jsonl'
  code = script.main([f'--checkpoint={tiny_workdir}', '--top_k=2', f'--output={output}', str(videos),
                      '--config.dataset_configs.num_test_clips=2'])
  assert code == 1  # Two files failed; the others were predicted.
  results = inference.load_predictions(str(output))
  assert sorted(os.path.basename(p) for p in results) == ['a.mp4', 'b.mp4', 'empty.mp4', 'garbage.avi',
                                                          'long.mp4']
  assert 'error' in results[str(videos / 'empty.mp4')] and 'error' in results[str(videos / 'garbage.avi')]
  assert len(results[str(videos / 'a.mp4')]['top_k']) == 2 and results[str(videos / 'long.mp4')]['frames'] == 60
  captured = capsys.readouterr()
  assert '[5/5]' in captured.err and 'files/s' in captured.err
  assert f'error: {videos / "empty.mp4"}: empty file' in captured.err and 'error:' not in captured.out
  assert results[str(videos / 'a.mp4')]['top_k'][0]['label'] in captured.out


def test_cli_exit_codes(tiny_workdir, videos, tmp_path):
  script = load_script('predict')
  assert script.main([f'--checkpoint={tiny_workdir}', str(videos / 'empty.mp4')]) == 1
  assert script.main([f'--checkpoint={tmp_path / "missing"}', str(videos / 'a.mp4')]) == 2
  windows = tmp_path / 'windows.jsonl'
  assert script.main([f'--checkpoint={tiny_workdir}', '--window=3', f'--output={windows}',
                      str(videos / 'long.mp4')]) == 0
  assert len(inference.load_predictions(str(windows))[str(videos / 'long.mp4')]['windows']) == 2
