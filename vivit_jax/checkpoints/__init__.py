"""Checkpoints: Orbax training checkpoints (`manager.py`: save, resume, keep N, preemption); the params of
vivit_jax, Scenic, ViT `.npz`, big_vision and Hugging Face checkpoints in Scenic naming (`loading.py`,
`formats/`); restore-for-use, the one path from any checkpoint to a config, placed params, preprocessing and
label names (`restore.py`); initialising a ViViT from a pretrained model (`pretrained.py`); conversion between
the formats (`convert.py`)."""

from vivit_jax.checkpoints.manager import CheckpointError, CheckpointManager
from vivit_jax.checkpoints.preemption import PreemptionWatcher
from vivit_jax.checkpoints.loading import (FORMATS, Loaded, check_params_fit, detect_format, load_checkpoint,
                                           load_metadata, load_params, save_vivit_jax)
from vivit_jax.checkpoints.formats.scenic import save_scenic
from vivit_jax.checkpoints.pretrained import (InitReport, PretrainedMismatchError, inflate_kernel,
                                              init_from_pretrained, init_from_pretrained_with_report)
from vivit_jax.checkpoints.restore import Restored, restore_for_use

__all__ = ['CheckpointError', 'CheckpointManager', 'PreemptionWatcher', 'FORMATS', 'Loaded', 'check_params_fit',
           'detect_format', 'load_checkpoint', 'load_metadata', 'load_params', 'save_scenic', 'save_vivit_jax',
           'InitReport', 'PretrainedMismatchError', 'Restored', 'inflate_kernel', 'init_from_pretrained',
           'init_from_pretrained_with_report', 'restore_for_use']
