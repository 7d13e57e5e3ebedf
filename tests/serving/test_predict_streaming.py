"""Prediction from streamed frames: only the frames the views need are converted and held, and the results equal
those of decoding every frame first (the former path, written out here); long, truncated and undeclared-length
videos; the JSON Lines output."""

import json
import math

import numpy as np
import pytest

from tests.serving.test_predict import trained_workdir
from tests.tiny import randomise
from vivit_jax.data.ingest import video_io
from vivit_jax.data.transforms import sampling
from vivit_jax.serving import frame_plan
from vivit_jax.serving import predict as inference

FPS = 10
SHORT_SIDE = 16  # The tiny checkpoint's min_resize.


@pytest.fixture(scope='module')
def predictor(tmp_path_factory):
  """The tiny checkpoint with strong random weights, so that any difference in the frames shows."""
  loaded = inference.load_for_inference(trained_workdir(tmp_path_factory))
  loaded.params = randomise(loaded.params)
  return loaded


def write(path, num_frames, fps=FPS, seed=0):
  frames = np.random.default_rng(seed).integers(0, 256, (num_frames, 24, 32, 3), dtype=np.uint8)
  video_io.write_video(str(path), frames, fps=fps)
  return str(path)


def truncate(path, fraction=0.5):
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:int(len(data) * fraction)])
  return path


def full_decode_probabilities(predictor, path, window=None):
  """What predict_video returned before streaming: decode every frame, sample, run all views in one go."""
  frames = video_io.decode_video(path, fps=FPS, short_side=SHORT_SIDE)
  spec = predictor.spec
  if window is None:
    indices = sampling.multi_view_indices(len(frames), spec['num_frames'], spec['stride'], predictor.num_test_clips,
                                          mode=predictor.short_video_mode).numpy()
    return [predictor.probabilities(predictor.logits(predictor.views(frames, indices)))]
  windows = frame_plan.window_indices(len(frames), FPS, window, spec['num_frames'], spec['stride'],
                                      predictor.short_video_mode)
  logits = predictor.logits(predictor.views(frames, np.stack([w[2] for w in windows])))
  return [predictor.probabilities(views) for views in logits.reshape(len(windows), predictor.num_crops, -1)]


def probabilities_of(predictor, result, window=None):
  """Per-class probabilities [C] of each prediction of a result (all classes asked for)."""
  tops = [result] if window is None else [w['top_k'] for w in result]
  return [np.array([dict(top)[name] for name in predictor.label_names]) for top in tops]


def assert_same(predictor, prediction, path, window=None):
  expected = full_decode_probabilities(predictor, path, window)
  got = probabilities_of(predictor, prediction.result, window)
  assert len(got) == len(expected)
  for g, e in zip(got, expected):
    np.testing.assert_allclose(g, e, atol=1e-6)
  # Not two near-uniform vectors: some class at least 1.25x the uniform probability (a margin, not a model's score).
  assert max(e.max() for e in expected) > 1.25 / len(predictor.label_names)


def test_stream_video_converts_only_the_selected_frames_and_they_equal_decode_video(tmp_path):
  path = write(tmp_path / 'v.mp4', 37, fps=30)
  full = video_io.decode_video(path, fps=FPS, short_side=SHORT_SIDE)
  declared, keep = [], {0, 5, len(full) - 1}
  info = video_io.VideoInfo()
  got = list(video_io.stream_video(path, lambda d: declared.append(d) or keep, fps=FPS, short_side=SHORT_SIDE,
                                   info=info))
  assert declared == [len(full)] == [13]  # 37 frames at 30 fps: 1.23 s, 13 frames at 10 fps.
  assert [i for i, _ in got] == list(range(len(full)))
  for i, frame in got:
    if i in keep:
      np.testing.assert_array_equal(frame, full[i])
    else:
      assert frame is None
  assert info.complete and info.declared_frames == 37 and not info.partial


def test_stream_video_rejects_bad_files_with_the_reasons_of_decode_video(tmp_path):
  (tmp_path / 'empty.mp4').write_bytes(b'')
  (tmp_path / 'garbage.mp4').write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
  (tmp_path / 'text.avi').write_text('not a video\n' * 100)
  for name in ('missing.mp4', 'empty.mp4', 'garbage.mp4', 'text.avi'):
    path = str(tmp_path / name)
    with pytest.raises(video_io.VideoDecodeError) as expected:
      video_io.decode_video(path, fps=FPS)
    with pytest.raises(video_io.VideoDecodeError) as streamed:
      list(video_io.stream_video(path, lambda d: (), fps=FPS))
    assert streamed.value.reason == expected.value.reason and streamed.value.path == path


@pytest.mark.parametrize('extension,window', [('.mp4', None), ('.mkv', None), ('.avi', None), ('.mp4', 1.0),
                                              ('.webm', 0.7)])
def test_streamed_predictions_equal_the_full_decode(predictor, tmp_path, extension, window):
  path = write(tmp_path / f'v{extension}', 45, fps=15)  # 3 s: 30 frames at 10 fps.
  prediction = predictor.predict_stream(path, top_k=5, window=window)
  assert (prediction.frames, prediction.passes) == (30, 1)  # The declared length was right: one decode.
  assert_same(predictor, prediction, path, window)


def test_a_short_video_wraps_as_before(predictor, tmp_path):
  path = write(tmp_path / 'short.mp4', 6)  # Shorter than a clip's span of 15 frames.
  for window in (None, 0.2):
    assert_same(predictor, predictor.predict_stream(path, top_k=5, window=window), path, window)


def test_a_long_video_holds_only_the_frames_its_views_need(predictor, tmp_path, monkeypatch):
  path = write(tmp_path / 'long.mp4', 600)  # One minute.
  converted = []
  to_rgb = video_io._to_rgb  # pylint: disable=protected-access

  def counting(frame, *args, **kwargs):
    converted.append(frame.pts)
    return to_rgb(frame, *args, **kwargs)

  monkeypatch.setattr(video_io, '_to_rgb', counting)
  views = predictor.num_test_clips * predictor.spec['num_frames']  # 4 clips x 8 frames.
  prediction = predictor.predict_stream(path, top_k=5)
  assert prediction.frames == 600 and prediction.passes == 1
  assert len(converted) <= views and prediction.peak_frames <= views
  converted.clear()
  windows = predictor.predict_stream(path, top_k=5, window=1.0)  # 60 windows of 10 frames, clips of 15.
  assert len(windows.result) == 60 and windows.passes == 1
  assert windows.peak_frames <= 2 * predictor.spec['num_frames']  # At most two overlapping clips at a time.
  assert len(converted) <= 600
  monkeypatch.undo()
  assert_same(predictor, prediction, path)
  assert_same(predictor, windows, path, window=1.0)


def test_a_container_that_declares_no_length_is_decoded_twice(predictor, tmp_path, monkeypatch):
  path = write(tmp_path / 'v.mkv', 30)
  monkeypatch.setattr(video_io, '_declared_frames', lambda *args: None)
  for window in (None, 1.0):
    prediction = predictor.predict_stream(path, top_k=5, window=window)
    assert (prediction.frames, prediction.passes) == (30, 2)
    assert prediction.peak_frames <= predictor.num_test_clips * predictor.spec['num_frames']
    assert_same(predictor, prediction, path, window)


@pytest.mark.parametrize('extension', ['.mkv', '.avi'])
def test_a_truncated_file_is_predicted_from_its_frames_and_marked_partial(predictor, tmp_path, extension):
  path = truncate(write(tmp_path / f'cut{extension}', 100))
  decoded = len(video_io.decode_video(path, fps=FPS))
  assert 10 < decoded < 90
  prediction = predictor.predict_stream(path, top_k=5)
  assert (prediction.frames, prediction.passes) == (decoded, 2)  # It declares 100: decoded again knowing it.
  assert prediction.info.partial and prediction.info.declared_frames == 100
  assert_same(predictor, prediction, path)
  result = inference.predict_file(predictor, path, top_k=2)
  assert len(result['top_k']) == 2 and result['frames'] == decoded
  assert f'{decoded} of 100 declared frames' in result['warning']


def test_requests_that_cannot_work_are_refused(predictor, tmp_path):
  path = write(tmp_path / 'v.mp4', 20)
  for kwargs, flag in (({'top_k': 0}, 'top_k'), ({'window': 0.0}, 'window'), ({'window': math.nan}, 'window'),
                       ({'fps': 0.0}, 'fps'), ({'fps': math.inf}, 'fps'), ({'fps': 1e5}, 'fps')):
    with pytest.raises(ValueError, match=flag):
      predictor.predict_video(path, **kwargs)
    with pytest.raises(ValueError, match=flag):
      inference.predict_file(predictor, path, **kwargs)


@pytest.mark.parametrize('mode', ['wrap', 'pad'])
def test_window_clips_start_in_order_and_stay_inside_the_video(mode):
  for n in range(1, 70, 3):
    for window_s in (0.1, 0.5, 1.0, 2.3):
      for num_frames, stride in ((1, 1), (4, 3), (8, 2)):
        windows = frame_plan.window_indices(n, FPS, window_s, num_frames, stride, mode)
        firsts = [int(w[2].min()) for w in windows]
        assert firsts == sorted(firsts), (n, window_s, num_frames, stride)
        assert all(0 <= w[2].min() and w[2].max() < n for w in windows)


def test_the_plan_drops_each_frame_once_no_clip_needs_it():
  groups = [('a', np.array([[0, 2, 4]])), ('b', np.array([[3, 4, 5]])), ('c', np.array([[9, 9, 9]]))]
  plan = frame_plan.FramePlan(lambda n: iter(groups), None)(10)
  assert plan.count == 10 and plan.declared == 10
  ready = {}
  for index in range(10):
    frame = np.full((2, 2, 3), index, np.uint8) if index in plan else None
    for number in plan.add(index, frame):
      ready[plan.active[number][0]] = sorted(plan.frames)
      plan.release(number)
  assert ready == {'a': [0, 2, 3, 4], 'b': [3, 4, 5], 'c': [9]}
  assert plan.frames == {} and plan.active == {} and plan.peak == 4


def test_predictions_are_written_one_line_per_file_and_read_back(tmp_path):
  path = str(tmp_path / 'out.jsonl')
  with inference.PredictionWriter(path) as writer:
    writer.write('a.mp4', {'top_k': [{'label': 'x', 'probability': 0.5}], 'frames': 3})
    assert json.loads(open(path).read()) == {'file': 'a.mp4', 'top_k': [{'label': 'x', 'probability': 0.5}],
                                             'frames': 3}  # Flushed before the next file.
    writer.write('b.mp4', {'error': 'empty file (0 bytes)'})
  assert inference.load_predictions(path) == {'a.mp4': {'top_k': [{'label': 'x', 'probability': 0.5}], 'frames': 3},
                                              'b.mp4': {'error': 'empty file (0 bytes)'}}
  with open(path, 'a') as f:
    f.write('{"file": "c.mp4", "top_')  # A run killed while writing its last line.
  assert list(inference.load_predictions(path)) == ['a.mp4', 'b.mp4']
  legacy = tmp_path / 'old.json'
  legacy.write_text(json.dumps({'a.mp4': {'top_k': []}, 'b.mp4': {'error': 'x'}}, indent=2))
  assert inference.load_predictions(str(legacy)) == {'a.mp4': {'top_k': []}, 'b.mp4': {'error': 'x'}}
  (tmp_path / 'bad.jsonl').write_text('{"file": "a.mp4"}\n[1, 2]\n{"file": "b.mp4"}\n')
  with pytest.raises(ValueError, match='bad.jsonl line 2: expected a JSON object'):
    inference.load_predictions(str(tmp_path / 'bad.jsonl'))
