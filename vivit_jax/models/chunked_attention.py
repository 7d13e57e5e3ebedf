"""Attention one (batch, head) group at a time, recomputed in the backward pass: the CPU's fast path.

On a CPU the cost of full attention is not its multiply-adds but the memory it touches: the `[B, h, L, L]`
scores and probabilities are tens of megabytes per layer, every fresh page of them is faulted in on every call,
and training keeps the probabilities of every layer for the backward pass. Measured on 2 cores at
`[4, 785, 6, 64]`, writing one such tensor into fresh memory takes 27 ms, into reused memory 5 ms.

`chunked_attention` runs a `lax.scan` over groups of (example, head) pairs, so the scores of one group live in
one small buffer that every step of the loop reuses, and its custom VJP keeps only q, k, v, the output and
each row's log-sum-exp, recomputing the probabilities group by group in the backward pass (the FlashAttention
recipe: `dS = P * (dP - rowsum(dO * O))`). The result equals softmax(q k^T / sqrt(dh)) v to float rounding.
"""

import functools

import jax
import jax.numpy as jnp

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


def _forward_scan(q, k, v):
  """Per group: output `[c, L, dh]` and the log-sum-exp of each score row `[c, L]`."""
  def step(_, qkv):
    qc, kc, vc = qkv
    s = _scores(qc, kc)
    m = jnp.max(s, axis=-1, keepdims=True)
    e = jnp.exp(s - m)
    total = jnp.sum(e, axis=-1, keepdims=True)
    out = jnp.einsum('cqk,ckd->cqd', e.astype(vc.dtype), vc, preferred_element_type=jnp.float32) / total
    return None, (out.astype(qc.dtype), (m + jnp.log(total))[..., 0])
  _, (out, lse) = jax.lax.scan(step, None, (q, k, v))
  return out, lse


@jax.custom_vjp
def _attend(q, k, v):
  return _forward_scan(q, k, v)[0]


def _attend_fwd(q, k, v):
  out, lse = _forward_scan(q, k, v)
  return out, (q, k, v, out, lse)


def _attend_bwd(residuals, d_out):
  q, k, v, out, lse = residuals
  delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)  # rowsum(dO * O) = rowsum(dP * P)

  def step(_, xs):
    qc, kc, vc, doc, lc, dc = xs
    p = jnp.exp(_scores(qc, kc) - lc[..., None])
    dv = jnp.einsum('cqk,cqd->ckd', p.astype(doc.dtype), doc, preferred_element_type=jnp.float32)
    dp = jnp.einsum('cqd,ckd->cqk', doc, vc, preferred_element_type=jnp.float32)
    ds = (p * (dp - dc[..., None])).astype(qc.dtype)
    dq = jnp.einsum('cqk,ckd->cqd', ds, kc, preferred_element_type=jnp.float32)
    dk = jnp.einsum('cqk,cqd->ckd', ds, qc, preferred_element_type=jnp.float32)
    return None, (dq.astype(qc.dtype), dk.astype(kc.dtype), dv.astype(vc.dtype))

  _, grads = jax.lax.scan(step, None, (q, k, v, d_out, lse, delta))
  return grads


_attend.defvjp(_attend_fwd, _attend_bwd)


@functools.partial(jax.named_call, name='chunked_attention')
def chunked_attention(q, k, v):
  """Softmax attention over axis 1 of `[B, L, h, dh]` q, k, v; returns `[B, L, h, dh]`."""
  b, length, h, dh = q.shape
  c = _group_size(b * h, length)

  def grouped(x):  # [B, L, h, dh] -> [B*h / c, c, L, dh]
    return jnp.transpose(x, (0, 2, 1, 3)).reshape(b * h // c, c, length, dh)

  out = _attend(grouped(q * jnp.asarray(dh ** -0.5, q.dtype)), grouped(k), grouped(v))
  return jnp.transpose(out.reshape(b, h, length, dh), (0, 2, 1, 3))
