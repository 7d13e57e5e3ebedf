"""Spatial augmentation: consistency across a clip's frames, determinism, crops, flips and normalisation."""

import numpy as np
import pytest
import tensorflow as tf

from vivit_jax.config import defaults as default_config
from vivit_jax.data.transforms import augment

T, H, W = 8, 40, 56
CROP = 28
OFF = dict(do_jitter_scale=False, do_flip=False, do_color_augment=False, do_rand_augment=False,
           do_random_erasing=False)


def image(h=H, w=W, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def repeated(img, num_frames=T):
  return tf.constant(np.repeat(img[None], num_frames, axis=0))


def seed(a, b=0):
  return tf.constant([a, b], tf.int32)


def run(frames, s, min_resize=H, crop_size=CROP, **aug):
  out = augment.train_augment(frames, seed(s), min_resize=min_resize, crop_size=crop_size,
                              aug={**OFF, **aug})
  assert out.dtype == tf.float32 and out.shape == (frames.shape[0], crop_size, crop_size, 3)
  return out.numpy()


def assert_frames_identical(out):
  for t in range(1, out.shape[0]):
    np.testing.assert_array_equal(out[t], out[0])


def find_window(img, patch):
  """(top, left) of the window of `img` equal to `patch`, or None."""
  for y in range(img.shape[0] - patch.shape[0] + 1):
    for x in range(img.shape[1] - patch.shape[1] + 1):
      if np.array_equal(img[y:y + patch.shape[0], x:x + patch.shape[1]], patch):
        return y, x
  return None


# Consistency across frames.

SETTINGS = {
    'crop': {},
    'flip': dict(do_flip=True),
    'jitter': dict(do_jitter_scale=True, prob_scale_jitter=1.0, scale_min_factor=1.1, scale_max_factor=1.5),
    'colour': dict(do_color_augment=True, prob_color_augment=1.0, prob_color_drop=0.0),
    'colour_drop': dict(do_color_augment=True, prob_color_augment=1.0, prob_color_drop=1.0),
    'rand_augment': dict(do_rand_augment=True, rand_augment_num_layers=3, rand_augment_magnitude=30),
    'erasing': dict(do_random_erasing=True, prob_random_erasing=1.0),
    'everything': dict(do_flip=True, do_jitter_scale=True, do_color_augment=True, do_rand_augment=True,
                       do_random_erasing=True, prob_random_erasing=1.0, prob_color_drop=0.5),
}


@pytest.mark.parametrize('name', sorted(SETTINGS))
def test_every_frame_gets_the_same_augmentation(name):
  frames = repeated(image())
  changed = 0
  for s in range(4):
    out = run(frames, s, min_resize=32, **SETTINGS[name])
    assert_frames_identical(out)
    assert out.min() >= 0.0 and out.max() <= 255.0
    changed += not np.array_equal(out, run(frames, s, min_resize=32))
  if name != 'crop':
    assert changed > 0  # The augmentation did something.


@pytest.mark.parametrize('op', range(len(augment.RAND_AUGMENT_OPS)))
def test_each_rand_augment_op_is_the_same_for_every_frame(op):
  frames = repeated(image(CROP, CROP))
  for s in range(2):
    out = augment.rand_augment(frames, seed(s), 1, 20, op_index=tf.constant(op)).numpy()
    assert out.dtype == np.uint8 and out.shape == (T, CROP, CROP, 3)
    assert_frames_identical(out)
    if augment.RAND_AUGMENT_OPS[op] not in ('identity', 'auto_contrast'):
      assert not np.array_equal(out[0], frames[0].numpy())


def test_rand_augment_ops_by_hand():
  two_levels = np.where(np.arange(CROP * CROP * 3).reshape(CROP, CROP, 3) % 2, 200, 50).astype(np.uint8)
  frames = repeated(two_levels)
  ops = {name: i for i, name in enumerate(augment.RAND_AUGMENT_OPS)}

  def apply(name, magnitude=30):
    return augment.rand_augment(frames, seed(0), 1, magnitude, op_index=tf.constant(ops[name])).numpy()

  np.testing.assert_array_equal(apply('equalize'), np.where(frames == 200, 255, 0))
  np.testing.assert_array_equal(apply('auto_contrast'), np.where(frames == 200, 255, 0))
  np.testing.assert_array_equal(apply('solarize'), np.where(frames == 200, 55, 50))  # Threshold 128.
  np.testing.assert_array_equal(apply('posterize'), np.where(frames == 200, 192, 48))  # 4 bits.
  np.testing.assert_array_equal(apply('identity'), frames)
  np.testing.assert_array_equal(apply('rotate', magnitude=0), frames)


# Determinism, crop and flip.


def test_same_seed_same_clip_other_seed_other_clip():
  frames = repeated(image())
  aug = SETTINGS['everything']
  np.testing.assert_array_equal(run(frames, 5, **aug), run(frames, 5, **aug))
  assert not np.array_equal(run(frames, 5, **aug), run(frames, 6, **aug))


def test_crop_is_a_window_of_the_frame_and_moves_with_the_seed():
  img = image()
  frames = repeated(img)
  positions = set()
  for s in range(8):
    out = run(frames, s)  # min_resize = H: no resize, so the crop is an exact window.
    position = find_window(img, out[0].astype(np.uint8))
    assert position is not None
    positions.add(position)
  assert len(positions) > 1


def test_flip_flips_and_can_be_disabled():
  img = image()
  frames = repeated(img)
  flipped = 0
  for s in range(8):
    plain = run(frames, s)
    out = run(frames, s, do_flip=True)  # Each stage has its own seed: the same crop as `plain`.
    if np.array_equal(out, plain):
      continue
    np.testing.assert_array_equal(out, plain[:, :, ::-1])  # A hand flip of the same window.
    flipped += 1
  assert 0 < flipped < 8
  for s in range(8):  # Disabled: always an unflipped window.
    assert find_window(img, run(frames, s, do_flip=False)[0].astype(np.uint8)) is not None


def test_erasing_replaces_one_rectangle():
  frames = repeated(image())
  for s in range(4):
    plain = run(frames, s)
    diff = np.any(run(frames, s, do_random_erasing=True, prob_random_erasing=1.0) != plain, axis=-1)
    assert np.array_equal(diff, np.broadcast_to(diff[0], diff.shape))
    rows, cols = np.nonzero(diff[0])
    assert diff[0, rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


def test_scale_jitter_never_shrinks_below_the_crop():
  frames = repeated(image())
  out = run(frames, 0, min_resize=CROP, do_jitter_scale=True, scale_min_factor=0.5,
            scale_max_factor=0.6)
  assert_frames_identical(out)


def test_min_resize_smaller_than_crop_is_an_error():
  with pytest.raises(ValueError, match='min_resize'):
    run(repeated(image()), 0, min_resize=20)
  with pytest.raises(ValueError, match='probability'):
    run(repeated(image()), 0, prob_color_drop=1.5)


# Resize and evaluation crops.


def test_resize_smallest_keeps_aspect_and_dtype():
  frames = repeated(image())
  out = augment.resize_smallest(frames, 32)
  assert out.shape == (T, 32, 44) + (3,) and out.dtype == tf.uint8  # 56 * 32 // 40 = 44.
  portrait = augment.resize_smallest(tf.transpose(frames, [0, 2, 1, 3]), 32)
  assert portrait.shape == (T, 44, 32, 3)
  np.testing.assert_array_equal(augment.resize_smallest(frames, H), frames)
  as_float = augment.resize_smallest(tf.cast(frames, tf.float32), 80)
  assert as_float.dtype == tf.float32 and as_float.shape == (T, 80, 112, 3)


def ramp(h, w):
  """Channel 0: column index, channel 1: row index."""
  cols, rows = np.meshgrid(np.arange(w), np.arange(h))
  return repeated(np.stack([cols, rows, np.zeros_like(rows)], axis=-1).astype(np.uint8))


def test_three_crops_are_left_centre_right_for_landscape():
  crops = augment.eval_preprocess(ramp(H, W), min_resize=H, crop_size=CROP, num_crops=3).numpy()
  assert crops.shape == (3, T, CROP, CROP, 3) and crops.dtype == np.uint8
  np.testing.assert_array_equal(crops[:, :, 0, 0, 0], np.repeat([[0], [14], [28]], T, axis=1))
  np.testing.assert_array_equal(crops[:, :, 0, 0, 1], 6)  # (40 - 28) // 2.
  single = augment.eval_preprocess(ramp(H, W), min_resize=H, crop_size=CROP).numpy()
  np.testing.assert_array_equal(single, crops[1])


def test_three_crops_are_top_middle_bottom_for_portrait():
  crops = augment.eval_preprocess(ramp(W, H), min_resize=H, crop_size=CROP, num_crops=3).numpy()
  np.testing.assert_array_equal(crops[:, 0, 0, 0, 1], [0, 14, 28])
  np.testing.assert_array_equal(crops[:, 0, 0, 0, 0], 6)
  np.testing.assert_array_equal(crops[:, 0, -1, 0, 1], [27, 41, 55])


def test_eval_resizes_first():
  crops = augment.eval_preprocess(repeated(image(80, 112)), min_resize=40, crop_size=CROP, num_crops=3)
  assert crops.shape == (3, T, CROP, CROP, 3)
  with pytest.raises(ValueError, match='num_crops'):
    augment.eval_preprocess(repeated(image()), min_resize=H, crop_size=CROP, num_crops=2)


# Normalisation and config.


def test_normalize_by_hand():
  x = tf.constant([[0.0, 127.5, 255.0]])
  np.testing.assert_allclose(augment.normalize(x, zero_centering=True), [[-1.0, 0.0, 1.0]])
  np.testing.assert_allclose(augment.normalize(x, zero_centering=False), [[0.0, 0.5, 1.0]])
  pixel = tf.constant([[10, 20, 30]], tf.uint8)
  out = augment.normalize(pixel, zero_centering=True, mean_rgb=[1, 2, 3], std_rgb=[3, 6, 9])
  assert out.dtype == tf.float32
  np.testing.assert_allclose(out, [[3.0, 3.0, 3.0]])
  with pytest.raises(ValueError):
    augment.normalize(pixel, zero_centering=True, mean_rgb=[1, 2, 3])


def test_augmentation_params_from_config():
  config = default_config.get_config()
  assert augment.augmentation_params(config) == default_config.get_augmentation_params().to_dict()
  config.dataset_configs.augmentation_params.do_flip = False
  params = augment.augmentation_params(config)
  assert params['do_flip'] is False and isinstance(params, dict)


# Graph mode.


def test_tf_data_map_and_tf_function_match_eager():
  img = image()
  aug = {**SETTINGS['everything']}
  ds = tf.data.Dataset.range(3).map(
      lambda i: augment.train_augment(repeated(img), tf.stack([i, tf.constant(0, tf.int64)]),
                                      min_resize=32, crop_size=CROP, aug=aug))
  outs = list(ds.as_numpy_iterator())
  # An int64 seed gives the int32 seed's result; graph and eager kernels round floats differently.
  for s, out in enumerate(outs):
    np.testing.assert_allclose(out, run(repeated(img), s, min_resize=32, **aug), atol=1e-3)
  fn = tf.function(
      lambda x, s: augment.train_augment(x, s, min_resize=32, crop_size=CROP, aug=aug),
      input_signature=[tf.TensorSpec([T, None, None, 3], tf.uint8), tf.TensorSpec([2], tf.int32)])
  np.testing.assert_allclose(fn(repeated(img), seed(1)), outs[1], atol=1e-3)
  evaluate = tf.function(
      lambda x: augment.eval_preprocess(x, min_resize=32, crop_size=CROP, num_crops=3),
      input_signature=[tf.TensorSpec([T, None, None, 3], tf.uint8)])
  assert evaluate(repeated(image(64, 48))).shape == (3, T, CROP, CROP, 3)
