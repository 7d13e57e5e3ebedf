"""Checkpoints: Orbax training checkpoints (save, resume, keep N, preemption)."""

from vivit_jax.checkpoints.manager import CheckpointError, CheckpointManager, PreemptionWatcher

__all__ = ['CheckpointError', 'CheckpointManager', 'PreemptionWatcher']
