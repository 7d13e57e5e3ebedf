"""Temporal sampling: train / validation / multi-view test indices, short videos, determinism."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from vivit_jax.data.transforms import sampling


def seed(a, b=0):
  return tf.constant([a, b], tf.int32)


def train(n, num_frames, stride, s, mode='wrap'):
  return sampling.train_indices(n, num_frames, stride, seed(s), mode).numpy()


# Training clips.


def test_train_clip_is_strided_from_a_start_in_the_valid_range():
  # n = 20, 4 frames at stride 3 span 10 frames: starts 0..10.
  for s in range(5):
    indices = train(20, 4, 3, s)
    assert indices.dtype == np.int32 and indices.shape == (4,)
    assert 0 <= indices[0] <= 10
    np.testing.assert_array_equal(indices, indices[0] + np.array([0, 3, 6, 9]))


def test_train_start_covers_the_whole_valid_range():
  fn = tf.function(lambda s: sampling.train_indices(20, 4, 3, s))
  starts = [int(fn(seed(s, 7))[0]) for s in range(400)]
  assert set(starts) == set(range(11))
  counts = np.bincount(starts, minlength=11)
  assert counts.min() > 400 / 11 / 3  # Roughly uniform.


def test_train_is_deterministic_per_seed_and_varies_across_seeds():
  np.testing.assert_array_equal(train(100, 8, 2, 3), train(100, 8, 2, 3))
  clips = {tuple(train(100, 8, 2, s)) for s in range(10)}
  assert len(clips) > 5


@pytest.mark.parametrize('mode,expected', [('wrap', [0, 2, 4, 1]), ('pad', [0, 2, 4, 4])])
def test_short_video_wraps_or_pads(mode, expected):
  # n = 5 < span 7: the only start is 0; index 6 wraps to 1 or is clipped to 4.
  for s in range(4):
    np.testing.assert_array_equal(train(5, 4, 2, s, mode), expected)


def test_video_exactly_one_clip_long_has_start_zero():
  for s in range(4):
    np.testing.assert_array_equal(train(7, 4, 2, s), [0, 2, 4, 6])


@pytest.mark.parametrize('mode', sampling.MODES)
def test_single_frame_video(mode):
  np.testing.assert_array_equal(train(1, 4, 2, 0, mode), [0, 0, 0, 0])
  np.testing.assert_array_equal(sampling.center_indices(1, 4, 2, mode), [0, 0, 0, 0])
  np.testing.assert_array_equal(sampling.multi_view_indices(1, 4, 2, 3, mode), np.zeros((3, 4)))


# Validation clip.


def test_center_clip():
  np.testing.assert_array_equal(sampling.center_indices(20, 4, 3), [5, 8, 11, 14])  # (20 - 10) // 2.
  np.testing.assert_array_equal(sampling.center_indices(21, 4, 3), [5, 8, 11, 14])  # 11 // 2.
  np.testing.assert_array_equal(sampling.center_indices(12, 4, 3), [1, 4, 7, 10])
  np.testing.assert_array_equal(sampling.center_indices(5, 4, 2, 'wrap'), [0, 2, 4, 1])
  np.testing.assert_array_equal(sampling.center_indices(5, 4, 2, 'pad'), [0, 2, 4, 4])


# Multi-view test clips.


def test_multi_view_linspace_over_the_valid_starts():
  # n = 30, span 7: starts linspace(0, 23, 4) = 0, 7.67, 15.33, 23, rounded.
  views = sampling.multi_view_indices(30, 4, 2, 4).numpy()
  assert views.dtype == np.int32
  np.testing.assert_array_equal(views[:, 0], [0, 8, 15, 23])
  np.testing.assert_array_equal(views, views[:, :1] + np.array([0, 2, 4, 6]))
  # Exactly as many valid starts as views: 0, 1, 2, 3.
  np.testing.assert_array_equal(sampling.multi_view_indices(10, 4, 2, 4)[:, 0], [0, 1, 2, 3])


def test_single_view_is_the_centre_clip():
  for n in (3, 20, 31):
    np.testing.assert_array_equal(sampling.multi_view_indices(n, 4, 3, 1)[0],
                                  sampling.center_indices(n, 4, 3))


def test_short_video_views_are_shifted_and_distinct():
  # n = 5 < span 7: starts i * 5 // 4 = 0, 1, 2, 3.
  np.testing.assert_array_equal(sampling.multi_view_indices(5, 4, 2, 4, 'wrap'),
                                [[0, 2, 4, 1], [1, 3, 0, 2], [2, 4, 1, 3], [3, 0, 2, 4]])
  np.testing.assert_array_equal(sampling.multi_view_indices(5, 4, 2, 4, 'pad'),
                                [[0, 2, 4, 4], [1, 3, 4, 4], [2, 4, 4, 4], [3, 4, 4, 4]])
  # n = 9: only 3 valid starts for 4 views, so starts i * 9 // 4 = 0, 2, 4, 6 (the last ones wrap).
  np.testing.assert_array_equal(sampling.multi_view_indices(9, 4, 2, 4, 'wrap'),
                                [[0, 2, 4, 6], [2, 4, 6, 8], [4, 6, 8, 1], [6, 8, 1, 3]])


@pytest.mark.parametrize('mode', sampling.MODES)
def test_views_are_pairwise_distinct_whenever_possible(mode):
  for n, num_clips, stride in itertools.product(range(2, 14), range(2, 6), (1, 2, 4)):
    if num_clips > n:
      continue
    views = sampling.multi_view_indices(n, 4, stride, num_clips, mode).numpy()
    assert views.shape == (num_clips, 4)
    assert views.min() >= 0 and views.max() < n
    assert len({tuple(v) for v in views}) == num_clips, (n, num_clips, stride, views)


def test_more_views_than_frames_cycle_through_every_start():
  views = sampling.multi_view_indices(2, 3, 1, 4).numpy()
  np.testing.assert_array_equal(views, [[0, 1, 0], [0, 1, 0], [1, 0, 1], [1, 0, 1]])


# Graph mode, dynamic lengths and errors.


def test_works_inside_tf_data_map_with_tensor_lengths():
  lengths = tf.data.Dataset.from_tensor_slices(tf.constant([1, 5, 30], tf.int64))
  ds = lengths.map(lambda n: {
      'train': sampling.train_indices(n, 4, 2, tf.stack([n, tf.constant(0, tf.int64)])),
      'val': sampling.center_indices(n, 4, 2),
      'test': sampling.multi_view_indices(n, 4, 2, 3, 'pad')})
  out = list(ds.as_numpy_iterator())
  np.testing.assert_array_equal(out[1]['val'], [0, 2, 4, 1])
  np.testing.assert_array_equal(out[2]['val'], [11, 13, 15, 17])
  np.testing.assert_array_equal(out[2]['test'][:, 0], [0, 12, 23])
  assert out[0]['test'].shape == (3, 4) and out[2]['train'].shape == (4,)
  np.testing.assert_array_equal(list(ds.as_numpy_iterator())[2]['train'], out[2]['train'])


def test_bad_arguments():
  with pytest.raises(ValueError, match='mode'):
    sampling.train_indices(10, 4, 2, seed(0), mode='loop')
  with pytest.raises(ValueError, match='positive'):
    sampling.center_indices(10, 0, 2)
  with pytest.raises(ValueError, match='num_clips'):
    sampling.multi_view_indices(10, 4, 2, 0)
  with pytest.raises(tf.errors.InvalidArgumentError):
    sampling.center_indices(0, 4, 2)
