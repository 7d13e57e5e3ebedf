"""Checkpoints: Orbax training checkpoints (save, resume, keep N, preemption), and loading the params of
vivit_jax, Scenic, ViT `.npz`, big_vision and Hugging Face checkpoints in Scenic naming; initialising a ViViT
from them (`init_from_pretrained`)."""

from vivit_jax.checkpoints.manager import CheckpointError, CheckpointManager, PreemptionWatcher
from vivit_jax.checkpoints.loading import (FORMATS, check_params_fit, detect_format, load_metadata, load_params,
                                           save_vivit_jax)
from vivit_jax.checkpoints.formats.scenic import save_scenic
from vivit_jax.checkpoints.pretrained import (InitReport, PretrainedMismatchError, inflate_kernel,
                                              init_from_pretrained, init_from_pretrained_with_report)

__all__ = ['CheckpointError', 'CheckpointManager', 'PreemptionWatcher', 'FORMATS', 'check_params_fit',
           'detect_format', 'load_metadata', 'load_params', 'save_scenic', 'save_vivit_jax', 'InitReport',
           'PretrainedMismatchError', 'inflate_kernel', 'init_from_pretrained', 'init_from_pretrained_with_report']
