"""An independent float64 NumPy implementation of the ViViT forward pass (eval mode, no dropout).

Written from the specification of Scenic's ViViT (Arnab et al., 2021), not from vivit_jax's code, so that
the two can be compared. Parameters are the Flax parameter tree with Scenic's names (a nested dict of
arrays); the video is [B, T, H, W, C]; `vivit_logits` returns [B, num_classes].
"""

import numpy as np


class _Tree(dict):
  """A nested dict of float64 arrays that records in `used` the path of every leaf that is read."""

  def __init__(self, tree, used, prefix=''):
    super().__init__({k: _Tree(v, used, f'{prefix}{k}/') if hasattr(v, 'items') else np.asarray(v, np.float64)
                      for k, v in tree.items()})
    self.used, self.prefix = used, prefix

  def __getitem__(self, key):
    value = super().__getitem__(key)
    if not isinstance(value, _Tree):
      self.used.add(self.prefix + key)
    return value


def layer_norm(x, p, eps=1e-6):
  """LayerNorm over the last axis with a biased variance, then `scale` and `bias`."""
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p['scale'] + p['bias']


def gelu(x):
  """GELU, tanh approximation."""
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def dense(x, p):
  """x @ kernel + bias."""
  return x @ p['kernel'] + p['bias']


def softmax(z):
  """Numerically stable softmax over the last axis."""
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def attend(q, k, v):
  """Scaled dot-product attention; q, k, v [..., L, h, dh] -> [..., L, h, dh] (keys on axis -3)."""
  logits = np.einsum('...qhd,...khd->...hqk', q, k) / np.sqrt(q.shape[-1])
  return np.einsum('...hqk,...khd->...qhd', softmax(logits), v)


def qkv(x, p):
  """Query, key and value projections of x [..., L, d] -> three arrays [..., L, h, dh]."""
  return [np.einsum('...d,dhk->...hk', x, p[n]['kernel']) + p[n]['bias'] for n in ('query', 'key', 'value')]


def out_proj(o, p):
  """Output projection of the heads o [..., L, h, dh] -> [..., L, d]."""
  return np.einsum('...hk,hkd->...d', o, p['out']['kernel']) + p['out']['bias']


def mha(x, p):
  """Multi-head self-attention over axis -2 of x [..., L, d]."""
  return out_proj(attend(*qkv(x, p)), p)


def factorised_dot_product_mha(x, p, t):
  """Model 4 attention on x [B, T*S, d]: the first half of the heads attend over time (same spatial
  position), the second half over space (same frame); heads are put back in order before `out`."""
  b, n, _ = x.shape
  q, k, v = (a.reshape(b, t, n // t, *a.shape[2:]) for a in qkv(x, p))  # [B, T, S, h, dh]
  h2 = q.shape[-2] // 2
  sw = lambda a: a.swapaxes(1, 2)  # [B, S, T, h, dh]: time becomes the sequence axis.
  o_time = sw(attend(sw(q[..., :h2, :]), sw(k[..., :h2, :]), sw(v[..., :h2, :])))
  o_space = attend(q[..., h2:, :], k[..., h2:, :], v[..., h2:, :])
  o = np.concatenate([o_time, o_space], axis=-2).reshape(b, n, *q.shape[-2:])
  return out_proj(o, p)


def mlp_block(x, p):
  """Dense_0 -> GELU -> Dense_1."""
  return dense(gelu(dense(x, p['Dense_0'])), p['Dense_1'])


def encoder_block(x, p, attention=mha):
  """Pre-LN block: x + attention(LN(x)), then x + MLP(LN(x))."""
  x = x + attention(layer_norm(x, p['LayerNorm_0']), p['MultiHeadDotProductAttention_0'])
  return x + mlp_block(layer_norm(x, p['LayerNorm_1']), p['MlpBlock_0'])


def factorised_self_attention_block(x, p, t, order):
  """Model 3 block on x [B, T*S, d]: time attention (per spatial position) and space attention (per
  frame), each pre-LN with a residual, in `order`; then the MLP."""
  b, n, d = x.shape
  x = x.reshape(b, t, n // t, d)
  axes = ('time', 'space') if order == 'time_space' else ('space', 'time')
  for axis in axes:
    y = layer_norm(x, p[f'LayerNorm_{axis}'])
    att = p[f'MultiHeadDotProductAttention_{axis}']
    y = mha(y.swapaxes(1, 2), att).swapaxes(1, 2) if axis == 'time' else mha(y, att)
    x = x + y
  x = x + mlp_block(layer_norm(x, p['LayerNorm_mlp']), p['MlpBlock'])
  return x.reshape(b, n, d)


def encoder(x, p, block=encoder_block):
  """Adds the positional embedding, runs `encoderblock_{i}` in order, then `encoder_norm`."""
  x = x + p['posembed_input']['pos_embedding']
  n_blocks = len([k for k in p if k.startswith('encoderblock_')])
  for i in range(n_blocks):
    x = block(x, p[f'encoderblock_{i}'])
  return layer_norm(x, p['encoder_norm'])


def sampled_frame_indices(num_frames, n_sampled):
  """Frames kept by 'temporal_sampling': n evenly spaced (rounded half to even), or all if n >= T."""
  if n_sampled >= num_frames:
    return np.arange(num_frames)
  step = num_frames / (n_sampled + 1)
  positions = np.arange(step, num_frames, step).astype(np.float32)
  return np.minimum(np.round(positions), num_frames - 1).astype(np.int64)


def embed(x, p, patch_size, method='3d_conv', n_sampled_frames=None):
  """Tokenises a video [B, T, H, W, C] into a grid [B, T', H', W', d] (non-overlapping patches)."""
  fh, fw = patch_size[0], patch_size[1]
  kernel = p['kernel']
  if method == 'temporal_sampling':
    x = x[:, sampled_frame_indices(x.shape[1], n_sampled_frames)]
    ft, kernel = 1, kernel[None]  # A 2D patch kernel is a tubelet kernel of depth 1.
  else:
    ft = patch_size[2]
  b, t, h, w, c = x.shape
  tubes = x.reshape(b, t // ft, ft, h // fh, fh, w // fw, fw, c)
  return np.einsum('ntaibjcz,abcze->ntije', tubes, kernel) + p['bias']


def pool(x, classifier):
  """Pools tokens x [..., N, d] -> [..., d]: token 0 ('token', '0'), mean, max or sum."""
  if classifier in ('token', '0'):
    return x[..., 0, :]
  return {'gap': np.mean, 'gmp': np.max, 'gsp': np.sum}[classifier](x, axis=-2)


def prepend_cls(x, cls):
  """Prepends the class token cls [1, 1, d] to every sequence of x [..., N, d]."""
  return np.concatenate([np.broadcast_to(cls, x.shape[:-2] + cls.shape[-2:]), x], axis=-2)


def head(x, p):
  """Optional tanh pre-logits layer, then the output projection."""
  if 'pre_logits' in p:
    x = np.tanh(dense(x, p['pre_logits']))
  return dense(x, p['output_projection'])


def vivit_logits(params, video, *, model_type='spacetime', patch_size=(16, 16, 2), classifier='token',
                 temporal_encoding='3d_conv', n_sampled_frames=None, attention_order='time_space',
                 spatial_only_baseline=False, used=None):
  """ViViT logits [B, num_classes] for `video` [B, T, H, W, C]; `model_type` is the attention type.

  If `used` is a set, the '/'-joined paths of the parameters read are added to it.
  """
  p = _Tree(params, set() if used is None else used)
  grid = embed(np.asarray(video, np.float64), p['embedding'], patch_size, temporal_encoding,
               n_sampled_frames)
  b, t, hh, ww, d = grid.shape

  if model_type == 'factorized_encoder':
    x = grid.reshape(b * t, hh * ww, d)  # Each frame is encoded independently.
    if classifier == 'token':
      x = prepend_cls(x, p['cls_SpatialTransformer'])
    x = pool(encoder(x, p['SpatialTransformer']), classifier).reshape(b, t, d)
    if spatial_only_baseline:
      return head(x.mean(axis=1), p)
    if classifier == 'token':
      x = prepend_cls(x, p['cls_TemporalTransformer'])
    return head(pool(encoder(x, p['TemporalTransformer']), classifier), p)

  x = grid.reshape(b, t * hh * ww, d)
  if model_type == 'spacetime':
    block = encoder_block
    if classifier == 'token':
      x = prepend_cls(x, p['cls'])
  elif model_type == 'factorized_self_attention_block':
    block = lambda y, bp: factorised_self_attention_block(y, bp, t, attention_order)
  elif model_type == 'factorized_dot_product_attention':
    block = lambda y, bp: encoder_block(y, bp, lambda z, ap: factorised_dot_product_mha(z, ap, t))
  else:
    raise ValueError(f'unknown model type {model_type!r}')
  return head(pool(encoder(x, p['Transformer'], block), classifier), p)
