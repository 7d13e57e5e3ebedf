"""Shapes a config implies, read without building anything: the model's input clip and its token grid."""

from typing import Tuple

import ml_collections


def input_shape(config: ml_collections.ConfigDict, batch: int = 1) -> Tuple[int, ...]:
  """[batch, frames, crop, crop, 3] of the clips the model takes."""
  d = config.dataset_configs
  return (batch, d.num_frames, d.crop_size, d.crop_size, 3)


def token_grid(config: ml_collections.ConfigDict) -> Tuple[int, int, int]:
  """(frames, height, width) of the token grid: tubelets over time (or sampled frames) x patches per side."""
  m, d = config.model, config.dataset_configs
  fh, fw = m.patches.size[:2]
  if m.temporal_encoding_config.method == 'temporal_sampling':
    frames = min(m.temporal_encoding_config.n_sampled_frames, d.num_frames)
  else:
    frames = d.num_frames // m.patches.size[2]
  return frames, d.crop_size // fh, d.crop_size // fw
