"""Attention one (batch, head) group at a time, recomputed in the backward pass: the CPU's fast path.

On a CPU the cost of full attention is not its multiply-adds but the memory it touches: the `[B, h, L, L]`
scores and probabilities are tens of megabytes per layer, every fresh page of them is faulted in on every call,
and training keeps the probabilities of every layer for the backward pass. Measured on 2 cores at
`[4, 785, 6, 64]`, writing one such tensor into fresh memory takes 27 ms, into reused memory 5 ms.

`chunked_attention` runs a `lax.scan` over groups of (example, head) pairs, so the scores of one group live in
one small buffer that every step of the loop reuses, and its custom VJP keeps only q, k, v, the output and
each row's log-sum-exp, recomputing the probabilities group by group in the backward pass (the FlashAttention
recipe: `dS = P * (dP - rowsum(dO * O))`). The result equals softmax(q k^T / sqrt(dh)) v to float rounding.

Attention dropout happens inside the loop: the keep mask of each group is hashed from its indices
(models/dropout.py), in the backward pass again rather than kept, and is the mask the einsum path draws for the
`[B, h, L, L]` weights from the same rng, so both paths train alike.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vivit_jax.models import dropout

# Scores of one scan step (at least one (example, head) pair). 6 MiB takes two of ViViT-S's 785-token pairs, which
# on 2 cores ran 13% faster forward (33 vs 37 ms at [4, 785, 6, 64]) and 7% faster backward than one pair a step;
# more pairs a step (a larger working set) was slower again.
GROUP_BYTES = 6 << 20


def _group_size(groups: int, length: int) -> int:
  """The largest divisor of `groups` whose float32 scores fit in GROUP_BYTES (at least 1)."""
  fit = max(1, GROUP_BYTES // (4 * length * length))
  return max(c for c in range(1, min(groups, fit) + 1) if groups % c == 0)


def _scores(q, k):
  return jnp.einsum('cqd,ckd->cqk', q, k, preferred_element_type=jnp.float32)


class _Dropout(NamedTuple):
  """The keep mask of one group of (example, head) pairs, as `dropout.keep_mask` draws it for `[B, h, L, L]`
  weights: row b (the example), index (head * L + query) * L + key within it."""
  rate: float
  heads: int
  length: int

  def keep(self, seed_words, pairs):
    """The `[c, L, L]` mask of the pairs `pairs` `[c]` (b * h + head); None without dropout."""
    if not self.rate:
      return None
    heads, length = self.heads, self.length
    outer = (pairs // heads)[:, None, None]
    inner = ((pairs % heads) * (length * length))[:, None, None] + jax.lax.iota(
        jnp.uint32, length * length).reshape(1, length, length)
    return dropout.hashed_keep(seed_words, outer, inner, self.rate)

  def scale(self, x, keep):
    """`x` `[c, L, L]` dropped where `keep` is False and the rest scaled by 1/(1-rate)."""
    return x if keep is None else dropout.scale_kept(x, keep, self.rate)


def _forward_scan(q, k, v, seed_words, pairs, drop):
  """Per group: output `[c, L, dh]` and the log-sum-exp of each score row `[c, L]`."""
  def step(_, xs):
    qc, kc, vc, pc = xs
    s = _scores(qc, kc)
    m = jnp.max(s, axis=-1, keepdims=True)
    e = jnp.exp(s - m)
    total = jnp.sum(e, axis=-1, keepdims=True)
    e = drop.scale(e, drop.keep(seed_words, pc))
    out = jnp.einsum('cqk,ckd->cqd', e.astype(vc.dtype), vc, preferred_element_type=jnp.float32) / total
    return None, (out.astype(qc.dtype), (m + jnp.log(total))[..., 0])
  _, (out, lse) = jax.lax.scan(step, None, (q, k, v, pairs))
  return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _attend(q, k, v, seed_words, pairs, drop):
  return _forward_scan(q, k, v, seed_words, pairs, drop)[0]


def _attend_fwd(q, k, v, seed_words, pairs, drop):
  out, lse = _forward_scan(q, k, v, seed_words, pairs, drop)
  return out, (q, k, v, seed_words, pairs, out, lse)


def _attend_bwd(drop, residuals, d_out):
  q, k, v, seed_words, pairs, out, lse = residuals
  delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)  # rowsum(dO * O) = rowsum(dP * P)

  def step(_, xs):
    qc, kc, vc, pc, doc, lc, dc = xs
    p = jnp.exp(_scores(qc, kc) - lc[..., None])
    keep = drop.keep(seed_words, pc)  # Hashed once for both uses.
    dv = jnp.einsum('cqk,cqd->ckd', drop.scale(p, keep).astype(doc.dtype), doc, preferred_element_type=jnp.float32)
    dp = drop.scale(jnp.einsum('cqd,ckd->cqk', doc, vc, preferred_element_type=jnp.float32), keep)
    ds = (p * (dp - dc[..., None])).astype(qc.dtype)
    dq = jnp.einsum('cqk,ckd->cqd', ds, kc, preferred_element_type=jnp.float32)
    dk = jnp.einsum('cqk,cqd->ckd', ds, qc, preferred_element_type=jnp.float32)
    return None, (dq.astype(qc.dtype), dk.astype(kc.dtype), dv.astype(vc.dtype))

  _, (dq, dk, dv) = jax.lax.scan(step, None, (q, k, v, pairs, d_out, lse, delta))
  return dq, dk, dv, None, None


_attend.defvjp(_attend_fwd, _attend_bwd)


@functools.partial(jax.named_call, name='chunked_attention')
def chunked_attention(q, k, v, dropout_rate: float = 0.0, dropout_rng=None):
  """Softmax attention over axis 1 of `[B, L, h, dh]` q, k, v; returns `[B, L, h, dh]`. With `dropout_rate`,
  the attention weights are dropped (`dropout_rng`) as the einsum path drops them."""
  b, length, h, dh = q.shape
  c = _group_size(b * h, length)

  def grouped(x):  # [B, L, h, dh] -> [B*h / c, c, L, dh]
    return jnp.transpose(x, (0, 2, 1, 3)).reshape(b * h // c, c, length, dh)

  drop = _Dropout(float(dropout_rate), h, length)
  seed_words = dropout.seeds(dropout_rng) if dropout_rate else jnp.zeros((2,), jnp.uint32)
  pairs = jax.lax.iota(jnp.uint32, b * h).reshape(b * h // c, c)
  out = _attend(grouped(q * jnp.asarray(dh ** -0.5, q.dtype)), grouped(k), grouped(v), seed_words, pairs, drop)
  return jnp.transpose(out.reshape(b, h, length, dh), (0, 2, 1, 3))
