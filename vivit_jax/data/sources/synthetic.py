"""Deterministic synthetic videos whose class is defined by motion.

Each video shows a few coloured squares moving over a static textured background, wrapping around the frame
edges. The class is the squares' velocity: one of `num_directions` directions times a speed (1, 2, ... pixels
per frame). Start positions, colours and the background are random per video, so no single frame tells the
class: a model has to compare frames. Example `i` of a split depends only on (seed, split, i), so every
process and every rerun sees the same videos, and any subset can be generated in any order.
"""

import dataclasses
import math
from typing import Dict, Tuple

import numpy as np

SPLITS = {'train': 0, 'validation': 1, 'test': 2}


@dataclasses.dataclass(frozen=True)
class SyntheticMotion:
  """`num_classes` motion classes of `num_frames x height x width x 3` uint8 clips."""
  num_classes: int
  num_frames: int
  height: int
  width: int
  num_directions: int = 8  # Directions evenly spaced on the circle; classes cycle through them first.
  num_objects: int = 3  # Squares per video, all moving with the class velocity.
  object_size: int = 4  # Side of each square in pixels.
  speed: float = 1.0  # Pixels per frame of the slowest classes; class c moves speed * (1 + c // directions).
  background: str = 'texture'  # 'texture': coarse noise in muted colours; 'plain': one dark colour, bright squares.
  wrap: bool = True  # Squares wrap around the edges; False: each whole trajectory stays inside the frame.
  seed: int = 0

  def __post_init__(self):
    if self.num_classes < 1 or self.num_frames < 2 or min(self.height, self.width) <= self.object_size:
      raise ValueError(f'SyntheticMotion needs num_classes >= 1, num_frames >= 2 and frames larger than '
                       f'object_size {self.object_size}; got {self.num_classes} classes, {self.num_frames} '
                       f'frames of {self.height}x{self.width}')
    if not self.wrap:
      for label in range(self.num_classes):
        travel = np.abs(np.asarray(self.velocity(label))) * (self.num_frames - 1)
        if np.any(travel > np.array([self.height, self.width]) - self.object_size):
          raise ValueError(f'SyntheticMotion(wrap=False): class {label} travels {travel.max():.1f} pixels in '
                           f'{self.num_frames} frames, more than a {self.height}x{self.width} frame leaves for a '
                           f'{self.object_size}-pixel square; lower the speed or the frame count')
    if self.background not in ('texture', 'plain'):
      raise ValueError(f"SyntheticMotion background must be 'texture' or 'plain'; got {self.background!r}")

  def velocity(self, label: int) -> Tuple[float, float]:
    """(dy, dx) in pixels per frame for a class."""
    directions = min(self.num_directions, self.num_classes)
    angle = 2.0 * math.pi * (label % directions) / directions
    speed = self.speed * (1.0 + label // directions)
    return speed * math.sin(angle), speed * math.cos(angle)

  def label(self, index: int) -> int:
    """Classes are balanced: example i has class i mod num_classes."""
    return index % self.num_classes

  def example(self, split: str, index: int) -> Dict[str, np.ndarray]:
    """{'video': uint8 [T, H, W, 3], 'label': int, 'positions': float [T, objects, 2] top-left corners}."""
    if split not in SPLITS:
      raise ValueError(f'unknown split {split!r}; expected one of {list(SPLITS)}')
    rng = np.random.default_rng([self.seed, SPLITS[split], index])
    label = self.label(index)
    video = np.repeat(self._background(rng)[None], self.num_frames, axis=0)
    velocity = np.asarray(self.velocity(label))
    if self.wrap:
      low, high = np.zeros(2), np.array([self.height, self.width], np.float64)
    else:  # Every start whose trajectory stays inside: the reversed class covers the same sets of positions.
      travel = velocity * (self.num_frames - 1)
      low = np.maximum(0.0, -travel)
      high = np.array([self.height, self.width], np.float64) - self.object_size - np.maximum(0.0, travel)
    start = rng.uniform(low, high, size=(self.num_objects, 2))
    colours = rng.integers(0 if self.background == 'texture' else 160, 256, size=(self.num_objects, 3),
                           dtype=np.uint8)
    steps = np.arange(self.num_frames, dtype=np.float64)[:, None, None]
    positions = start[None] + steps * velocity[None, None]
    corners = np.round(positions).astype(np.int64) % (self.height, self.width)
    ys, xs = np.arange(self.height), np.arange(self.width)
    for k in range(self.num_objects):
      rows = (ys[None, :] - corners[:, k, 0:1]) % self.height < self.object_size  # [T, H]
      cols = (xs[None, :] - corners[:, k, 1:2]) % self.width < self.object_size  # [T, W]
      video[rows[:, :, None] & cols[:, None, :]] = colours[k]
    return {'video': video, 'label': label, 'positions': positions}

  def _background(self, rng: np.random.Generator) -> np.ndarray:
    """A smooth random texture (coarse noise upsampled by pixel repetition) in muted colours, or a plain dark
    colour."""
    cell, (low, high) = (4, (40, 120)) if self.background == 'texture' else (max(self.height, self.width), (0, 64))
    coarse = rng.integers(low, high, size=(-(-self.height // cell), -(-self.width // cell), 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:self.height, :self.width]

  def batch(self, split: str, indices) -> Dict[str, np.ndarray]:
    """Stacked examples: {'video': uint8 [B, T, H, W, 3], 'label': int32 [B]}."""
    examples = [self.example(split, int(i)) for i in indices]
    return {'video': np.stack([e['video'] for e in examples]),
            'label': np.asarray([e['label'] for e in examples], np.int32)}
