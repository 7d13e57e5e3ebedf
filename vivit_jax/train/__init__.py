"""Training: `train_and_evaluate(config, workdir)` (`loop.py`), the pure train step (`step.py`), the sharded train
state (`state.py`), optimizer and schedules (`optim.py`), mixup and CutMix (`mixup.py`), what a run reports
(`reporting.py`) and `--dry_run` (`dry_run.py`).

The loop's names are loaded on first use, so that the train step, state and optimizer import without the loop's
own dependencies (Orbax, the data pipelines): the model benchmark imports only what it runs.
"""

__all__ = ['Run', 'jitted_train_step', 'restore_or_initialise', 'setup', 'train', 'train_and_evaluate',
           'training_length']


def __getattr__(name):
  if name in __all__:
    from vivit_jax.train import loop  # pylint: disable=g-import-not-at-top
    return getattr(loop, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
