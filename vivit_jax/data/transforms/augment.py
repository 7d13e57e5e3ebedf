"""Spatial preprocessing and augmentation of video clips, the same for every frame of a clip.

All functions are TensorFlow graph code for `tf.data.Dataset.map`. Clips are [T, H, W, 3], uint8 or float on
the 0..255 scale. Random choices are drawn once per clip from an explicit stateless seed (int32/int64 [2]),
so the result depends only on the seed, and every frame gets the same crop, flip, scale, RandAugment ops and
magnitudes, colour change and erased rectangle. Each stage draws from its own sub-seed, so switching one
augmentation on or off leaves the others' choices unchanged.

Decisions:
- Resizing is bilinear without antialiasing (as DMVR, whose `resize_smallest` feeds Scenic); uint8 input is
  rounded back to uint8 (DMVR truncates).
- `train_augment` returns float32 on the 0..255 scale: colour augmentation and erasing are computed in float
  and not quantised again; `normalize` then maps to the model's range. `eval_preprocess` keeps the input
  dtype (uint8 stays uint8).
- Scale jitter draws separate height and width factors (as DMVR's `scale_jitter_augm`) and never shrinks a
  side below `crop_size`, so the random crop always fits.
- Contrast (colour augmentation and RandAugment) and the RandAugment auto-contrast and equalize statistics are
  taken over the whole clip, so each is one pixel mapping applied to every frame. Unlike Scenic, which runs
  only one of RandAugment and colour augmentation, both run when both are switched on.
- RandAugment magnitude is on a 0..30 scale (`rand_augment_magnitude / 30` of each op's largest change).
- Random erasing fills one rectangle (area 2%..33%, aspect 0.3..3.3, clipped to the frame) with uniform
  noise that is the same in every frame.
"""

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import tensorflow as tf

from vivit_jax.config import defaults as default_config

_MAX_MAGNITUDE = 30.0
_FILL_VALUE = 128.0  # Grey for the pixels that rotate, shear and translate bring in.


def _split(seed: tf.Tensor, num: int) -> tf.Tensor:
  """`num` sub-seeds; computed in int64 so int32 and int64 seeds of equal value give the same ones."""
  seed = tf.ensure_shape(tf.cast(seed, tf.int64), [2])
  return tf.random.experimental.stateless_split(seed, num)


def _uniform(seed: tf.Tensor, minval: float = 0.0, maxval: float = 1.0) -> tf.Tensor:
  return tf.random.stateless_uniform([], seed, minval=minval, maxval=maxval, dtype=tf.float32)


def _randint(seed: tf.Tensor, maxval: tf.Tensor) -> tf.Tensor:
  """A scalar int32 uniform in [0, maxval)."""
  return tf.random.stateless_uniform([], seed, minval=0, maxval=maxval, dtype=tf.int32)


def _coin(seed: tf.Tensor, prob: float) -> tf.Tensor:
  return _uniform(seed) < prob


def _like(x: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
  """Float `x` in `dtype`, rounded and saturated for uint8."""
  if dtype == tf.uint8:
    return tf.saturate_cast(tf.round(x), tf.uint8)
  return tf.cast(x, dtype)


def _resize(frames: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
  resized = tf.image.resize(frames, tf.stack([height, width]), method='bilinear', antialias=False)
  return _like(resized, frames.dtype)


def resize_smallest(frames: tf.Tensor, min_resize: int) -> tf.Tensor:
  """Resizes [T, H, W, 3] so that the shorter side is `min_resize` (aspect kept, sides floored).

  Frames already of that size are returned unchanged; the dtype is kept (uint8 stays uint8).
  """
  shape = tf.shape(frames)
  height, width = shape[1], shape[2]
  out_h = tf.maximum(min_resize, height * min_resize // width)
  out_w = tf.maximum(min_resize, width * min_resize // height)
  same = tf.logical_and(tf.equal(out_h, height), tf.equal(out_w, width))
  return tf.cond(same, lambda: frames, lambda: _resize(frames, out_h, out_w))


def _scale_jitter(frames: tf.Tensor, seed: tf.Tensor, min_factor: float, max_factor: float,
                  prob: float, crop_size: int) -> tf.Tensor:
  seeds = _split(seed, 3)
  shape = tf.cast(tf.shape(frames)[1:3], tf.float32)
  height = tf.cast(_uniform(seeds[0], min_factor, max_factor) * shape[0], tf.int32)
  width = tf.cast(_uniform(seeds[1], min_factor, max_factor) * shape[1], tf.int32)
  height, width = tf.maximum(height, crop_size), tf.maximum(width, crop_size)
  return tf.cond(_coin(seeds[2], prob), lambda: _resize(frames, height, width), lambda: frames)


def _random_crop(frames: tf.Tensor, seed: tf.Tensor, size: int) -> tf.Tensor:
  seeds = _split(seed, 2)
  shape = tf.shape(frames)
  top = _randint(seeds[0], shape[1] - size + 1)
  left = _randint(seeds[1], shape[2] - size + 1)
  return tf.slice(frames, tf.stack([0, top, left, 0]), [-1, size, size, -1])


def _random_flip(frames: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  return tf.cond(_coin(seed, 0.5), lambda: tf.reverse(frames, axis=[2]), lambda: frames)


# RandAugment. Each op maps uint8 [T, H, W, 3] to uint8 and treats every frame alike.


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """uint8 `image` moved away from float `degenerate` by `factor` (1: unchanged, 0: degenerate)."""
  x = tf.cast(image, tf.float32)
  return _like(tf.clip_by_value(degenerate + factor * (x - degenerate), 0.0, 255.0), tf.uint8)


def _grey(x: tf.Tensor) -> tf.Tensor:
  return tf.image.rgb_to_grayscale(tf.cast(x, tf.float32))


def _color(x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  return _blend(_grey(x), x, factor)


def _contrast(x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  return _blend(tf.reduce_mean(_grey(x)), x, factor)


def _brightness(x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  return _blend(tf.zeros([]), x, factor)


def _sharpness(x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """Blend with a 3x3 smoothed copy; the one-pixel border keeps its values."""
  kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  xf = tf.cast(x, tf.float32)
  smooth = tf.nn.depthwise_conv2d(xf, kernel, strides=[1, 1, 1, 1], padding='VALID')
  pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
  inner = tf.pad(tf.ones_like(smooth[:1, :, :, :1]), pad)
  return _blend(inner * tf.pad(smooth, pad) + (1.0 - inner) * xf, x, factor)


def _autocontrast(x: tf.Tensor) -> tf.Tensor:
  """Stretches each channel so the clip's darkest value becomes 0 and its brightest 255."""
  xf = tf.cast(x, tf.float32)
  low = tf.reduce_min(xf, axis=[0, 1, 2])
  high = tf.reduce_max(xf, axis=[0, 1, 2])
  stretched = (xf - low) * (255.0 / tf.maximum(high - low, 1.0))
  return _like(tf.where(high > low, stretched, xf), tf.uint8)


def _equalize_channel(values: tf.Tensor) -> tf.Tensor:
  """Histogram equalisation (PIL's rule) of int32 values in 0..255, one histogram for the clip."""
  hist = tf.math.bincount(values, minlength=256, maxlength=256)
  last = tf.gather(hist, tf.reduce_max(tf.where(hist > 0)))
  step = (tf.reduce_sum(hist) - last) // 255
  lut = (tf.cumsum(hist, exclusive=True) + step // 2) // tf.maximum(step, 1)
  lut = tf.clip_by_value(lut, 0, 255)
  return tf.where(step > 0, tf.gather(lut, values), values)


def _equalize(x: tf.Tensor) -> tf.Tensor:
  xi = tf.cast(x, tf.int32)
  channels = [_equalize_channel(tf.reshape(xi[..., c], [-1])) for c in range(3)]
  return tf.cast(tf.reshape(tf.stack(channels, axis=-1), tf.shape(x)), tf.uint8)


def _solarize(x: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
  xf = tf.cast(x, tf.float32)
  return _like(tf.where(xf >= threshold, 255.0 - xf, xf), tf.uint8)


def _posterize(x: tf.Tensor, bits: int) -> tf.Tensor:
  unit = 2 ** (8 - bits)
  return tf.cast(tf.cast(x, tf.int32) // unit * unit, tf.uint8)


def _transform(x: tf.Tensor, matrix: Sequence[Any]) -> tf.Tensor:
  """Projective transform (output pixel -> input pixel, 8 coefficients), nearest pixel, grey fill."""
  transforms = tf.reshape(tf.cast(tf.stack(matrix), tf.float32), [1, 8])
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=x, transforms=transforms, output_shape=tf.shape(x)[1:3],
      fill_value=_FILL_VALUE, interpolation='NEAREST', fill_mode='CONSTANT')


def _rotate(x: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
  """Rotates every frame about its centre."""
  angle = degrees * (math.pi / 180.0)
  cy = (tf.cast(tf.shape(x)[1], tf.float32) - 1.0) / 2.0
  cx = (tf.cast(tf.shape(x)[2], tf.float32) - 1.0) / 2.0
  cos, sin = tf.cos(angle), tf.sin(angle)
  return _transform(x, [cos, -sin, cx - cos * cx + sin * cy,
                        sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])


def _rand_augment_ops(strength: float) -> List[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]:
  """The op set; each takes (frames, sign) with sign +-1 and uses the clip's fixed `strength` in [0, 1]."""
  def enhance(sign):
    return 1.0 + sign * 0.9 * strength

  def shear(sign):
    return sign * 0.3 * strength

  def shift(x, axis, sign):
    return sign * 0.45 * strength * tf.cast(tf.shape(x)[axis], tf.float32)

  bits = 8 - int(round(4 * strength))
  return [
      lambda x, s: x,
      lambda x, s: _autocontrast(x),
      lambda x, s: _equalize(x),
      lambda x, s: _rotate(x, s * 30.0 * strength),
      lambda x, s: _solarize(x, 256.0 - 128.0 * strength),
      lambda x, s: _color(x, enhance(s)),
      lambda x, s: _posterize(x, bits),
      lambda x, s: _contrast(x, enhance(s)),
      lambda x, s: _brightness(x, enhance(s)),
      lambda x, s: _sharpness(x, enhance(s)),
      lambda x, s: _transform(x, [1.0, shear(s), 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
      lambda x, s: _transform(x, [1.0, 0.0, 0.0, shear(s), 1.0, 0.0, 0.0, 0.0]),
      lambda x, s: _transform(x, [1.0, 0.0, -shift(x, 2, s), 0.0, 1.0, 0.0, 0.0, 0.0]),
      lambda x, s: _transform(x, [1.0, 0.0, 0.0, 0.0, 1.0, -shift(x, 1, s), 0.0, 0.0]),
  ]


RAND_AUGMENT_OPS = ('identity', 'auto_contrast', 'equalize', 'rotate', 'solarize', 'color',
                    'posterize', 'contrast', 'brightness', 'sharpness', 'shear_x', 'shear_y',
                    'translate_x', 'translate_y')


def rand_augment(frames: tf.Tensor, seed: tf.Tensor, num_layers: int, magnitude: float,
                 op_index: Optional[tf.Tensor] = None) -> tf.Tensor:
  """RandAugment on uint8 [T, H, W, 3]: `num_layers` ops drawn uniformly from `RAND_AUGMENT_OPS`.

  Every op uses the strength `magnitude / 30` (clipped to [0, 1]); signed ops (rotate, shear, translate and
  the colour, contrast, brightness and sharpness factors) take a random direction. Ops, directions and
  magnitudes are drawn once per clip and applied to every frame. `op_index` forces one op (tests).
  """
  strength = min(max(float(magnitude) / _MAX_MAGNITUDE, 0.0), 1.0)
  ops = _rand_augment_ops(strength)
  x = frames
  layer_seeds = _split(seed, max(num_layers, 1))
  for layer in range(num_layers):
    seeds = _split(layer_seeds[layer], 2)
    index = _randint(seeds[0], len(ops)) if op_index is None else op_index
    sign = tf.where(_coin(seeds[1], 0.5), 1.0, -1.0)
    branches = [lambda op=op, x=x: op(x, sign) for op in ops]
    x = tf.switch_case(index, branches)
  return x


def _color_augment(frames: tf.Tensor, seed: tf.Tensor, prob_color: float,
                   prob_drop: float) -> tf.Tensor:
  """DMVR's colour augmentation on float 0..255: brightness, saturation, contrast, hue; then grey."""
  seeds = _split(seed, 6)

  def jitter(x):
    x = x / 255.0 + _uniform(seeds[0], -32.0 / 255.0, 32.0 / 255.0)
    x = tf.image.adjust_saturation(x, _uniform(seeds[1], 0.6, 1.4))
    mean = tf.reduce_mean(x, axis=[0, 1, 2], keepdims=True)
    x = (x - mean) * _uniform(seeds[2], 0.6, 1.4) + mean
    x = tf.image.adjust_hue(x, _uniform(seeds[3], -0.2, 0.2))
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0

  def drop(x):
    return tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 1, 3])

  frames = tf.cond(_coin(seeds[4], prob_color), lambda: jitter(frames), lambda: frames)
  return tf.cond(_coin(seeds[5], prob_drop), lambda: drop(frames), lambda: frames)


def _random_erase(frames: tf.Tensor, seed: tf.Tensor, prob: float) -> tf.Tensor:
  """Replaces one rectangle, the same in every frame, by noise that is the same in every frame."""
  seeds = _split(seed, 6)
  shape = tf.shape(frames)
  height, width = shape[1], shape[2]
  area = _uniform(seeds[0], 0.02, 1.0 / 3.0) * tf.cast(height * width, tf.float32)
  aspect = tf.exp(_uniform(seeds[1], math.log(0.3), math.log(1.0 / 0.3)))
  box_h = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32), 1, height)
  box_w = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32), 1, width)
  top = _randint(seeds[2], height - box_h + 1)
  left = _randint(seeds[3], width - box_w + 1)
  rows = tf.range(height)[:, None]
  cols = tf.range(width)[None, :]
  inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
  noise = tf.random.stateless_uniform(tf.stack([1, height, width, 3]), seeds[4], 0.0, 255.0)
  erased = tf.where(inside[None, :, :, None], noise, frames)
  return tf.cond(_coin(seeds[5], prob), lambda: erased, lambda: frames)


def _params(aug: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
  params = default_config.get_augmentation_params().to_dict()
  params.update(dict(aug or {}))
  for key in ('prob_scale_jitter', 'prob_color_augment', 'prob_color_drop', 'prob_random_erasing'):
    if not 0.0 <= params[key] <= 1.0:
      raise ValueError(f'augmentation_params.{key} = {params[key]} is not a probability')
  if not 0.0 < params['scale_min_factor'] <= params['scale_max_factor']:
    raise ValueError('augmentation_params needs 0 < scale_min_factor <= scale_max_factor')
  if params['rand_augment_num_layers'] < 0 or params['rand_augment_magnitude'] < 0:
    raise ValueError('augmentation_params.rand_augment_* must not be negative')
  return params


def train_augment(frames: tf.Tensor, seed: tf.Tensor, *, min_resize: int, crop_size: int,
                  aug: Optional[Mapping[str, Any]]) -> tf.Tensor:
  """Training augmentation of a clip, uint8 (or float 0..255) [T, H, W, 3] -> float32 [T, crop, crop, 3].

  In order: resize the shorter side to `min_resize`; scale jitter; random crop; horizontal flip; RandAugment
  (on uint8); colour augmentation; random erasing. The result stays on the 0..255 scale (see `normalize`).

  Args:
    frames: the clip's decoded frames.
    seed: int32/int64 [2] stateless seed of this clip.
    min_resize: shorter side after the first resize; at least `crop_size`.
    crop_size: side of the square crop.
    aug: `augmentation_params` values as a plain dict; missing keys take vivit_jax/config/defaults.py's defaults.

  Returns:
    float32 [T, crop_size, crop_size, 3] in 0..255.
  """
  if min_resize < crop_size:
    raise ValueError(f'min_resize ({min_resize}) is smaller than crop_size ({crop_size})')
  p = _params(aug)
  seeds = _split(seed, 6)
  x = resize_smallest(frames, min_resize)
  if p['do_jitter_scale']:
    x = _scale_jitter(x, seeds[0], p['scale_min_factor'], p['scale_max_factor'],
                      p['prob_scale_jitter'], crop_size)
  x = _random_crop(x, seeds[1], crop_size)
  if p['do_flip']:
    x = _random_flip(x, seeds[2])
  if p['do_rand_augment']:
    if x.dtype != tf.uint8:
      x = _like(tf.cast(x, tf.float32), tf.uint8)
    x = rand_augment(x, seeds[3], p['rand_augment_num_layers'], p['rand_augment_magnitude'])
  x = tf.cast(x, tf.float32)
  if p['do_color_augment']:
    x = _color_augment(x, seeds[4], p['prob_color_augment'], p['prob_color_drop'])
  if p['do_random_erasing']:
    x = _random_erase(x, seeds[5], p['prob_random_erasing'])
  return tf.ensure_shape(x, [frames.shape[0], crop_size, crop_size, 3])


def eval_preprocess(frames: tf.Tensor, *, min_resize: int, crop_size: int,
                    num_crops: int = 1) -> tf.Tensor:
  """Resize the shorter side to `min_resize`, then crop; the dtype is kept.

  num_crops=1: the centre crop, [T, crop, crop, 3]. num_crops=3: [3, T, crop, crop, 3], crops at the start,
  centre and end of the long side (left/centre/right of landscape frames, top/middle/bottom of portrait
  frames; square frames count as landscape). Centre offsets are floor((side - crop) / 2).
  """
  if num_crops not in (1, 3):
    raise ValueError(f'num_crops must be 1 or 3, not {num_crops}')
  if min_resize < crop_size:
    raise ValueError(f'min_resize ({min_resize}) is smaller than crop_size ({crop_size})')
  x = resize_smallest(frames, min_resize)
  shape = tf.shape(x)
  height, width = shape[1], shape[2]
  top, left = (height - crop_size) // 2, (width - crop_size) // 2

  def crop(y, x0):
    out = tf.slice(x, tf.stack([0, y, x0, 0]), [-1, crop_size, crop_size, -1])
    return tf.ensure_shape(out, [frames.shape[0], crop_size, crop_size, 3])

  if num_crops == 1:
    return crop(top, left)
  portrait = height > width
  ends = [(0, 0), (top, left), (height - crop_size, width - crop_size)]  # Start, centre, end.
  return tf.stack([crop(tf.where(portrait, y, top), tf.where(portrait, left, x0)) for y, x0 in ends])


def normalize(frames: tf.Tensor, *, zero_centering: bool, mean_rgb: Optional[Sequence[float]] = None,
              std_rgb: Optional[Sequence[float]] = None) -> tf.Tensor:
  """Pixel values (0..255 scale) to the model's float32 input.

  With `mean_rgb` and `std_rgb` (0..255 scale): (x - mean) / std per channel; else `zero_centering`:
  x * 2 / 255 - 1 in [-1, 1]; else x / 255 in [0, 1].
  """
  x = tf.cast(frames, tf.float32)
  if (mean_rgb is None) != (std_rgb is None):
    raise ValueError('mean_rgb and std_rgb must be given together')
  if mean_rgb is not None:
    if len(mean_rgb) != 3 or len(std_rgb) != 3 or min(std_rgb) <= 0:
      raise ValueError(f'mean_rgb {mean_rgb} / std_rgb {std_rgb}: need 3 values each, std > 0')
    return (x - tf.constant(mean_rgb, tf.float32)) / tf.constant(std_rgb, tf.float32)
  if zero_centering:
    return x * (2.0 / 255.0) - 1.0
  return x / 255.0


def augmentation_params(config: Any) -> Dict[str, Any]:
  """`config.dataset_configs.augmentation_params` as a plain dict, with defaults for missing keys."""
  aug = config.dataset_configs.get('augmentation_params')
  if aug is not None and hasattr(aug, 'to_dict'):
    aug = aug.to_dict()
  return _params(aug)
