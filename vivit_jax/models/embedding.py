"""Video to tokens: tubelet embedding (`3d_conv`) and uniform frame sampling (`temporal_sampling`).

Both are one module named `embedding` holding Scenic's parameters: `kernel` `[ft, fh, fw, 3, d]` (tubelets) or
`[fh, fw, 3, d]` (frames), and `bias` `[d]`. Patch sizes use Scenic's order `(fh, fw, ft)`.
"""

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

KERNEL_INIT_METHODS = (None, 'central_frame_initializer', 'average_frame_initializer',
                       'average_arp_frame_initializer')


def arp_coefficients(num_frames: int) -> np.ndarray:
  """Approximate rank pooling coefficients alpha_t = 2(T-t+1) - (T+1)(H_T - H_{t-1}), t = 1..T."""
  harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, num_frames + 1))])
  t = np.arange(1, num_frames + 1)
  return 2.0 * (num_frames - t + 1) - (num_frames + 1) * (harmonic[num_frames] - harmonic[t - 1])


def inflation_weights(method: str, frames: int, pretrained: bool = True) -> np.ndarray:
  """Per-frame weights [frames] that inflate one 2D patch kernel into a tubelet kernel (weight_i * kernel).

  - central_frame_initializer: 1 at the central frame frames // 2, 0 elsewhere;
  - average_frame_initializer: 1 / frames on every frame (filter inflation: the tubelet's response to a static
    clip equals the 2D kernel's); for a fresh kernel (`pretrained=False`) 1, the slice merely repeated;
  - average_arp_frame_initializer: the ARP coefficient of frame i / frames.
  """
  if method == 'central_frame_initializer':
    weights = np.zeros(frames)
    weights[frames // 2] = 1.0
    return weights
  if method == 'average_frame_initializer':
    return np.full(frames, 1.0 / frames if pretrained else 1.0)
  if method == 'average_arp_frame_initializer':
    return arp_coefficients(frames) / frames
  raise ValueError(f'unknown kernel_init_method {method!r}; expected one of {KERNEL_INIT_METHODS[1:]}')


def tubelet_kernel_init(method: Optional[str]):
  """Initialiser of a `[ft, fh, fw, c, d]` kernel.

  None: lecun normal over the whole tubelet (flax's Conv default). The others draw that kernel and keep only
  its first temporal slice, inflated on the TEMPORAL axis by `inflation_weights(method, ft, pretrained=False)`
  (Scenic's central-frame initialiser zeroes slices of the width axis instead, a defect not copied).
  """
  base = nn.initializers.lecun_normal()
  if method is None:
    return base
  if method not in KERNEL_INIT_METHODS:
    raise ValueError(f'unknown kernel_init_method {method!r}; expected one of {KERNEL_INIT_METHODS}')

  def init(key, shape, dtype=jnp.float32):
    if len(shape) != 5:
      raise ValueError(f'{method} initialises 5-d tubelet kernels [ft, fh, fw, c, d], got shape {shape}')
    weights = inflation_weights(method, shape[0], pretrained=False)
    return jnp.asarray(weights, dtype)[:, None, None, None, None] * base(key, shape, dtype)[0][None]

  return init


def uniform_frame_indices(num_frames: int, n_sampled_frames: int) -> np.ndarray:
  """Scenic's uniform frame sampling: frames at k * T / (n + 1), rounded; all frames when n >= T.

  Like Scenic's `sample_frames_uniformly`, the positions come from a float `arange`, which for some (T, n)
  yields n + 1 frames (T=8, n=5 -> [1, 3, 4, 5, 7, 7]); kept so that Scenic checkpoints see the same tokens.
  """
  if n_sampled_frames < num_frames:
    step = num_frames / (n_sampled_frames + 1)
    positions = np.arange(step, num_frames, step).astype(np.float32)
  else:
    positions = np.arange(0, num_frames, 1, dtype=np.float32)
  return np.minimum(np.round(positions).astype(np.int32), num_frames - 1)


def check_video_shape(shape: Sequence[int], patch: Tuple[int, int], frames_multiple: int) -> None:
  """Raises a ValueError naming the expected and found shapes when tokens cannot be cut from `shape`."""
  if len(shape) != 5:
    raise ValueError(f'expected a video batch [batch, frames, height, width, channels] (rank 5), '
                     f'found shape {tuple(shape)} (rank {len(shape)})')
  _, t, h, w, _ = shape
  fh, fw = patch
  if h % fh or w % fw or t % frames_multiple:
    raise ValueError(
        f'video shape {tuple(shape)} does not divide into tubelets of (frames, height, width) = '
        f'({frames_multiple}, {fh}, {fw}): expected frames a multiple of {frames_multiple}, height a '
        f'multiple of {fh} and width a multiple of {fw}, found {t}x{h}x{w}')


class TokenEmbedding(nn.Module):
  """Video `[B, T, H, W, C]` -> token grid `[B, T', H', W', d]`.

  `method='3d_conv'`: non-overlapping tubelets `(ft, fh, fw)`. `method='temporal_sampling'`: `n_sampled_frames`
  frames picked uniformly, each cut into `fh x fw` patches by one shared 2D kernel (the same tokens as Scenic's
  frames-stacked-along-height convolution).
  """
  hidden_size: int
  patch_size: Tuple[int, ...]  # Scenic's order: (fh, fw, ft) or (fh, fw).
  method: str = '3d_conv'
  n_sampled_frames: Optional[int] = None
  kernel_init_method: Optional[str] = None
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, video: jnp.ndarray) -> jnp.ndarray:
    fh, fw = self.patch_size[:2]
    if self.method == '3d_conv':
      ft = self.patch_size[2]
      check_video_shape(video.shape, (fh, fw), ft)
      window = (ft, fh, fw)
    elif self.method == 'temporal_sampling':
      check_video_shape(video.shape, (fh, fw), 1)
      video = video[:, uniform_frame_indices(video.shape[1], self.n_sampled_frames)]
      window = (1, fh, fw)
    else:
      raise ValueError(f"unknown temporal encoding method {self.method!r}; expected '3d_conv' or "
                       "'temporal_sampling'")
    channels = video.shape[-1]
    if self.method == '3d_conv':
      kernel = self.param('kernel', tubelet_kernel_init(self.kernel_init_method),
                          window + (channels, self.hidden_size), jnp.float32)
    else:
      kernel = self.param('kernel', nn.initializers.lecun_normal(), (fh, fw, channels, self.hidden_size),
                          jnp.float32)[None]
    bias = self.param('bias', nn.initializers.zeros, (self.hidden_size,), jnp.float32)
    return tubelets(video.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)


def tubelets(video: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """Non-overlapping tubelets of `video` `[B, T, H, W, C]` through `kernel` `[ft, fh, fw, C, d]`.

  One matmul over the tubelets cut out by a reshape, except on TPUs (a strided convolution there). XLA's CPU
  convolution took 2.3x as long in the backward pass (64 vs 28 ms for S-size tokens); on an H200 cuDNN ran
  ViViT-B/16x2's as a generic implicit-GEMM 3D convolution, 3.3 ms of a 63 ms bf16 train step at batch 8
  (2.35 ms forward at about 25 TFLOP/s, 0.6 ms of layout changes, 0.4 ms weight gradient: `vivit-benchmark
  --model --profile_dir`), where the matmul is about 0.1 ms of the GPU's matrix rate.
  """
  window = kernel.shape[:3]
  if jax.default_backend() == 'tpu':
    return jax.lax.conv_general_dilated(video, kernel, window_strides=window, padding='VALID',
                                        dimension_numbers=('NTHWC', 'THWIO', 'NTHWC'))
  (b, t, h, w, c), (ft, fh, fw) = video.shape, window
  cut = video.reshape(b, t // ft, ft, h // fh, fh, w // fw, fw, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return cut.reshape(b, t // ft, h // fh, w // fw, ft * fh * fw * c) @ kernel.reshape(-1, kernel.shape[-1])
