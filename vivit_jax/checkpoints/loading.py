"""Load the params of any supported checkpoint as a plain tree in Scenic naming, and check them against a model.

Formats (`FORMATS`) and how `detect_format` recognises them, in this order:

  vivit_jax    our Orbax checkpoints: a step directory (it has `state/`), a checkpoints directory (numbered
               step directories with `state/`), or a workdir (it has `checkpoints/`). A workdir or checkpoints
               directory means its newest step.
  huggingface  a directory with `config.json` and safetensors weights (or one of its files).
  scenic       a Flax msgpack file (the first byte opens a msgpack map), or a directory of `checkpoint_<step>`
               msgpack files (the newest is read) or with one msgpack file named `checkpoint`.
  vit_npz      an `.npz` file (a zip of `.npy` arrays) in the original vision_transformer layout.
  big_vision   an `.npz` file with big_vision's prefixes (`params/`, `opt/target/`), Linen names, a top-level
               `pos_embedding` or scanned blocks. Read by the same reader as vit_npz.

No reader unpickles: `.npz` arrays are read with `allow_pickle=False`, msgpack with Flax's array codec, Orbax
through TensorStore, Hugging Face through safetensors.

Whatever the format, the params pass one check (`formats.check_weights`): at least one array, floating point,
finite. A workdir or checkpoints directory means its newest readable step: a newer step that cannot be read is
skipped with the trainer's warning (`manager.warn_unreadable`); a step named explicitly never falls back.
A format named explicitly whose reader fails on a checkpoint that `detect_format` sees as another format (a
vivit_jax workdir read as 'scenic') is refused naming the format to set.
"""

import dataclasses
import os
from typing import Any, Callable, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from vivit_jax.checkpoints.formats import as_numpy_tree, check_weights
from vivit_jax.checkpoints.formats import scenic
from vivit_jax.checkpoints.formats import vit_npz
from vivit_jax.checkpoints.manager import (CheckpointError, CheckpointManager, describe_mismatch, leaf_shapes,
                                           newest_readable, short_error)
from vivit_jax.checkpoints.settled_reads import settled_reads

FORMATS = ('vivit_jax', 'scenic', 'vit_npz', 'big_vision', 'huggingface')
_STATE, _METADATA, _CHECKPOINTS = 'state', 'metadata', 'checkpoints'
_LOOKED_FOR = ('an Orbax step directory (state/), a checkpoints directory (<step>/state/) or a workdir '
               '(checkpoints/); a Hugging Face directory (config.json + *.safetensors); a Scenic msgpack '
               'file or a directory of checkpoint_<step> msgpack files; an .npz file')
_FORMAT_NAMES = {'vivit_jax': 'a vivit_jax checkpoint', 'scenic': 'a Scenic checkpoint',
                 'vit_npz': 'an .npz checkpoint of the vision_transformer layout',
                 'big_vision': 'a big_vision .npz checkpoint', 'huggingface': 'a Hugging Face checkpoint'}
_T = TypeVar('_T')


class UnreadableFile(Exception):
  """A step's file that cannot be read, with the file named (a step that raises it is skipped like any other
  unreadable step)."""


@dataclasses.dataclass
class Loaded:
  """What `load_checkpoint` read: the params and, from the same step or directory, what describes them."""
  source: str  # The step directory or file the params came from (a Hugging Face directory, or its one weights file).
  format: str
  params: dict[str, Any]
  metadata: dict[str, Any] | None = None  # A vivit_jax step's JSON metadata (None: other formats, or saved without).
  hf_info: dict[str, Any] | None = None  # A Hugging Face directory's `read_info`.


# ---------------------------------------------------------------------------------------------- vivit_jax


def _is_step_dir(path: str) -> bool:
  return os.path.isdir(os.path.join(path, _STATE))


def _steps(checkpoints_dir: str) -> dict[int, str]:
  """{step: directory} of the committed steps (Orbax names unfinished saves `<step>.orbax-checkpoint-tmp-*`)."""
  if not os.path.isdir(checkpoints_dir):
    return {}
  return {int(name): os.path.join(checkpoints_dir, name) for name in os.listdir(checkpoints_dir)
          if name.isdigit() and _is_step_dir(os.path.join(checkpoints_dir, name))}


def _is_vivit_jax(path: str) -> bool:
  checkpoints_dir = os.path.join(path, _CHECKPOINTS)
  return (_is_step_dir(path) or bool(_steps(path)) or
          (os.path.isdir(checkpoints_dir) and not scenic.is_scenic_dir(checkpoints_dir)))


def _checkpoints_dir(path: str) -> str:
  return os.path.join(path, _CHECKPOINTS) if os.path.isdir(os.path.join(path, _CHECKPOINTS)) else path


def _newest_readable(path: str, read: Callable[[str], _T]) -> tuple[str, _T]:
  """(step directory, `read(step directory)`) of the step that `path` means: itself when it is a step, else the
  newest step of the workdir or checkpoints directory that `read` can read.

  Any error but a `CheckpointError` (a readable step whose content is wrong) makes a step unreadable: a step
  named explicitly raises, a newer step is skipped with the trainer's warning.
  """
  if _is_step_dir(path):
    try:
      with settled_reads():  # A failed read leaves no TensorStore callback to print tracebacks later.
        return path, read(path)
    except CheckpointError:
      raise
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f'Cannot read checkpoint {path}: {short_error(e)}') from e
  steps = _steps(_checkpoints_dir(path))
  if not steps:
    raise CheckpointError(f'No vivit_jax checkpoint in {path}: no step directories <step>/{_STATE}/ in '
                          f'{_checkpoints_dir(path)}')
  step, value, _ = newest_readable(steps, lambda s: read(steps[s]), _checkpoints_dir(path), stacklevel=3)
  return steps[step], value


def _read_params(step_dir: str) -> dict[str, Any]:
  """The `params` of a step's `state` item, restored from the stored shapes straight into numpy arrays."""
  state_dir = epath.Path(os.path.abspath(step_dir)) / _STATE
  handler = ocp.PyTreeCheckpointHandler()
  try:
    tree = handler.metadata(state_dir).tree
  except Exception as e:
    raise UnreadableFile(f'the tree metadata in {state_dir} is unreadable: {type(e).__name__}: {e}') from e
  finally:
    handler.close()
  if not isinstance(tree, dict) or not isinstance(tree.get('params'), dict):
    keys = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
    raise CheckpointError(f'{state_dir}: expected a train state with a params dict; found {keys}')
  abstract = {'params': jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree['params'])}
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract)
  with ocp.PyTreeCheckpointer() as checkpointer:
    restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
        abstract, restore_args=restore_args, partial_restore=True))
  return as_numpy_tree(restored['params'], str(state_dir))


def _read_metadata(step_dir: str) -> dict[str, Any] | None:
  """A step's JSON metadata; None when it was saved without."""
  metadata_dir = epath.Path(os.path.abspath(step_dir)) / _METADATA
  if not metadata_dir.is_dir():
    return None
  try:
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
      metadata = checkpointer.restore(metadata_dir)
  except Exception as e:
    raise UnreadableFile(f'the metadata JSON in {metadata_dir} is unreadable: {type(e).__name__}: {e}') from e
  if not isinstance(metadata, dict):
    raise CheckpointError(f'{metadata_dir}: expected a JSON object of metadata, found {type(metadata).__name__}')
  return dict(metadata)


def _load_vivit_jax(path: str) -> Loaded:
  step_dir, (params, metadata) = _newest_readable(path, lambda d: (_read_params(d), _read_metadata(d)))
  return Loaded(source=os.path.join(step_dir, _STATE), format='vivit_jax', params=params, metadata=metadata)


def save_vivit_jax(workdir: str, params: dict[str, Any], metadata: dict[str, Any], step: int = 0) -> None:
  """Writes `{workdir}/checkpoints/{step}` with the state `{'step': step, 'params': params}` and `metadata`.

  The result is what training writes, minus the optimizer state: `load_params` and `load_metadata` read it,
  and `init_from` can start from it. An existing step is never overwritten.
  """
  state = {'step': np.asarray(step, np.int32), 'params': as_numpy_tree(params, 'save_vivit_jax params')}
  with CheckpointManager(workdir, max_to_keep=None, save_interval_steps=1, async_save=False) as manager:
    if step in manager.all_steps():
      raise CheckpointError(f'save_vivit_jax: {manager.step_directory(step)} already exists')
    manager.save(step, state, metadata, force=True)


# ---------------------------------------------------------------------------------------------- Hugging Face


def _huggingface_dir(path: str) -> str | None:
  """The Hugging Face directory that `path` is, or contains as a file; None when it is none."""
  directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
  try:
    from vivit_jax.checkpoints.formats.huggingface import is_huggingface_dir  # pylint: disable=g-import-not-at-top
  except ImportError:
    is_huggingface_dir = None
  if is_huggingface_dir is not None:
    return directory if is_huggingface_dir(directory) else None
  names = os.listdir(directory) if os.path.isdir(directory) else []
  has_weights = any(name.endswith(('.safetensors', '.safetensors.index.json')) for name in names)
  return directory if 'config.json' in names and has_weights else None


def _load_huggingface(path: str) -> Loaded:
  from vivit_jax.checkpoints.formats import huggingface  # pylint: disable=g-import-not-at-top
  directory = _huggingface_dir(path) or path
  params, info = huggingface.load_huggingface(directory)
  return Loaded(source=huggingface.weights_source(directory), format='huggingface',
                params=as_numpy_tree(params, directory), hf_info=info)


# ---------------------------------------------------------------------------------------------- public API


def detect_format(path: str) -> str:
  """The format of the checkpoint at `path`, one of `FORMATS` (rules in the module docstring).

  Raises:
    CheckpointError: nothing at `path`, or nothing recognisable (the message lists what was looked for).
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise CheckpointError(f'No checkpoint at {path}: no such file or directory')
  if os.path.isdir(path):
    if _is_vivit_jax(path):
      return 'vivit_jax'
    if _huggingface_dir(path):
      return 'huggingface'
    if scenic.is_scenic_dir(path):
      return 'scenic'
    found = sorted(os.listdir(path))
    raise CheckpointError(f'Cannot tell the checkpoint format of directory {path}: looked for {_LOOKED_FOR}; '
                          f'it holds {found[:20]}{" ..." if len(found) > 20 else ""}')
  if vit_npz.is_npz_file(path):
    return vit_npz.npz_flavour(vit_npz.npz_keys(path))
  if scenic.is_msgpack_file(path):
    return 'scenic'
  if path.endswith(('.safetensors', 'config.json')) and _huggingface_dir(path):
    return 'huggingface'
  raise CheckpointError(f'Cannot tell the checkpoint format of file {path}: it is neither an .npz archive of '
                        f'arrays nor a Flax msgpack file; looked for {_LOOKED_FOR}')


def _what_it_is(path: str, detected: str) -> str:
  if detected != 'vivit_jax':
    return _FORMAT_NAMES[detected]
  if _is_step_dir(path):
    return 'a vivit_jax step directory'
  has_checkpoints = os.path.isdir(os.path.join(path, _CHECKPOINTS))
  return 'a vivit_jax workdir' if has_checkpoints else 'a vivit_jax checkpoints directory'


def _wrong_format(path: str, format: str) -> str | None:  # pylint: disable=redefined-builtin
  """The error for a `format` named explicitly whose reader failed on a checkpoint of another format (None when
  `detect_format` agrees, or recognises nothing)."""
  try:
    detected = detect_format(path)
  except CheckpointError:
    return None
  if detected == format or {detected, format} <= {'vit_npz', 'big_vision'}:  # One reader for both.
    return None
  return (f"{path} is {_what_it_is(path, detected)}, not {_FORMAT_NAMES[format]} (format {format!r}): set "
          f"init_from.checkpoint_format='{detected}' (or 'auto')")


def _read(path: str, format: str) -> Loaded:  # pylint: disable=redefined-builtin
  """The params of `path` read as `format` (one of FORMATS), not yet checked."""
  if format == 'vivit_jax':
    return _load_vivit_jax(path)
  if format == 'scenic':
    file = scenic.checkpoint_file(path)
    return Loaded(source=file, format=format, params=scenic.load_scenic(file))
  if format in ('vit_npz', 'big_vision'):
    if not vit_npz.is_npz_file(path):
      raise CheckpointError(f'{path} is not an .npz archive of arrays (format {format!r})')
    return Loaded(source=path, format=format, params=vit_npz.load_vit_npz(path))
  return _load_huggingface(path)


def load_checkpoint(path: str, format: str = 'auto') -> Loaded:  # pylint: disable=redefined-builtin
  """The params of a checkpoint (see `load_params`) with what describes them, read from the same step.

  Args:
    path: a checkpoint file or directory (see `detect_format`).
    format: one of `FORMATS`, or 'auto' to detect it.

  Raises:
    CheckpointError: the checkpoint is missing or unreadable (a workdir's steps all unreadable), or its params
      fail `check_weights` (empty, integer or boolean, NaN or inf: naming the parameters and the file), or
      a `format` named explicitly that the checkpoint is not (naming the format `detect_format` sees).
    ValueError: an unknown `format`.
  """
  path = os.fspath(path)
  if format == 'auto':
    format = detect_format(path)
  if format not in FORMATS:
    raise ValueError(f"load_params: format must be 'auto' or one of {FORMATS}, got {format!r}")
  if not os.path.exists(path):
    raise CheckpointError(f'No checkpoint at {path}: no such file or directory')
  try:
    loaded = _read(path, format)
  except CheckpointError as e:
    wrong = _wrong_format(path, format)
    if wrong:
      raise CheckpointError(wrong) from e
    raise
  check_weights(loaded.params, loaded.source)
  return loaded


def load_params(path: str, format: str = 'auto') -> dict[str, Any]:  # pylint: disable=redefined-builtin
  """The params of a checkpoint as a nested dict of `np.ndarray` in Scenic naming (dtypes as stored).

  Args:
    path: a checkpoint file or directory (see `detect_format`); a workdir or checkpoints directory means its
      newest readable step (newer unreadable steps are skipped with a warning).
    format: one of `FORMATS`, or 'auto' to detect it.

  Returns:
    The ViViT params tree (or, for image ViT sources, the ViT tree with its module names as stored: pre-Linen
    `LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3` and `head` in original ViT files;
    `vit_npz.convert_pre_linen` renames them). For vivit_jax checkpoints, `params` (not the EMA).

  Raises:
    CheckpointError: the checkpoint is missing, unreadable, or holds no params, or params that are not
      floating point or not finite.
    ValueError: an unknown `format`.
  """
  return load_checkpoint(path, format).params


def load_metadata(path: str) -> dict[str, Any] | None:
  """The JSON metadata (config, preprocessing, data, ...) of a vivit_jax checkpoint; None for other formats
  and for steps saved without metadata. A workdir means its newest step whose metadata is readable;
  `load_checkpoint` returns the params and metadata of one step."""
  path = os.fspath(path)
  if detect_format(path) != 'vivit_jax':
    return None
  return _newest_readable(path, _read_metadata)[1]


def check_params_fit(params: dict[str, Any], abstract: Any, source: str = '') -> None:
  """Raises unless `params` has exactly the paths and shapes of `abstract` (a model's params or their shapes).

  Raises:
    CheckpointError: listing every mis-shaped path (both shapes), every path only the model has (missing)
      and every path only the checkpoint has (unexpected), and naming `source`.
  """
  problems = describe_mismatch(leaf_shapes(params), leaf_shapes(abstract))
  if problems:
    raise CheckpointError('The params of {} do not fit the model ({} problems):\n{}'.format(
        source or 'the checkpoint', len(problems), '\n'.join(problems)))
