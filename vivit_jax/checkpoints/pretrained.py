"""`init_from_pretrained`: a fresh ViViT params tree initialised from an image ViT or a ViViT checkpoint.

The rules are Scenic's `initialise_from_train_state`, read from the target tree, the
source tree (as `load_params` returns it) and `config.init_from`, with Scenic's defects fixed on purpose:

- `embedding`: a 2D kernel `[fh, fw, c, d]` is inflated to `[ft, fh, fw, c, d]` on the TEMPORAL axis by
  `model.temporal_encoding_config.kernel_init_method` (central frame, average, average ARP); the bias is copied.
- positional embeddings (`pretrained_posemb`): CLS rows for every classifier pair, per-axis resizing.
- encoder blocks copied one to one; Model 3 maps the image block's attention to `_space` and `_time`,
  `LayerNorm_0` to `LayerNorm_space` AND `LayerNorm_time` (Scenic forgets the latter), `LayerNorm_1` to
  `LayerNorm_mlp`, `MlpBlock_0` to `MlpBlock`; `init_temporal_transformer=False` keeps the `_time` attention and
  `LayerNorm_time` fresh, `init_spatial_transformer=False` the `_space` attention (Scenic always loads
  `LayerNorm_space`, and so do we). For Model 2 the flags keep the spatial / temporal encoder fresh; Models 1
  and 4 have neither.
- Model 2: `cls_SpatialTransformer` from the image `cls` (Scenic leaves it zero); the temporal encoder is fresh
  from an image ViT and copied (its table resized in 1D) from a ViViT-FE source.
- `output_projection` (or an image ViT's `head`) only with `init_from.restore_output_projection`; `pre_logits`
  copied when both models have it, else fresh or dropped.

Whether a source or target table has a CLS row is read from the trees (a `cls` parameter); when
`init_from.model_config.model.classifier` disagrees with the source tree, the tree wins and the report says so.
"""

import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from flax import traverse_util
import ml_collections
import numpy as np

from vivit_jax.checkpoints.formats.vit_npz import convert_pre_linen
from vivit_jax.checkpoints.pretrained_posemb import Grid, adapt_posemb, adapt_temporal_posemb
from vivit_jax.checkpoints.pretrained_report import Entry, InitReport, nothing_matched
from vivit_jax.models.embedding import inflation_weights

INFLATIONS = ('central_frame_initializer', 'average_frame_initializer', 'average_arp_frame_initializer')
_POSEMB = 'posembed_input/pos_embedding'
_MODEL3_SOURCES = {  # Model 3 block module <- image ViT block module.
    'MultiHeadDotProductAttention_space': 'MultiHeadDotProductAttention_0',
    'MultiHeadDotProductAttention_time': 'MultiHeadDotProductAttention_0',
    'LayerNorm_space': 'LayerNorm_0', 'LayerNorm_time': 'LayerNorm_0',
    'LayerNorm_mlp': 'LayerNorm_1', 'MlpBlock': 'MlpBlock_0'}
_TEMPORAL_MODULES = ('MultiHeadDotProductAttention_time', 'LayerNorm_time')
_SPATIAL_MODULES = ('MultiHeadDotProductAttention_space',)
_HANDLED = ('embedding', 'cls', 'cls_SpatialTransformer', 'cls_TemporalTransformer', 'Transformer',
            'SpatialTransformer', 'TemporalTransformer', 'output_projection', 'pre_logits')


class PretrainedMismatchError(ValueError):
  """A pretrained checkpoint that cannot initialise the model; the message names every offending path."""


def inflate_kernel(kernel: np.ndarray, frames: int, method: Optional[str]) -> np.ndarray:
  """A 2D patch kernel `[fh, fw, c, d]` as a tubelet kernel `[frames, fh, fw, c, d]` (float32), weighted per
  frame by `models.embedding.inflation_weights`: central frame (the kernel at `frames // 2`, zeros elsewhere),
  average (`kernel / frames` on every frame) or ARP (`kernel * arp_i / frames`)."""
  if method not in INFLATIONS:
    raise ValueError(f'inflating a 2D patch kernel to {frames} frames needs '
                     f'model.temporal_encoding_config.kernel_init_method in {INFLATIONS}; got {method!r}')
  weights = inflation_weights(method, frames)
  kernel = np.asarray(kernel, np.float32).astype(np.float64)
  return (weights[:, None, None, None, None] * kernel[None]).astype(np.float32)


class _Builder:
  """The flat target tree being filled, the report, the source paths read, and the errors met."""

  def __init__(self, target: Dict[str, Any], source: Dict[str, np.ndarray]):
    self.target = {k: np.array(v) for k, v in target.items()}
    self.source = source
    self.out: Dict[str, np.ndarray] = {}
    self.report = InitReport()
    self.used: set = set()
    self.errors: List[str] = []

  def has(self, spath: str) -> bool:
    return spath in self.source

  def copy(self, tpath: str, spath: str, how: str = 'copied') -> None:
    value, want = self.source[spath], self.target[tpath]
    self.used.add(spath)
    if value.shape != want.shape:
      self.errors.append(f'{tpath}: the model wants {want.shape}, source {spath} is {value.shape}')
      return
    self.out[tpath] = np.asarray(value, want.dtype)
    self.report.loaded.append(Entry(tpath, spath, value.shape, want.shape, how))

  def put(self, tpath: str, spath: str, value: np.ndarray, how: str) -> None:
    want = self.target[tpath]
    self.used.add(spath)
    if value.shape != want.shape:
      self.errors.append(f'{tpath}: the model wants {want.shape}, adapting {spath} gave {value.shape}')
      return
    self.out[tpath] = np.asarray(value, want.dtype)
    entry = Entry(tpath, spath, tuple(self.source[spath].shape), want.shape, how)
    (self.report.loaded if entry.old_shape == entry.new_shape and how == 'copied' else
     self.report.adapted).append(entry)

  def fresh(self, tpath: str, reason: str) -> None:
    if tpath not in self.out and all(e.path != tpath for e in self.report.fresh):
      self.report.fresh.append(Entry(tpath, None, None, self.target[tpath].shape, reason))

  def under(self, prefix: str) -> List[str]:
    return sorted(k for k in self.target if k.startswith(prefix + '/'))


def _flat(tree: Dict[str, Any]) -> Dict[str, Any]:
  return traverse_util.flatten_dict(tree, sep='/')


def _normalise_source(pretrained: Dict[str, Any]) -> Dict[str, np.ndarray]:
  """Linen block names, `head` as `output_projection`, leaves as numpy."""
  tree = convert_pre_linen(dict(pretrained))
  if 'head' in tree and 'output_projection' not in tree:
    tree['output_projection'] = tree.pop('head')
  return {k: np.asarray(v) for k, v in _flat(tree).items()}


def _init_embedding(b: _Builder, config: ml_collections.ConfigDict) -> None:
  names = b.under('embedding')
  if not config.init_from.restore_input_embedding:
    for path in names:
      b.fresh(path, 'restore_input_embedding=False')
    return
  if not b.has('embedding/kernel'):
    for path in names:
      b.fresh(path, 'not in the source')
    return
  kernel, want = b.source['embedding/kernel'], b.target['embedding/kernel'].shape
  if kernel.ndim == 4 and len(want) == 5 and kernel.shape == want[1:]:
    method = config.model.temporal_encoding_config.kernel_init_method
    try:
      value = inflate_kernel(kernel, want[0], method)
    except ValueError as e:
      b.errors.append(f'embedding/kernel: {e}')
    else:
      b.put('embedding/kernel', 'embedding/kernel', value, f'inflated to {want[0]} frames by {method}')
  elif kernel.shape != want:
    b.used.add('embedding/kernel')
    b.errors.append(f'embedding/kernel: the model wants {want} ([frames,] patch h, patch w, channels, hidden), '
                    f'the source has {kernel.shape}: patch size, channels or hidden size differ')
  else:
    b.copy('embedding/kernel', 'embedding/kernel')
  if b.has('embedding/bias'):
    b.copy('embedding/bias', 'embedding/bias')


def _init_tokens(b: _Builder, config: ml_collections.ConfigDict) -> None:
  """`cls`, `cls_SpatialTransformer` (from the image `cls` too) and `cls_TemporalTransformer`."""
  candidates = {'cls': ('cls', 'cls_SpatialTransformer'),
                'cls_SpatialTransformer': ('cls_SpatialTransformer', 'cls'),
                'cls_TemporalTransformer': ('cls_TemporalTransformer',)}
  for tpath, sources in candidates.items():
    if tpath not in b.target:
      continue
    if tpath == 'cls_TemporalTransformer' and not config.init_from.init_temporal_transformer:
      b.fresh(tpath, 'init_temporal_transformer=False')
      continue
    found = [s for s in sources if b.has(s)]
    if found:
      b.copy(tpath, found[0])
    else:
      b.fresh(tpath, 'the source has no class token')


def _init_block(b: _Builder, tblock: str, sblock: str, config: ml_collections.ConfigDict) -> None:
  """One encoder block: same names copied, Model 3 names mapped from an image block, flags applied."""
  init = config.init_from
  for tpath in b.under(tblock):
    rest = tpath[len(tblock) + 1:]
    module, _, leaf = rest.partition('/')
    if module in _TEMPORAL_MODULES and not init.init_temporal_transformer:
      b.fresh(tpath, 'init_temporal_transformer=False')
      continue
    if module in _SPATIAL_MODULES and not init.init_spatial_transformer:
      b.fresh(tpath, 'init_spatial_transformer=False')
      continue
    spath = f'{sblock}/{rest}'
    if b.has(spath):
      b.copy(tpath, spath)
    elif module in _MODEL3_SOURCES and b.has(f'{sblock}/{_MODEL3_SOURCES[module]}/{leaf}'):
      b.copy(tpath, f'{sblock}/{_MODEL3_SOURCES[module]}/{leaf}', f'copied from {_MODEL3_SOURCES[module]}')
    else:
      b.errors.append(f'{tpath}: no counterpart {spath} in the source block (source block modules: '
                      f'{sorted({k[len(sblock) + 1:].split("/")[0] for k in b.source if k.startswith(sblock + "/")})})')


def _init_encoder(b: _Builder, tenc: str, senc: str, config: ml_collections.ConfigDict, load: bool,
                  reason: str) -> None:
  """Blocks and `encoder_norm` of `tenc` from `senc` (posemb apart); all fresh with `reason` unless `load`."""
  done = set()
  for tpath in b.under(tenc):
    rest = tpath[len(tenc) + 1:]
    if rest.startswith('posembed_input/'):
      continue
    block = rest.split('/')[0]
    if not load:
      b.fresh(tpath, reason)
    elif block.startswith('encoderblock_'):
      if block in done:
        continue
      done.add(block)
      if any(k.startswith(f'{senc}/{block}/') for k in b.source):
        _init_block(b, f'{tenc}/{block}', f'{senc}/{block}', config)
      else:
        for path in b.under(f'{tenc}/{block}'):
          b.fresh(path, f'the source encoder {senc} has no {block}')
    elif b.has(f'{senc}/{rest}'):
      b.copy(tpath, f'{senc}/{rest}')
    else:
      b.fresh(tpath, f'not in the source ({senc}/{rest})')


def _init_posemb(b: _Builder, tenc: str, senc: str, config: ml_collections.ConfigDict,
                 source_grid: Optional[Grid], temporal: bool = False) -> None:
  tpath, spath = f'{tenc}/{_POSEMB}', f'{senc}/{_POSEMB}'
  if tpath not in b.target:
    return
  if not config.init_from.restore_positional_embedding:
    b.fresh(tpath, 'restore_positional_embedding=False')
    return
  if not b.has(spath):
    b.fresh(tpath, f'not in the source ({spath})')
    return
  cls_names = {'Transformer': 'cls', 'SpatialTransformer': 'cls_SpatialTransformer',
               'TemporalTransformer': 'cls_TemporalTransformer'}
  target_cls = cls_names[tenc] in b.target
  source_cls = (('cls_TemporalTransformer' in b.source) if temporal else
                any(k in b.source for k in ('cls', 'cls_SpatialTransformer')))
  source, target = b.source[spath], b.target[tpath]
  if source.shape == target.shape and source_cls == target_cls:
    b.copy(tpath, spath)
    return
  where = f'{tpath} <- {spath}'
  try:
    if temporal:
      value, how = adapt_temporal_posemb(source, target, source_cls=source_cls, target_cls=target_cls,
                                         where=where)
    else:
      crop, (fh, fw) = config.dataset_configs.crop_size, config.model.patches.size[:2]
      # A per-frame table: a FE spatial encoder's, or an image ViT's (2D kernel, square grid).
      per_frame = senc == 'SpatialTransformer' or (b.has('embedding/kernel') and
                                                   b.source['embedding/kernel'].ndim == 4)
      value, how = adapt_posemb(
          source, target, source_cls=source_cls, target_cls=target_cls, target_hw=(crop // fh, crop // fw),
          method=config.init_from.positional_embed_size_change, per_frame=per_frame,
          source_grid=None if senc == 'SpatialTransformer' else source_grid, where=where)
  except ValueError as e:
    b.used.add(spath)
    b.errors.append(str(e))
    return
  b.put(tpath, spath, value, how or 'copied')


def _source_encoder(b: _Builder) -> Optional[str]:
  for name in ('SpatialTransformer', 'Transformer'):
    if any(k.startswith(name + '/') for k in b.source):
      return name
  return None


def _init_encoders(b: _Builder, config: ml_collections.ConfigDict, source_grid: Optional[Grid]) -> None:
  init = config.init_from
  senc = _source_encoder(b)
  for tenc in ('Transformer', 'SpatialTransformer'):
    if not b.under(tenc):
      continue
    if senc is None:
      _init_encoder(b, tenc, tenc, config, False, 'the source has no encoder')
      continue
    load = tenc != 'SpatialTransformer' or init.init_spatial_transformer
    _init_encoder(b, tenc, senc, config, load, 'init_spatial_transformer=False')
    _init_posemb(b, tenc, senc, config, source_grid)
  tenc = 'TemporalTransformer'
  if b.under(tenc):
    has_source = any(k.startswith(tenc + '/') for k in b.source)
    load = has_source and init.init_temporal_transformer
    reason = ('init_temporal_transformer=False' if has_source else
              'the source has no temporal encoder (an image model)')
    _init_encoder(b, tenc, tenc, config, load, reason)
    if load:
      _init_posemb(b, tenc, tenc, config, None, temporal=True)
    else:
      b.fresh(f'{tenc}/{_POSEMB}', reason)


def _init_heads(b: _Builder, config: ml_collections.ConfigDict) -> None:
  for name in ('output_projection', 'pre_logits'):
    for tpath in b.under(name):
      if name == 'output_projection' and not config.init_from.restore_output_projection:
        b.fresh(tpath, 'restore_output_projection=False')
      elif b.has(tpath):
        b.copy(tpath, tpath)
      else:
        b.fresh(tpath, 'not in the source')


def init_from_pretrained_with_report(
    params: Any, pretrained: Dict[str, Any], config: ml_collections.ConfigDict,
    log: Optional[Callable[[str], None]] = logging.info,
    source_grid: Optional[Grid] = None) -> Tuple[Dict[str, Any], InitReport]:
  """`init_from_pretrained`, also returning the `InitReport`."""
  b = _Builder(_flat(params), _normalise_source(pretrained))
  stated = config.init_from.model_config.model.get('classifier', 'token')
  has_cls = any(k in b.source for k in ('cls', 'cls_SpatialTransformer'))
  if (stated == 'token') != has_cls and _source_encoder(b) is not None:
    b.report.notes.append(f"init_from.model_config.model.classifier is {stated!r} but the source "
                          f"{'has' if has_cls else 'has no'} class token: the tree decides")
  _init_embedding(b, config)
  _init_tokens(b, config)
  _init_encoders(b, config, source_grid)
  _init_heads(b, config)
  for tpath in b.target:  # Any other parameter: copied when the source has it at the same path.
    if tpath.split('/')[0] not in _HANDLED and b.has(tpath):
      b.copy(tpath, tpath)
    b.fresh(tpath, 'not in the source')
  if b.errors:
    raise PretrainedMismatchError('The pretrained params cannot initialise the model ({} problems):\n{}'.format(
        len(b.errors), '\n'.join(b.errors)))
  if not b.report.loaded and not b.report.adapted:  # A tree of other names: training would start from scratch.
    raise PretrainedMismatchError(nothing_matched(
        config.init_from.get('checkpoint_path') or '', {k: np.shape(v) for k, v in sorted(_flat(pretrained).items())},
        {k: v.shape for k, v in sorted(b.target.items())}))
  b.report.unused = sorted(set(b.source) - b.used)
  for tpath in b.target:
    if tpath not in b.out:
      b.out[tpath] = b.target[tpath]
  if log is not None:
    log(b.report.format())
  return traverse_util.unflatten_dict(b.out, sep='/'), b.report


def init_from_pretrained(params: Any, pretrained: Dict[str, Any], config: ml_collections.ConfigDict,
                         log: Optional[Callable[[str], None]] = logging.info,
                         source_grid: Optional[Grid] = None) -> Dict[str, Any]:
  """A new params tree shaped like `params` (a fresh ViViT tree) initialised from `pretrained`.

  Args:
    params: the fresh ViViT params (numpy or addressable jax arrays); they fill what the source does not.
    pretrained: a params tree in Scenic naming as `load_params` returns it: an image ViT (pre-Linen or Linen
      block names, `head` or `output_projection`, optional `pre_logits`) or a ViViT of any variant.
    config: the target's experiment config; `init_from.*` and `model.temporal_encoding_config.kernel_init_method`
      pick the rules (module docstring).
    log: called with the report's text (None: silent).
    source_grid: the source's (frames, height, width) token grid, when its token count is ambiguous; guessed
      otherwise (an image is one square frame; a video keeps the target's spatial grid when it can).

  Returns:
    A new nested dict of numpy arrays with exactly the paths, shapes and dtypes of `params`.

  Raises:
    PretrainedMismatchError: source arrays that cannot fit (hidden size, patch size, ...), naming every path;
      or a source that initialises no parameter at all (other names), naming some paths of both trees.
  """
  return init_from_pretrained_with_report(params, pretrained, config, log, source_grid)[0]
