"""A tiny image ViT pretrained on single frames of the synthetic motion videos, saved as a Scenic checkpoint.

It stands in, on a CPU, for the ImageNet ViT that the paper's ViViTs start from: `init_from` inflates its 2D
patch kernel into a tubelet kernel (central frame, average, ARP) and copies its blocks into the spatial
encoder, so `configs/ablations/synthetic_init.py` can compare central-frame initialisation with random
initialisation at equal steps.

The frame task: object occupancy. A frame is cut into a `grid x grid` lattice of cells (8 x 8 cells of 4 x 4
pixels for 32 x 32 frames); the target says, for every cell, whether any moving square covers a pixel of it
(multi-label, sigmoid cross-entropy on the class token). One frame answers it, and solving it means finding
the squares against the textured background and encoding WHERE they are in the class token, at a resolution
finer than a patch: what the temporal encoder needs to tell a direction, which is the displacement of the
squares between two frames (4 pixels, one cell, between the central frames of two 4-frame tubelets at speed 1).
Classifying the cell of object 0 alone would be ill-posed: in one frame nothing tells object 0 from the others.

The parameter tree is Scenic's ViT tree: `embedding` (2D conv kernel `[fh, fw, 3, d]`, bias), `cls`
`[1, 1, d]`, `Transformer/posembed_input/pos_embedding` `[1, 1 + N, d]`, `Transformer/encoderblock_i/...`,
`Transformer/encoder_norm`, `head`.
"""

import dataclasses
import functools
import logging
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vivit_jax.checkpoints import save_scenic
from vivit_jax.data.synthetic import SyntheticMotion
from vivit_jax.models import embedding, encoder, heads

DEFAULT_STEPS = 1500
DEFAULT_GRID = 8  # 4-pixel cells: 4 (patch-sized cells) taught too little position to help (see the ablation).
DEFAULT_LEARNING_RATE = 3e-3


@dataclasses.dataclass(frozen=True)
class ImageViTSpec:
  """Sizes of the image ViT; the defaults are configs/synthetic.py's spatial encoder and clips."""
  hidden_size: int = 64
  num_heads: int = 4
  mlp_dim: int = 128
  num_layers: int = 2
  patch: Tuple[int, int] = (8, 8)
  image_size: int = 32
  num_frames: int = 8  # Frames per synthetic video (each one is a training image).
  grid: int = DEFAULT_GRID  # Occupancy cells per side: `grid * grid` labels.


def spec_from_config(config: ml_collections.ConfigDict, grid: int = DEFAULT_GRID) -> ImageViTSpec:
  """The image ViT whose weights fit the spatial encoder of a factorised-encoder ViViT `config`."""
  s, d = config.model.spatial_transformer, config.dataset_configs
  return ImageViTSpec(hidden_size=config.model.hidden_size, num_heads=s.num_heads, mlp_dim=s.mlp_dim,
                      num_layers=s.num_layers, patch=tuple(config.model.patches.size[:2]),
                      image_size=d.crop_size, num_frames=d.num_frames, grid=grid)


class ImageViT(nn.Module):
  """ViT with a class token: images `[B, H, W, 3]` -> logits `[B, num_classes]` (Scenic's ViT names)."""
  num_classes: int
  hidden_size: int
  num_heads: int
  mlp_dim: int
  num_layers: int
  patch: Tuple[int, int] = (8, 8)

  @nn.compact
  def __call__(self, images: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    # A ViViT's patch embedding on a one-frame video: the parameters of Scenic's ViT ('embedding', a 2D
    # convolution kernel), computed as one matmul on the CPU and GPU (`embedding.tubelets`).
    x = embedding.TokenEmbedding(self.hidden_size, self.patch, method='temporal_sampling', n_sampled_frames=1,
                                 name='embedding')(images[:, None])
    b, _, h, w, d = x.shape
    x = heads.add_class_token(self, x.reshape(b, h * w, d), 'cls')
    # The head reads the class token alone, so the last block computes only that token.
    x = encoder.Encoder(self.num_layers, self.mlp_dim, self.num_heads, output_tokens=1, name='Transformer')(
        x, train=train)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name='head')(heads.pool(x, 'token'))


def create_image_vit(spec: ImageViTSpec) -> ImageViT:
  return ImageViT(num_classes=spec.grid * spec.grid, hidden_size=spec.hidden_size, num_heads=spec.num_heads,
                  mlp_dim=spec.mlp_dim, num_layers=spec.num_layers, patch=tuple(spec.patch))


def occupancy(positions: np.ndarray, height: int, width: int, object_size: int, grid: int) -> np.ndarray:
  """Per frame, which of the `grid x grid` cells a square covers: float32 `[T, grid * grid]` of 0 / 1.

  `positions` are SyntheticMotion's top-left corners `[T, objects, 2]`, rounded and wrapped as it draws them.
  """
  if height % grid or width % grid:
    raise ValueError(f'a {height}x{width} frame does not divide into a {grid}x{grid} grid of cells')
  corners = np.round(positions).astype(np.int64) % (height, width)  # [T, K, 2]
  offsets = np.arange(object_size)
  rows = (corners[..., 0:1] + offsets) % height // (height // grid)  # [T, K, size] cell rows covered.
  cols = (corners[..., 1:2] + offsets) % width // (width // grid)
  cells = np.zeros((positions.shape[0], grid, grid), np.float32)
  t = np.arange(positions.shape[0])[:, None, None, None]
  cells[t, rows[..., :, None], cols[..., None, :]] = 1.0
  return cells.reshape(positions.shape[0], grid * grid)


def frame_dataset(spec: ImageViTSpec, split: str, num_videos: int, seed: int = 0) -> Dict[str, np.ndarray]:
  """All frames of the first `num_videos` videos of `split`: 'images' float32 `[N, H, W, 3]` in [-1, 1] (the
  trainer's zero-centred scaling) and 'targets' `[N, grid * grid]` occupancy."""
  source = SyntheticMotion(num_classes=8, num_frames=spec.num_frames, height=spec.image_size,
                           width=spec.image_size, seed=seed)
  videos = source.batch(split, range(num_videos), with_positions=True)
  targets = [occupancy(p, source.height, source.width, source.object_size, spec.grid) for p in videos['positions']]
  images = videos['video'].reshape(-1, *videos['video'].shape[2:]).astype(np.float32) * (2.0 / 255.0) - 1.0
  return {'images': images, 'targets': np.concatenate(targets)}


def frame_metrics(logits: np.ndarray, targets: np.ndarray) -> Dict[str, float]:
  """'frame_accuracy': frames whose every cell is right; 'cell_accuracy'; 'cell_f1' of the occupied cells."""
  predicted = np.asarray(logits) > 0.0
  truth = np.asarray(targets) > 0.5
  true_positives = float(np.sum(predicted & truth))
  f1 = 2 * true_positives / max(float(np.sum(predicted) + np.sum(truth)), 1.0)
  return {'frame_accuracy': float(np.mean(np.all(predicted == truth, axis=1))),
          'cell_accuracy': float(np.mean(predicted == truth)), 'cell_f1': f1}


def _make_steps(model: ImageViT, tx: optax.GradientTransformation):
  """(train_step, predict), jitted."""

  def loss_fn(params, images, targets):
    logits = model.apply({'params': params}, images, train=True)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets))

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def train_step(params, opt_state, images, targets):
    loss, grads = jax.value_and_grad(loss_fn)(params, images, targets)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  predict = jax.jit(lambda params, images: model.apply({'params': params}, images))
  return train_step, predict


def _predict_all(predict, params, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
  return np.concatenate([np.asarray(predict(params, images[i:i + batch_size]))
                         for i in range(0, len(images), batch_size)])


def train_image_vit(spec: ImageViTSpec, steps: int, *, batch_size: int = 128,
                    learning_rate: float = DEFAULT_LEARNING_RATE,
                    num_videos: int = 1024, eval_videos: int = 64, seed: int = 0,
                    log: Optional[Callable[[str], None]] = logging.info) -> Tuple[Dict[str, Any], Dict[str, float]]:
  """Trains the image ViT on occupancy for `steps` steps of `batch_size` frames drawn from the frames of the
  first `num_videos` training videos (AdamW, warmup then cosine decay, gradient clipping at 1).

  Returns:
    (params as numpy, metrics on the frames of `eval_videos` validation videos, with 'train_loss').
  """
  model = create_image_vit(spec)
  train, valid = frame_dataset(spec, 'train', num_videos), frame_dataset(spec, 'validation', eval_videos)
  schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(1, min(100, steps // 10)),
                                                max(steps, 1))
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))
  # Jitted: op by op, the initialisation took 5.5 s on 2 CPU cores, compiled 2.0 s.
  params = jax.jit(model.init)(jax.random.PRNGKey(seed), train['images'][:1])['params']
  opt_state = tx.init(params)
  train_step, predict = _make_steps(model, tx)
  rng = np.random.default_rng(seed)
  losses = []
  for step in range(1, steps + 1):
    idx = rng.integers(0, len(train['images']), batch_size)
    params, opt_state, loss = train_step(params, opt_state, train['images'][idx], train['targets'][idx])
    losses.append(loss)
    if log is not None and (step % 100 == 0 or step == steps):
      log(f'image ViT step {step}/{steps}: train loss {float(np.mean(jax.device_get(losses[-100:]))):.4f}')
  metrics = frame_metrics(_predict_all(predict, params, valid['images']), valid['targets'])
  metrics['train_loss'] = float(np.mean(jax.device_get(losses[-20:]))) if losses else float('nan')
  return jax.device_get(params), metrics


def pretrain_image_vit(output_path: str, steps: int = DEFAULT_STEPS, spec: Optional[ImageViTSpec] = None,
                       log: Optional[Callable[[str], None]] = logging.info, **kwargs) -> Dict[str, Any]:
  """Pretrains the image ViT on single synthetic frames and saves it as a Scenic msgpack file.

  Args:
    output_path: the file to write (`load_params` reads it, format 'scenic'); its directory is created.
    steps: training steps.
    spec: the sizes; None: configs/synthetic.py's spatial encoder (`ImageViTSpec()`).
    log: progress and result lines (None: silent).
    **kwargs: `train_image_vit`'s keyword arguments (batch_size, learning_rate, num_videos, eval_videos, seed).

  Returns:
    {'path', 'steps', 'wall_time_s', 'frame_accuracy', 'cell_accuracy', 'cell_f1', 'train_loss'}; the
    metrics are on validation frames.
  """
  spec = spec or ImageViTSpec()
  start = time.time()
  params, metrics = train_image_vit(spec, steps, log=log, **kwargs)
  save_scenic(output_path, params, step=steps)
  result = {'path': os.fspath(output_path), 'steps': steps, 'wall_time_s': time.time() - start, **metrics}
  if log is not None:
    log(f"image ViT saved to {result['path']}: frame accuracy {metrics['frame_accuracy']:.3f}, cell accuracy "
        f"{metrics['cell_accuracy']:.3f}, cell F1 {metrics['cell_f1']:.3f} after {steps} steps "
        f"({result['wall_time_s']:.0f} s)")
  return result
