"""Checkpoints: Orbax training checkpoints (save, resume, keep N, preemption), and loading the params of
vivit_jax, Scenic, ViT `.npz`, big_vision and Hugging Face checkpoints in Scenic naming."""

from vivit_jax.checkpoints.manager import CheckpointError, CheckpointManager, PreemptionWatcher
from vivit_jax.checkpoints.loading import (FORMATS, check_params_fit, detect_format, load_metadata, load_params,
                                           save_vivit_jax)
from vivit_jax.checkpoints.formats.scenic import save_scenic

__all__ = ['CheckpointError', 'CheckpointManager', 'PreemptionWatcher', 'FORMATS', 'check_params_fit',
           'detect_format', 'load_metadata', 'load_params', 'save_scenic', 'save_vivit_jax']
