"""Pooling, class tokens and the classifier head, created inside the calling module so that their parameters
sit at its top level with Scenic's names: `cls`, `pre_logits` (Dense + tanh, only with a representation size)
and `output_projection` (zero-initialised kernel)."""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

CLASSIFIERS = ('token', '0', 'gap', 'gmp', 'gsp')


def add_class_token(module: nn.Module, x: jnp.ndarray, name: str = 'cls') -> jnp.ndarray:
  """Prepends a learned (zero-initialised) token to `[B, N, d]` tokens."""
  cls = module.param(name, nn.initializers.zeros, (1, 1, x.shape[-1]), jnp.float32)
  cls = jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
  return jnp.concatenate([cls, x], axis=1)


def pool(x: jnp.ndarray, classifier: str) -> jnp.ndarray:
  """`[B, N, d]` -> `[B, d]`: token 0 ('token', '0') or mean / max / sum over tokens ('gap', 'gmp', 'gsp')."""
  if classifier in ('token', '0'):
    return x[:, 0]
  if classifier == 'gap':
    return jnp.mean(x, axis=1)
  if classifier == 'gmp':
    return jnp.max(x, axis=1)
  if classifier == 'gsp':
    return jnp.sum(x, axis=1)
  raise ValueError(f'unknown classifier {classifier!r}; expected one of {CLASSIFIERS}')


def classify(x: jnp.ndarray, *, num_classes: int, representation_size: Optional[int],
             return_prelogits: bool = False) -> jnp.ndarray:
  """Pooled features -> (pre_logits) -> logits, in float32. Call from a compact method."""
  x = x.astype(jnp.float32)
  if representation_size is not None:
    x = jnp.tanh(nn.Dense(representation_size, name='pre_logits')(x))
  if return_prelogits:
    return x
  return nn.Dense(num_classes, kernel_init=nn.initializers.zeros, name='output_projection')(x)
