"""Positional-embedding surgery for `init_from_pretrained`: CLS rows, tiling and per-axis resizing.

A table `[1, cls + T*H*W, d]` is split into its optional CLS row and a token grid `[T, H, W, d]` (t-major, as
the tubelet embedding flattens tokens). The grid changes size per axis:

  tile         the source's frames repeated over time (`np.tile`, Scenic's `tile_positional_embeddings`); the
               spatial grid must already match.
  resize       each axis resized linearly, corner-aligned: `scipy.ndimage.zoom(order=1)` over the spatial grid
               (Scenic's `interpolate_positional_embeddings`, per frame), then over time. An image (one frame)
               is therefore resized, then repeated. Scenic instead treats a whole T*H*W table as one square.
  resize_tile  spatial resize per frame, then the frames tiled over time.

The FE temporal table `[1, cls + T, d]` is resized in 1D (Scenic's `interpolate_1d_positional_embeddings`).
"""

import math
from typing import Optional, Tuple

import numpy as np
import scipy.ndimage

Grid = Tuple[int, int, int]
SIZE_CHANGES = ('tile', 'resize', 'resize_tile')


def split_cls(posemb: np.ndarray, has_cls: bool) -> Tuple[Optional[np.ndarray], np.ndarray]:
  """(CLS row `[1, 1, d]` or None, token table `[n, d]`) of a `[1, n(+1), d]` table."""
  posemb = np.asarray(posemb, np.float32)
  return (posemb[:, :1], posemb[0, 1:]) if has_cls else (None, posemb[0])


def zoom_axis(table: np.ndarray, axis: int, size: int) -> np.ndarray:
  """`table` linearly resized along `axis` to `size`, corner-aligned (`scipy.ndimage.zoom`, order 1)."""
  if table.shape[axis] == size:
    return table
  factors = [1.0] * table.ndim
  factors[axis] = size / table.shape[axis]
  out = scipy.ndimage.zoom(table, factors, order=1)
  if out.shape[axis] != size:  # Guards against the rounding of `size / n * n`.
    raise ValueError(f'zoom produced {out.shape[axis]} rows along axis {axis}, expected {size}')
  return out


def resize_spatial(grid: np.ndarray, height: int, width: int) -> np.ndarray:
  """`[T, H, W, d]` -> `[T, height, width, d]`: each frame zoomed as Scenic zooms a square image grid."""
  if grid.shape[1:3] == (height, width):
    return grid
  factors = (height / grid.shape[1], width / grid.shape[2], 1)
  frames = [scipy.ndimage.zoom(frame, factors, order=1) for frame in grid]
  return np.stack(frames).astype(np.float32)


def tile_time(grid: np.ndarray, frames: int, where: str) -> np.ndarray:
  """`[T, H, W, d]` repeated over time to `frames` frames (`frames` must be a multiple of T)."""
  if frames % grid.shape[0]:
    raise ValueError(f'{where}: cannot tile {grid.shape[0]} frames of positional embeddings to {frames}; '
                     "use init_from.positional_embed_size_change='resize'")
  return np.tile(grid, (frames // grid.shape[0], 1, 1, 1))


def resize_grid(grid: np.ndarray, target: Grid, method: str, where: str) -> Tuple[np.ndarray, str]:
  """`[Ts, Hs, Ws, d]` -> `[T, H, W, d]` by `method` (see the module docstring); also says what was done."""
  if method not in SIZE_CHANGES:
    raise ValueError(f'{where}: positional_embed_size_change must be one of {SIZE_CHANGES}, got {method!r}')
  t, h, w = target
  source = grid.shape[:3]
  if method == 'tile' and source[1:] != (h, w):
    raise ValueError(f'{where}: tile keeps the spatial grid, but the source grid is {source[1]}x{source[2]} '
                     f"and the target's {h}x{w}; use positional_embed_size_change='resize' or 'resize_tile'")
  grid = resize_spatial(grid, h, w)
  if method == 'resize' and grid.shape[0] > 1:
    grid = zoom_axis(grid, 0, t)
  else:
    grid = tile_time(grid, t, where)
  how = f'{method}: grid {source[0]}x{source[1]}x{source[2]} -> {t}x{h}x{w} (frames x height x width)'
  return grid.astype(np.float32), how


def guess_source_grid(num_tokens: int, target: Grid, per_frame: bool, where: str) -> Grid:
  """The source's (T, H, W) token grid from its token count, assuming square frames when it must guess.

  A square per-frame table (an image ViT, a FE spatial encoder) is one frame. A video table keeps the target's
  spatial grid when its size allows (a change of frame count), else the target's frame count (a change of
  resolution).
  """
  side = math.isqrt(num_tokens)
  if per_frame and side * side == num_tokens:
    return (1, side, side)
  t, h, w = target
  if num_tokens % (h * w) == 0:
    return (num_tokens // (h * w), h, w)
  if num_tokens % t == 0 and math.isqrt(num_tokens // t) ** 2 == num_tokens // t:
    side = math.isqrt(num_tokens // t)
    return (t, side, side)
  raise ValueError(f'{where}: cannot tell the frames x height x width grid of the source\'s {num_tokens} tokens '
                   f'for a target grid {t}x{h}x{w}; pass source_grid=(frames, height, width)')


def adapt_posemb(source: np.ndarray, target: np.ndarray, *, source_cls: bool, target_cls: bool,
                 target_hw: Tuple[int, int], method: str, per_frame: bool, source_grid: Optional[Grid],
                 where: str) -> Tuple[np.ndarray, str]:
  """A spatial or spatio-temporal table `source` adapted to the shape of `target` (the fresh table).

  CLS rows: token -> token copies the source's; token -> gap drops it; gap -> token keeps the target's fresh row.
  """
  cls_row, table = split_cls(source, source_cls)
  target_cls_row, target_table = split_cls(target, target_cls)
  h, w = target_hw
  if len(target_table) % (h * w):
    raise ValueError(f'{where}: {len(target_table)} target tokens are not frames of {h}x{w} patches')
  grid_t = (len(target_table) // (h * w), h, w)
  src_grid = source_grid or guess_source_grid(len(table), grid_t, per_frame, where)
  if int(np.prod(src_grid)) != len(table):
    raise ValueError(f'{where}: source grid {src_grid} does not hold the source\'s {len(table)} tokens')
  how = []
  if src_grid == grid_t:
    grid = table.reshape(grid_t + (-1,))
  else:
    grid, resized = resize_grid(table.reshape(src_grid + (-1,)), grid_t, method, where)
    how.append(resized)
  if grid.shape[-1] != target.shape[-1]:
    raise ValueError(f'{where}: source width {grid.shape[-1]} != target width {target.shape[-1]}')
  rows = grid.reshape(1, -1, grid.shape[-1])
  return _with_cls(rows, cls_row, target_cls_row, target_cls, how)


def _with_cls(rows: np.ndarray, cls_row: Optional[np.ndarray], target_cls_row: Optional[np.ndarray],
              target_cls: bool, how: list) -> Tuple[np.ndarray, str]:
  """Puts the CLS row in front where the target has one: the source's, else the target's own fresh row."""
  if target_cls:
    first = cls_row if cls_row is not None else target_cls_row
    how.append('CLS row from the source' if cls_row is not None else 'CLS row left fresh (gap source)')
    rows = np.concatenate([first, rows], axis=1)
  elif cls_row is not None:
    how.append('source CLS row dropped (gap target)')
  return rows.astype(np.float32), '; '.join(how)


def adapt_temporal_posemb(source: np.ndarray, target: np.ndarray, *, source_cls: bool, target_cls: bool,
                          where: str) -> Tuple[np.ndarray, str]:
  """The FE temporal table `[1, cls + T, d]` resized linearly in 1D to the target's frame count."""
  cls_row, table = split_cls(source, source_cls)
  target_cls_row, target_table = split_cls(target, target_cls)
  how = []
  if len(table) != len(target_table):
    how.append(f'1D resize: {len(table)} -> {len(target_table)} frames')
    table = zoom_axis(table, 0, len(target_table))
  rows = table[None].astype(np.float32)
  return _with_cls(rows, cls_row, target_cls_row, target_cls, how)
