"""Tests for OLTR's discriminative centroids loss against a direct numpy transcription."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ltjax import losses
from ltjax.losses import disc_centroids_loss

K, D = 6, 5
# Class 3 is absent from the batch, class 1 appears four times.
LABELS = np.array([0, 1, 1, 1, 2, 4, 5, 1, 0, 2], np.int32)
B = len(LABELS)


def _data(far=False, seed=0):
  rng = np.random.default_rng(seed)
  x = 0.5 * rng.normal(size=(B, D))
  c = 0.5 * rng.normal(size=(K, D))
  if far:  # Mean distance to the other centroids far above the margin: repel clipped to 0.
    x = x + 10.0
  return x.astype(np.float32), c.astype(np.float32)


def _np_raw_repel(x, y, c, margin):
  x, c = x.astype(np.float64), c.astype(np.float64)
  dist = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)  # (B, K)
  other = y[:, None] != np.arange(len(c))[None, :]
  return margin - (dist * other).sum() / (len(x) * len(c))


def _np_loss(x, y, c, margin=losses.MARGIN, w=losses.REPEL_WEIGHT):
  x, c = x.astype(np.float64), c.astype(np.float64)
  attract = ((x - c[y]) ** 2).sum() / 2.0 / len(x)
  repel = np.clip(_np_raw_repel(x, y, c, margin), 0.0, 1e6)
  return attract + w * repel


def _np_grads(x, y, c, margin=losses.MARGIN, w=losses.REPEL_WEIGHT):
  """(d/dx of both terms, centre-loss update, ordinary d/dc of w * repel)."""
  x, c = x.astype(np.float64), c.astype(np.float64)
  b, k = len(x), len(c)
  active = 0.0 < _np_raw_repel(x, y, c, margin) < 1e6
  gx = (x - c[y]) / b
  gc_repel = np.zeros_like(c)
  center = np.zeros_like(c)
  for i in range(b):
    for j in range(k):
      if j != y[i] and active:
        gx[i] -= w / (b * k) * 2.0 * (x[i] - c[j])
        gc_repel[j] -= w / (b * k) * 2.0 * (c[j] - x[i])
  for j in range(k):
    members = y == j
    center[j] = (c[j] - x[members]).sum(0) / (1.0 + members.sum()) / b
  return gx, center, gc_repel


def _grads(x, y, c, scale=1.0):
  return jax.jit(jax.grad(lambda x, c: scale * disc_centroids_loss(x, y, c), argnums=(0, 1)))(x, c)


@pytest.mark.parametrize("far", [False, True], ids=["repel_active", "repel_clipped"])
def test_value_matches_numpy(far):
  x, c = _data(far)
  raw = _np_raw_repel(x, LABELS, c, losses.MARGIN)
  assert (raw > 0) if not far else (raw < 0)  # The case really is what it claims.
  want = _np_loss(x, LABELS, c)
  np.testing.assert_allclose(disc_centroids_loss(x, LABELS, c), want, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(disc_centroids_loss)(x, LABELS, c), want, rtol=1e-5)


def test_value_with_other_margin_and_weight_and_jax_inputs():
  x, c = _data(seed=1)
  got = disc_centroids_loss(jnp.asarray(x), jnp.asarray(LABELS), jnp.asarray(c), 20.0, 0.5)
  np.testing.assert_allclose(got, _np_loss(x, LABELS, c, 20.0, 0.5), rtol=1e-5)


@pytest.mark.parametrize("far", [False, True], ids=["repel_active", "repel_clipped"])
def test_gradients_match_numpy(far):
  x, c = _data(far)
  gx_want, center, gc_repel = _np_grads(x, LABELS, c)
  gx, gc = _grads(x, LABELS, c)
  np.testing.assert_allclose(gx, gx_want, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(gc, center + gc_repel, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(center[3], 0.0)  # Absent class: no centre-loss update.
  if far:
    np.testing.assert_array_equal(gc_repel, 0.0)
    np.testing.assert_allclose(gc[3], 0.0, atol=1e-7)


def test_loss_weight_does_not_scale_the_centre_loss_update():
  x, c = _data()
  gx_want, center, gc_repel = _np_grads(x, LABELS, c)
  assert np.abs(gc_repel).max() > 1e-4  # The repel part is not negligible.
  gx, gc = _grads(x, LABELS, c, scale=losses.LOSS_WEIGHT)
  np.testing.assert_allclose(gx, losses.LOSS_WEIGHT * gx_want, rtol=1e-4, atol=1e-8)
  np.testing.assert_allclose(gc, center + losses.LOSS_WEIGHT * gc_repel, rtol=1e-4, atol=1e-8)


def test_no_batch_by_class_by_dim_intermediate():
  x, c = _data()
  fn = jax.grad(lambda x, c: disc_centroids_loss(x, LABELS, c), argnums=(0, 1))
  jaxpr = jax.make_jaxpr(fn)(x, c)

  def shapes(jaxpr):
    for eqn in jaxpr.eqns:
      yield from (v.aval.shape for v in eqn.outvars if hasattr(v.aval, "shape"))
      for p in eqn.params.values():
        if hasattr(p, "jaxpr") and hasattr(p.jaxpr, "eqns"):
          yield from shapes(p.jaxpr)
        elif hasattr(p, "eqns"):
          yield from shapes(p)

  seen = list(shapes(jaxpr.jaxpr))
  assert (B, K) in seen
  assert all(np.prod(s, dtype=int) < B * K * D for s in seen), sorted(set(seen))


def test_sharded_equals_single_device():
  assert len(jax.devices()) >= 8
  mesh = Mesh(np.asarray(jax.devices()[:8]), ("data",), axis_types=(AxisType.Auto,))
  rng = np.random.default_rng(3)
  labels = rng.integers(0, K - 1, size=16).astype(np.int32)  # Class K - 1 absent.
  x = (0.5 * rng.normal(size=(16, D))).astype(np.float32)
  c = (0.5 * rng.normal(size=(K, D))).astype(np.float32)

  fn = jax.jit(jax.value_and_grad(disc_centroids_loss, argnums=(0, 2)))
  want_loss, (want_gx, want_gc) = fn(x, labels, c)
  xs = jax.device_put(x, NamedSharding(mesh, P("data")))
  ys = jax.device_put(labels, NamedSharding(mesh, P("data")))
  cs = jax.device_put(c, NamedSharding(mesh, P()))
  assert len(xs.sharding.device_set) == 8
  got_loss, (got_gx, got_gc) = fn(xs, ys, cs)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_gx, want_gx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_gc, want_gc, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(want_loss, _np_loss(x, labels, c), rtol=1e-5)


@pytest.mark.parametrize(
  "x_shape, y_shape, c_shape, match",
  [
    ((B, D), (B,), (K, D + 1), "feature dimension"),
    ((B, D), (B - 1,), (K, D), "one entry per row"),
    ((B,), (B,), (K, D), "features must be"),
    ((B, D), (B, 1), (K, D), "labels must be"),
    ((B, D), (B,), (D,), "centroids must be"),
    ((0, D), (0,), (K, D), "at least one sample"),
  ],
)
def test_bad_shapes_raise(x_shape, y_shape, c_shape, match):
  with pytest.raises(ValueError, match=match):
    disc_centroids_loss(np.zeros(x_shape), np.zeros(y_shape, np.int32), np.zeros(c_shape))


def test_float_labels_raise():
  x, c = _data()
  with pytest.raises(TypeError, match="integers"):
    disc_centroids_loss(x, LABELS.astype(np.float32), c)
