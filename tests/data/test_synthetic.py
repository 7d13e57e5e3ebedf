"""Synthetic motion videos: deterministic, balanced, and their class is only visible across frames."""

import numpy as np
import pytest

from vivit_jax.data.sources.synthetic import SyntheticMotion


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
