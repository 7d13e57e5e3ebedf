"""Mixup and CutMix: the mixing weight is read back from the labels and the result checked with numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tests.tiny import tiny_config
from vivit_jax.train import mixup as mixlib

B, T, H, W, C = 4, 3, 8, 6, 3


def _batch(batch_size=B, seed=0):
  """Random clips; example i has class i, so the partner B-1-i always has a different class."""
  rng = np.random.default_rng(seed)
  return {
      'inputs': jnp.asarray(rng.normal(size=(batch_size, T, H, W, C)).astype(np.float32)),
      'label': jnp.asarray(np.eye(batch_size, dtype=np.float32)),
      'batch_mask': jnp.ones((batch_size,), jnp.float32),
  }


def _own_weight(out):
  """Per example, the weight its own class keeps in the mixed labels."""
  labels = np.asarray(out['label'])
  return labels[np.arange(len(labels)), np.arange(len(labels))]


def _is_cutmix(out, batch):
  """True when every pixel equals the example's own pixel or its partner's (no blending)."""
  x, y = np.asarray(batch['inputs']), np.asarray(out['inputs'])
  return bool(np.all((y == x) | (y == x[::-1])))


def test_mixup_matches_the_formula():
  batch = _batch()
  out = mixlib.mixup(batch, jax.random.PRNGKey(3), 0.4)
  lam = _own_weight(out)
  assert np.allclose(lam, lam[0])  # One lambda for the whole batch.
  lam = float(lam[0])
  assert 0.0 < lam < 1.0
  x, y = np.asarray(batch['inputs']), np.asarray(batch['label'])
  np.testing.assert_allclose(out['inputs'], lam * x + (1 - lam) * x[::-1], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out['label'], lam * y + (1 - lam) * y[::-1], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(out['mix_lambda'], np.full(B, lam), rtol=1e-6)
  np.testing.assert_array_equal(out['batch_mask'], batch['batch_mask'])  # The mask is not mixed.
  assert 'mix_lambda' not in batch  # The input dict is not modified.


def test_mixup_uses_the_same_lambda_in_every_frame_and_pixel():
  batch = _batch()
  out = mixlib.mixup(batch, jax.random.PRNGKey(7), 1.0)
  x, y = np.asarray(batch['inputs'], np.float64), np.asarray(out['inputs'], np.float64)
  # Solve y = lam * x + (1 - lam) * x_rev for lam at every element where x differs from its partner.
  implied = (y - x[::-1]) / (x - x[::-1])
  keep = np.abs(x - x[::-1]) > 0.1
  np.testing.assert_allclose(implied[keep], _own_weight(out)[0], rtol=1e-3)
  per_frame = [np.median(implied[:, t][keep[:, t]]) for t in range(T)]
  np.testing.assert_allclose(per_frame, per_frame[0], rtol=1e-4)


def test_mixup_lambda_distribution_alpha_one_is_uniform():
  batch = _batch(batch_size=2)
  keys = jax.random.split(jax.random.PRNGKey(0), 2000)
  lams = jax.vmap(lambda k: mixlib.mixup(batch, k, 1.0)['label'][0, 0])(keys)
  lams = np.asarray(lams)
  # Beta(1, 1) is Uniform(0, 1): mean 1/2, variance 1/12; the sample mean's std is sqrt(1/12/2000) = 0.0065.
  assert abs(lams.mean() - 0.5) < 0.03
  assert abs(lams.var() - 1 / 12) < 0.01
  assert lams.min() >= 0.0 and lams.max() <= 1.0


def test_box_mask_by_hand():
  mask = mixlib.box_mask(jnp.int32(1), jnp.int32(3), jnp.int32(2), jnp.int32(5), 4, 6)
  want = np.array([[0, 0, 0, 0, 0, 0],
                   [0, 0, 1, 1, 1, 0],
                   [0, 0, 1, 1, 1, 0],
                   [0, 0, 0, 0, 0, 0]], bool)
  np.testing.assert_array_equal(mask, want)


def _check_cutmix(batch, out):
  """Checks one CutMix result; returns the box mask [H, W]."""
  x, y = np.asarray(batch['inputs']), np.asarray(out['inputs'])
  from_partner = np.all(y == x[::-1], axis=-1)  # [B, T, H, W]
  from_self = np.all(y == x, axis=-1)
  assert np.all(from_partner | from_self)
  box = from_partner[0, 0]
  assert np.all(from_partner == box)  # The same box in every example and every frame.
  rows, cols = np.flatnonzero(box.any(axis=1)), np.flatnonzero(box.any(axis=0))
  if box.any():  # A solid rectangle: every pixel of the bounding rows x columns is in the box.
    assert np.all(box[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
    assert box.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
  lam = 1.0 - box.sum() / (H * W)  # The label weight is the area kept, by hand.
  np.testing.assert_allclose(_own_weight(out), lam, rtol=1e-6)
  labels = np.asarray(batch['label'])
  np.testing.assert_allclose(out['label'], lam * labels + (1 - lam) * labels[::-1], atol=1e-6)
  np.testing.assert_allclose(out['mix_lambda'], lam, rtol=1e-6)
  return box


def test_cutmix_pastes_one_box_from_the_partner_into_every_frame():
  batch = _batch()
  boxes = [_check_cutmix(batch, mixlib.cutmix(batch, jax.random.PRNGKey(seed), 1.0)) for seed in range(30)]
  areas = [int(b.sum()) for b in boxes]
  assert any(0 < a < H * W for a in areas)  # Partial boxes occur ...
  touching = [b for b in boxes if b.any() and (b[0].any() or b[-1].any() or b[:, 0].any() or b[:, -1].any())]
  assert touching  # ... and some are clipped at the frame's edge.


def test_cutmix_box_is_square_on_a_square_frame_unless_clipped():
  # Unclipped, the box is floor(S r) x floor(S r) with r = sqrt(1 - lambda); clipping only shrinks a side.
  size = 32
  keys = jax.random.split(jax.random.PRNGKey(1), 200)
  bounds = np.asarray(jax.vmap(lambda k: jnp.stack(mixlib.cutmix_box(k, 1.0, size, size)))(keys))
  top, bottom, left, right = bounds.T
  assert np.all((0 <= top) & (top <= bottom) & (bottom <= size) & (0 <= left) & (left <= right))
  assert np.all(right <= size)
  inside = (top > 0) & (bottom < size) & (left > 0) & (right < size)
  assert inside.sum() > 20
  np.testing.assert_array_equal((bottom - top)[inside], (right - left)[inside])
  # Beta(1, 1): the unclipped side floor(32 sqrt(u)) covers the whole range; some boxes are large, some small.
  sides = (bottom - top)[inside]
  assert sides.min() < 12 and sides.max() > 20


def test_mix_batch_is_a_no_op_when_both_alphas_are_zero():
  batch = _batch()
  assert mixlib.mix_batch(batch, jax.random.PRNGKey(0), tiny_config()) is batch


def test_mix_batch_dispatch_single_method():
  batch = _batch()
  key = jax.random.PRNGKey(5)
  only_mixup = mixlib.mix_batch(batch, key, tiny_config(mixup__alpha=0.5))
  np.testing.assert_array_equal(only_mixup['inputs'], mixlib.mixup(batch, key, 0.5)['inputs'])
  assert not _is_cutmix(only_mixup, batch)
  only_cutmix = mixlib.mix_batch(batch, key, tiny_config(cutmix__alpha=0.5))
  np.testing.assert_array_equal(only_cutmix['inputs'], mixlib.cutmix(batch, key, 0.5)['inputs'])
  _check_cutmix(batch, only_cutmix)


@pytest.mark.parametrize('switch_prob,want_cutmix', [(0.0, False), (1.0, True)])
def test_mix_batch_switch_prob_extremes(switch_prob, want_cutmix):
  batch = _batch()
  config = tiny_config(mixup__alpha=1.0, cutmix__alpha=1.0, cutmix__switch_prob=switch_prob)
  fn = jax.jit(lambda b, k: mixlib.mix_batch(b, k, config))
  for seed in range(10):
    out = fn(batch, jax.random.PRNGKey(seed))
    assert _is_cutmix(out, batch) == want_cutmix
    if want_cutmix:
      _check_cutmix(batch, out)


def test_mix_batch_switch_prob_half_uses_both():
  batch = _batch()
  config = tiny_config(mixup__alpha=1.0, cutmix__alpha=1.0, cutmix__switch_prob=0.5)
  fn = jax.jit(lambda b, k: mixlib.mix_batch(b, k, config))
  kinds = [_is_cutmix(fn(batch, jax.random.PRNGKey(seed)), batch) for seed in range(40)]
  assert 5 < sum(kinds) < 35


def test_mix_batch_under_jit_on_a_sharded_batch():
  batch = _batch(batch_size=16)
  mesh = jax.make_mesh((8,), ('data',))
  sharded = jax.device_put(batch, NamedSharding(mesh, P('data')))
  for overrides in ({'mixup__alpha': 0.3}, {'cutmix__alpha': 0.3},
                    {'mixup__alpha': 0.3, 'cutmix__alpha': 0.3}):
    config = tiny_config(**overrides)
    key = jax.random.PRNGKey(11)
    mix = lambda b, k, c=config: mixlib.mix_batch(b, k, c)
    got = jax.jit(mix)(sharded, key)
    # The reference: the same function on the whole batch on one device (jitted too: op by op, the Beta sampling
    # alone takes seconds).
    want = jax.jit(mix)(jax.device_put(batch, jax.devices()[0]), key)
    assert len(want['inputs'].sharding.device_set) == 1 and len(got['inputs'].sharding.device_set) == 8
    for name in ('inputs', 'label', 'mix_lambda', 'batch_mask'):
      np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
    assert got['inputs'].shape == (16, T, H, W, C)
