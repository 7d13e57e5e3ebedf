"""Multi-process runs: every process must write into one shared workdir.

Orbax saves every process's shards into `{workdir}/checkpoints` and process 0 commits the step once all of them
are there, so processes given different workdirs (or one path that is a separate local disk on each machine)
used to wait for each other forever. `check_shared_workdir` proves the directory is shared before any work:

1. process 0 writes a token file named after a random nonce into its workdir and publishes the nonce in the JAX
   distributed key-value store (a file name no process has looked up before, so no network file system answers
   from a stale cache);
2. every other process reads that token from its own workdir: a missing file means that it sees another directory;
3. every process publishes its verdict (workdir, host, problem) and reads everyone's, so all of them raise the same
   `SharedWorkdirError`, or none does.

Each wait has a deadline, so a process that never arrives stops the others after `timeout_s` instead of hanging.
"""

import itertools
import json
import logging
import os
import secrets
import socket
import time
from typing import Any, Dict, List, Optional

import jax

from vivit_jax.paths import PathError, is_remote

TOKEN_PREFIX = '.vivit_jax-shared-workdir-'  # + the nonce; removed once every process has read it.
TIMEOUT_S = 120.0  # How long a process waits for the others to reach the check.
SETTLE_S = 2.0  # How long a process retries reading the token (a network file system may show it late).
_KEY_PREFIX = 'vivit_jax/shared_workdir'
_calls = itertools.count()  # Every process calls the check equally often, so the keys of one call agree.


class SharedWorkdirError(PathError):
  """Processes of one run that do not see the same workdir."""


def _client() -> Optional[Any]:
  """The JAX distributed runtime client (what Orbax uses for its own barriers), or None without one."""
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  return distributed.global_state.client


def _token_path(workdir: str, nonce: str) -> str:
  return os.path.join(workdir, TOKEN_PREFIX + nonce)


def _write_token(workdir: str, nonce: str) -> Optional[str]:
  """Writes the token atomically; returns what went wrong, or None."""
  path = _token_path(workdir, nonce)
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(path + '.tmp', 'w') as f:
      f.write(nonce)
    os.replace(path + '.tmp', path)
  except OSError as e:
    return f'cannot write {path}: {e.strerror or e}'
  return None


def _read_token(workdir: str, nonce: str, settle_s: float) -> Optional[str]:
  """None when `workdir` holds process 0's token; else what was found there (retried for `settle_s`)."""
  path = _token_path(workdir, nonce)
  deadline = time.monotonic() + settle_s
  while True:
    try:
      os.listdir(workdir)  # Revalidates a network file system's cached listing.
      with open(path) as f:
        found = f.read().strip()
      problem = None if found == nonce else f'found {path} without the token process 0 wrote into it'
    except FileNotFoundError:
      problem = f'found no {path} (the token process 0 wrote into its workdir)'
    except OSError as e:
      problem = f'cannot read {path}: {e.strerror or e}'
    if problem is None or time.monotonic() >= deadline:
      return problem
    time.sleep(0.2)


def _get(client: Any, key: str, deadline: float) -> Optional[str]:
  """The value of `key` once some process sets it; None if that does not happen before `deadline`."""
  timeout_ms = max(1, int((deadline - time.monotonic()) * 1000))
  try:
    return client.blocking_key_value_get(key, timeout_ms)
  except jax.errors.JaxRuntimeError:
    return None


def _summary(verdicts: List[Optional[Dict[str, Any]]]) -> str:
  """'process 0 (host a): /w; process 1 (host b): /w' (at most 8 processes named)."""
  named = [f"process {i} (host {v['host']}): {v['workdir']}" for i, v in enumerate(verdicts) if v][:8]
  more = len(verdicts) - len(named)
  return '; '.join(named) + (f'; and {more} more' if more > 0 else '')


def _raise_if_disagree(verdicts: List[Optional[Dict[str, Any]]], timeout_s: float) -> None:
  """Raises the one error every process raises alike, from every process's verdict (None: it never came)."""
  if verdicts[0] and verdicts[0]['problem']:  # Process 0 could not write its token: not a sharing problem.
    raise SharedWorkdirError(f"workdir {verdicts[0]['workdir']}: process 0 {verdicts[0]['problem']}")
  problems = []
  for i, v in enumerate(verdicts):
    if v is None:
      problems.append(f'process {i} did not reach the workdir check within {timeout_s:.0f} s')
    elif v['problem']:
      problems.append(f"process {i} {v['problem']}")
    elif is_remote(v['workdir']) and verdicts[0] and v['workdir'] != verdicts[0]['workdir']:
      problems.append(f'process {i} has another remote workdir than process 0')
  if problems:
    raise SharedWorkdirError(f"every process needs the same shared workdir (one directory that all of them "
                             f"read and write, e.g. on a network file system), but {'; '.join(problems[:8])}. "
                             f'Workdirs: {_summary(verdicts)}')


def check_shared_workdir(workdir: str, timeout_s: float = TIMEOUT_S, settle_s: float = SETTLE_S) -> None:
  """Raises SharedWorkdirError, on every process alike, unless all processes see one directory at `workdir`.

  Does nothing in a single-process run. Call it from every process, before anything else uses the workdir.
  """
  if jax.process_count() == 1:
    return
  client = _client()
  if client is None:
    logging.warning('%d processes but no jax.distributed client: cannot check that the workdir %s is shared',
                    jax.process_count(), workdir)
    return
  prefix, index = f'{_KEY_PREFIX}/{next(_calls)}', jax.process_index()
  workdir = workdir if is_remote(workdir) else os.path.abspath(workdir)  # Errors name the directory it resolved to.
  deadline = time.monotonic() + timeout_s
  if index == 0:
    nonce = secrets.token_hex(16)
    problem = None if is_remote(workdir) else _write_token(workdir, nonce)
    client.key_value_set(f'{prefix}/nonce', '' if problem else nonce)
  else:
    nonce = _get(client, f'{prefix}/nonce', deadline)
    if nonce is None:
      problem = f'heard nothing from process 0 within {timeout_s:.0f} s'
    elif not nonce or is_remote(workdir):
      problem = None  # Process 0 wrote no token (its error is raised below), or an object store: compared below.
    else:
      problem = _read_token(workdir, nonce, settle_s)
  mine = {'workdir': workdir, 'host': socket.gethostname(), 'problem': problem}
  client.key_value_set(f'{prefix}/verdict/{index}', json.dumps(mine))
  verdicts = [mine if i == index else _get(client, f'{prefix}/verdict/{i}', deadline + settle_s)
              for i in range(jax.process_count())]
  verdicts = [json.loads(v) if isinstance(v, str) else v for v in verdicts]
  if index == 0 and None not in verdicts and not is_remote(workdir):  # Everyone has read it (a late one may not).
    try:
      os.remove(_token_path(workdir, nonce))
    except OSError:
      pass
  _raise_if_disagree(verdicts, timeout_s)
