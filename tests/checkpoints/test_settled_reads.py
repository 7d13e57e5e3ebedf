"""Loops made while `settled_reads` holds let their tasks finish on close and leave no error unretrieved."""

import asyncio
import gc
import logging

from vivit_jax.checkpoints.settled_reads import settled_reads


async def _fail(delay):
  await asyncio.sleep(delay)
  raise ValueError('NOT_FOUND: a missing array file')


def test_tasks_that_failed_before_the_close_or_during_it_are_not_logged_as_never_retrieved(caplog):
  with settled_reads():
    loop = asyncio.new_event_loop()
  early, late = loop.create_task(_fail(0.0)), loop.create_task(_fail(0.05))
  loop.run_until_complete(asyncio.sleep(0.01))  # `early` has failed; nobody looked at its error.
  assert early.done() and not late.done()
  with caplog.at_level(logging.ERROR, logger='asyncio'):
    loop.close()  # Waits for `late`, then marks both errors as retrieved.
    assert late.done() and loop.is_closed()
    del early, late
    gc.collect()
  assert 'never retrieved' not in caplog.text


def test_without_it_asyncio_would_log_the_early_failure(caplog):
  loop = asyncio.new_event_loop()
  task = loop.create_task(_fail(0.0))
  loop.run_until_complete(asyncio.sleep(0.01))
  with caplog.at_level(logging.ERROR, logger='asyncio'):
    loop.close()
    del task
    gc.collect()
  assert 'Task exception was never retrieved' in caplog.text  # What the test above guards against.
