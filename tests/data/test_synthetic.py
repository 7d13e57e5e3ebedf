"""Synthetic motion videos: deterministic, balanced, and their class is only visible across frames."""

import hashlib

import numpy as np
import pytest

from vivit_jax.data.synthetic import SyntheticMotion


def source(**kwargs):
  return SyntheticMotion(**{'num_classes': 4, 'num_frames': 6, 'height': 24, 'width': 32, **kwargs})


def test_examples_are_deterministic_and_splits_differ():
  a, b = source(), source()
  np.testing.assert_array_equal(a.example('train', 7)['video'], b.example('train', 7)['video'])
  assert not np.array_equal(a.example('train', 7)['video'], a.example('validation', 7)['video'])
  assert not np.array_equal(a.example('train', 7)['video'], source(seed=1).example('train', 7)['video'])


def test_batch_shapes_dtypes_and_balanced_labels():
  batch = source().batch('train', range(8))
  assert batch['video'].shape == (8, 6, 24, 32, 3) and batch['video'].dtype == np.uint8
  np.testing.assert_array_equal(batch['label'], [0, 1, 2, 3, 0, 1, 2, 3])


def test_objects_move_with_the_class_velocity():
  s = source(num_objects=1, num_classes=16)
  for index in (1, 6, 13):
    example = s.example('train', index)
    dy, dx = s.velocity(example['label'])
    pos = example['positions'][:, 0]
    np.testing.assert_allclose(pos[1:] - pos[:-1], np.tile([dy, dx], (5, 1)), atol=1e-9)
    colour = example['video'][0, int(round(pos[0, 0])) % 24, int(round(pos[0, 1])) % 32]
    for t in range(6):
      y, x = (int(round(v)) for v in pos[t])
      assert np.array_equal(example['video'][t, y % 24, x % 32], colour)


def test_first_frame_does_not_depend_on_the_class():
  # Same example, different velocity for its class: identical first frame, different motion.
  slow, fast = source(num_directions=4), source(num_directions=2)
  assert slow.velocity(3) != fast.velocity(3)
  a, b = slow.example('test', 3)['video'], fast.example('test', 3)['video']
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(a[-1], b[-1])


def test_classes_have_distinct_velocities():
  s = source(num_classes=16)
  velocities = {tuple(np.round(s.velocity(c), 6)) for c in range(16)}
  assert len(velocities) == 16


@pytest.mark.parametrize('kwargs', [{'num_frames': 1}, {'height': 4}, {'num_classes': 0}])
def test_bad_sizes_are_rejected(kwargs):
  with pytest.raises(ValueError, match='SyntheticMotion needs'):
    source(**kwargs)


def test_unknown_split_is_rejected():
  with pytest.raises(ValueError, match="unknown split 'val'"):
    source().example('val', 0)


def test_speed_scales_every_velocity():
  slow, fast = source(), source(speed=3.0)
  for label in range(4):
    np.testing.assert_allclose(np.asarray(fast.velocity(label)), 3.0 * np.asarray(slow.velocity(label)))


def test_without_wrapping_every_path_stays_inside_and_a_reversed_clip_looks_like_the_opposite_class():
  s = source(num_classes=8, num_objects=1, object_size=8, speed=2.0, wrap=False, background='plain')
  low, high = np.full(2, np.inf), np.full(2, -np.inf)
  for index in range(400):
    corners = np.round(s.example('train', index)['positions'][:, 0])
    assert corners.min() >= 0 and np.all(corners.max(axis=0) <= [24 - 8, 32 - 8]), index
    if index % 8 == 0:  # Class 0 moves right: its starts span every column that leaves room for the path.
      low, high = np.minimum(low, corners[0]), np.maximum(high, corners[0])
  assert high[1] - low[1] > 11 and high[1] <= 32 - 8 - 10
  # Class 4 moves left: reversed in time its paths are class 0's, so the sets of frames match in distribution.
  right = np.array([s.example('validation', i)['positions'][::-1, 0] for i in range(0, 800, 8)])
  left = np.array([s.example('validation', i)['positions'][:, 0] for i in range(4, 800, 8)])
  np.testing.assert_allclose(np.diff(right, axis=1), np.diff(left, axis=1), atol=1e-9)
  np.testing.assert_allclose(right.mean(axis=(0, 1)), left.mean(axis=(0, 1)), atol=1.0)


def test_paths_that_cannot_fit_without_wrapping_are_rejected():
  with pytest.raises(ValueError, match='class 0 travels 10.0 pixels'):
    source(num_objects=1, object_size=8, speed=2.0, wrap=False, height=16, width=16)


def test_a_plain_background_is_one_dark_colour_under_bright_squares():
  s = source(num_objects=1, object_size=4, background='plain')
  video = s.example('train', 3)['video']
  square = np.all(video[0] >= 160, axis=-1)
  assert square.sum() == 16
  background = video[0][~square]
  assert np.all(background == background[0]) and background.max() < 64
  with pytest.raises(ValueError, match="'texture' or 'plain'"):
    source(background='noise')



def _one_at_a_time(s, split, index):
  """Example `index` drawn and painted on its own, square by square: the plain reading of SyntheticMotion's
  definition (its own generator, seeded by (seed, split, index), draws the background cells, the start corners
  and the colours, in that order), against which the batched painter is checked."""
  rng = np.random.default_rng([s.seed, {'train': 0, 'validation': 1, 'test': 2}[split], index])
  texture = s.background == 'texture'
  cell = 4 if texture else max(s.height, s.width)
  coarse = rng.integers(*((40, 120) if texture else (0, 64)), size=(-(-s.height // cell), -(-s.width // cell), 3),
                        dtype=np.uint8)
  frame = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:s.height, :s.width]
  velocity = np.asarray(s.velocity(s.label(index)))
  size = np.array([s.height, s.width], np.float64)
  if s.wrap:
    low, high = np.zeros(2), size
  else:
    travel = velocity * (s.num_frames - 1)
    low, high = np.maximum(0.0, -travel), size - s.object_size - np.maximum(0.0, travel)
  start = rng.uniform(low, high, size=(s.num_objects, 2))
  colours = rng.integers(0 if texture else 160, 256, size=(s.num_objects, 3), dtype=np.uint8)
  video = np.repeat(frame[None], s.num_frames, axis=0)
  positions = np.empty((s.num_frames, s.num_objects, 2))
  for t in range(s.num_frames):
    for k in range(s.num_objects):
      positions[t, k] = start[k] + t * velocity
      y, x = (int(v) for v in np.round(positions[t, k]))
      for dy in range(s.object_size):
        for dx in range(s.object_size):
          video[t, (y + dy) % s.height, (x + dx) % s.width] = colours[k]
  return video, positions


@pytest.mark.parametrize('kwargs', [{}, {'num_objects': 5, 'object_size': 7, 'num_classes': 16, 'seed': 3},
                                    {'num_objects': 1, 'object_size': 8, 'speed': 2.0, 'wrap': False,
                                     'background': 'plain', 'num_classes': 8}])
def test_a_batch_is_its_examples_painted_one_at_a_time_whatever_the_order_or_company(kwargs):
  s = source(**kwargs)
  indices = [5, 0, 17, 5, 3, 1234]
  batch = s.batch('validation', indices, with_positions=True)
  for row, index in enumerate(indices):
    video, positions = _one_at_a_time(s, 'validation', index)
    np.testing.assert_array_equal(batch['video'][row], video)
    np.testing.assert_allclose(batch['positions'][row], positions, rtol=0, atol=1e-12)
    assert batch['label'][row] == s.label(index)
    np.testing.assert_array_equal(s.example('validation', index)['video'], video)
  empty = s.batch('train', [])
  assert empty['video'].shape == (0, *batch['video'].shape[1:]) and empty['label'].shape == (0,)


@pytest.mark.parametrize('kwargs,digest', [
    ({}, '83037e26fa3d3023'),  # configs/synthetic.py's kind of video: a texture, three squares, wrapping.
    (dict(background='plain', wrap=False, num_objects=1, object_size=8, speed=2.0, num_classes=8, num_frames=4,
          height=16, width=16), '0f5c26d59bd0b0f2')])  # configs/ablations/synthetic_variants.py's.
def test_the_videos_are_the_ones_the_readme_s_numbers_were_measured_on(kwargs, digest):
  # Every demo and sweep number in the README was measured on these exact videos; a change to how they are drawn
  # (faster, say) has to keep every value, or re-measure the README.
  batch = source(**kwargs).batch('validation', [3, 1000, 77777], with_positions=True)
  data = batch['video'].tobytes() + batch['positions'].tobytes() + batch['label'].tobytes()
  assert hashlib.sha256(data).hexdigest()[:16] == digest
