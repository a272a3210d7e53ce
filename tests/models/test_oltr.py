"""Tests for the OLTR modules: modulated attention, neck, cosine classifier, meta-embedding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltjax.models import Classifier
from ltjax.models.oltr import (
  COSINE_SCALE,
  MIN_CENTROID_DISTANCE,
  REACHABILITY_SCALE,
  CosineNormClassifier,
  MetaEmbeddingHead,
  ModulatedAttention,
  OLTRNeck,
)

KEY = jax.random.key(0, impl="rbg")


def _softmax(z, axis=-1):
  z = z - z.max(axis=axis, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=axis, keepdims=True)


def _np_attention(params, x):
  """NumPy transcription of ModulatedAttention (Sec. 3.2, Eq. 3)."""
  b, h, w, c = x.shape
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  flat = x.reshape(b, h * w, c).astype(np.float64)

  def conv(name, bias=True):
    kernel = p[name]["kernel"][0, 0]  # (C_in, C_out)
    return flat @ kernel + (p[name]["bias"] if bias else 0.0)

  f = _softmax(np.einsum("bic,bjc->bij", conv("theta"), conv("phi")))
  y = f @ conv("g")
  mask = (y @ p["W"]["kernel"][0, 0]).reshape(b, h, w, c)
  spatial = _softmax(x.reshape(b, -1) @ p["spatial"]["kernel"] + p["spatial"]["bias"])
  return spatial.reshape(b, h, w, 1) * mask + x


def _np_cosnorm(weight, v, scale):
  norm = np.linalg.norm(v, axis=1, keepdims=True)
  ex = (norm / (1 + norm)) * (v / norm)
  ew = weight / np.linalg.norm(weight, axis=1, keepdims=True)
  return scale * ex @ ew.T


def _np_meta_embedding(params, x, centroids, reach_scale, cos_scale):
  """NumPy transcription of MetaEmbeddingHead; distances by broadcasting (small sizes)."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  x = x.astype(np.float64)
  c = centroids.astype(np.float64)
  dist = np.linalg.norm(x[:, None, :] - c[None, :, :], axis=-1)  # (B, K)
  gamma = reach_scale / dist.min(axis=1)
  coeff = _softmax(x @ p["hallucinator"]["kernel"] + p["hallucinator"]["bias"])
  memory = coeff @ c
  e = np.tanh(x @ p["selector"]["kernel"] + p["selector"]["bias"])
  infused = e * memory
  meta = gamma[:, None] * (x + infused)
  return _np_cosnorm(p["cosnorm"]["weight"], meta, cos_scale), x, infused, gamma


# --- ModulatedAttention ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 7, 7, 8), (3, 4, 5, 6), (1, 1, 3, 2)])
def test_modulated_attention_is_identity_at_init_and_not_after_perturbing_w(shape):
  rng = np.random.default_rng(0)
  x = rng.normal(size=shape).astype(np.float32) * 3.0
  layer = ModulatedAttention()
  variables = layer.init(KEY, x)
  params = variables["params"]
  b, h, w, c = shape
  assert set(params) == {"theta", "phi", "g", "W", "spatial"}
  assert params["W"]["kernel"].shape == (1, 1, c // 2, c) and "bias" not in params["W"]
  assert params["spatial"]["kernel"].shape == (h * w * c, h * w)
  np.testing.assert_array_equal(params["W"]["kernel"], 0.0)

  out, state = layer.apply(variables, x, mutable=["intermediates"])
  assert out.shape == shape and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, x)  # exactly the identity
  (att,) = state["intermediates"]["attention_map"]
  assert att.shape == (b, h, w, 1)
  np.testing.assert_allclose(att.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)

  kernel = rng.normal(size=params["W"]["kernel"].shape).astype(np.float32)
  perturbed = {**params, "W": {"kernel": jnp.asarray(kernel)}}
  out = np.asarray(layer.apply({"params": perturbed}, x))
  assert np.abs(out - x).max() > 1e-3
  np.testing.assert_allclose(out, _np_attention(perturbed, x), rtol=1e-4, atol=1e-5)


def test_modulated_attention_rejects_bad_inputs():
  layer = ModulatedAttention()
  with pytest.raises(ValueError, match=r"\(B, H, W, C\).*\(4, 8\)"):
    layer.init(KEY, jnp.zeros((4, 8)))
  with pytest.raises(ValueError, match="C=1"):
    layer.init(KEY, jnp.zeros((1, 2, 2, 1)))


# --- OLTRNeck --------------------------------------------------------------------------------


@pytest.mark.parametrize("use_attention", [True, False])
@pytest.mark.parametrize("fc_add", [0, 3])
def test_neck_shapes_and_params(use_attention, fc_add):
  x = jax.random.normal(KEY, (2, 4, 5, 6))
  neck = OLTRNeck(use_attention=use_attention, fc_add=fc_add)
  variables = neck.init(KEY, x, train=False)
  out = neck.apply(variables, x, train=True)
  assert out.shape == (2, fc_add or 6) and out.dtype == jnp.float32
  expected = ({"attention"} if use_attention else set()) | ({"fc_add"} if fc_add else set())
  assert set(variables.get("params", {})) == expected
  if fc_add:
    assert variables["params"]["fc_add"]["kernel"].shape == (6, fc_add)
    assert np.all(np.asarray(out) >= 0.0)  # ReLU


@pytest.mark.parametrize("use_attention", [True, False])
def test_neck_at_init_is_average_pooling(use_attention):
  x = jax.random.normal(KEY, (3, 4, 5, 6))
  neck = OLTRNeck(use_attention=use_attention)
  out = neck.apply(neck.init(KEY, x), x)
  np.testing.assert_array_equal(out, jnp.mean(x, axis=(1, 2)))


def test_neck_rejects_negative_fc_add():
  with pytest.raises(ValueError, match="fc_add must be an int >= 0, got -1"):
    OLTRNeck(fc_add=-1).init(KEY, jnp.zeros((1, 2, 2, 4)))


# --- CosineNormClassifier ----------------------------------------------------------------------


def test_cosine_norm_classifier_matches_formula_and_init_range():
  rng = np.random.default_rng(1)
  v = rng.normal(size=(5, 16)).astype(np.float32) * rng.uniform(0.1, 10, size=(5, 1))
  head = CosineNormClassifier(num_classes=7)
  params = head.init(KEY, v)["params"]
  assert set(params) == {"weight"} and params["weight"].shape == (7, 16)
  bound = 1.0 / np.sqrt(16)
  w = np.asarray(params["weight"])
  assert np.all(np.abs(w) <= bound) and np.abs(w).max() > 0.5 * bound
  logits = head.apply({"params": params}, v)
  assert logits.shape == (5, 7) and logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, _np_cosnorm(w, v, COSINE_SCALE), rtol=1e-5, atol=1e-5)
  scaled = CosineNormClassifier(num_classes=7, scale=2.0).apply({"params": params}, v)
  np.testing.assert_allclose(scaled, _np_cosnorm(w, v, 2.0), rtol=1e-5, atol=1e-5)


def test_cosine_norm_classifier_zero_input_gives_zero_logits_and_finite_grad():
  head = CosineNormClassifier(num_classes=3)
  v = jnp.zeros((2, 4))
  params = head.init(KEY, v)["params"]
  np.testing.assert_array_equal(head.apply({"params": params}, v), 0.0)
  grad = jax.grad(lambda v: head.apply({"params": params}, v).sum())(v)
  assert np.all(np.isfinite(grad))


# --- MetaEmbeddingHead -------------------------------------------------------------------------


def _head_inputs(b=4, k=6, d=5, seed=2):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(b, d)).astype(np.float32)
  centroids = rng.normal(size=(k, d)).astype(np.float32)
  return x, centroids


def test_meta_embedding_head_matches_numpy():
  x, centroids = _head_inputs()
  head = MetaEmbeddingHead(num_classes=6)
  params = head.init(KEY, x, False, centroids=centroids)["params"]
  assert set(params) == {"hallucinator", "selector", "cosnorm"}
  assert params["hallucinator"]["kernel"].shape == (5, 6)  # LinearClassifier's "fc" layout
  assert params["hallucinator"]["bias"].shape == (6,)
  assert params["selector"]["kernel"].shape == (5, 5)
  assert params["cosnorm"]["weight"].shape == (6, 5)
  # Non-trivial hallucinator values (init is small) so the memory term matters.
  params = {
    **params,
    "hallucinator": jax.tree.map(lambda a: a * 5.0, params["hallucinator"]),
  }
  logits, extras = head.apply({"params": params}, x, True, centroids=centroids)
  ref_logits, ref_x, ref_infused, ref_gamma = _np_meta_embedding(
    params, x, centroids, REACHABILITY_SCALE, COSINE_SCALE
  )
  assert logits.shape == (4, 6) and logits.dtype == jnp.float32
  assert set(extras) == {"direct_feature", "infused_feature", "reachability"}
  assert extras["reachability"].shape == (4,)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(extras["direct_feature"], ref_x, rtol=1e-6)
  np.testing.assert_allclose(extras["infused_feature"], ref_infused, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(extras["reachability"], ref_gamma, rtol=1e-5)

  other = MetaEmbeddingHead(num_classes=6, reachability_scale=3.0, cosine_scale=4.0)
  logits, extras = other.apply({"params": params}, x, centroids=centroids)
  ref_logits, _, _, ref_gamma = _np_meta_embedding(params, x, centroids, 3.0, 4.0)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(extras["reachability"], ref_gamma, rtol=1e-5)


def test_meta_embedding_head_gives_centroids_zero_gradient():
  x, centroids = _head_inputs()
  head = MetaEmbeddingHead(num_classes=6)
  params = head.init(KEY, x, centroids=centroids)["params"]
  labels = jnp.arange(4) % 6

  def loss(params, x, centroids):
    logits, extras = head.apply({"params": params}, x, centroids=centroids)
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1).mean()
    return ce + extras["infused_feature"].sum() + extras["reachability"].sum()

  grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  g_params, g_x, g_centroids = grad_fn(params, x, centroids)
  np.testing.assert_array_equal(g_centroids, 0.0)
  assert np.abs(g_x).max() > 0
  assert all(np.abs(g).max() > 0 for g in jax.tree.leaves(g_params))


def test_meta_embedding_head_feature_on_a_centroid_stays_finite():
  x, centroids = _head_inputs()
  x[1] = centroids[2]
  head = MetaEmbeddingHead(num_classes=6)
  params = head.init(KEY, x, centroids=centroids)["params"]
  fn = lambda x: head.apply({"params": params}, x, centroids=centroids)
  logits, extras = fn(x)
  gamma = np.asarray(extras["reachability"])
  # The expansion's float32 cancellation leaves at most ~1e-3 of distance at a centroid.
  assert gamma[1] > 1e3 * REACHABILITY_SCALE
  assert gamma[1] <= REACHABILITY_SCALE / MIN_CENTROID_DISTANCE * (1 + 1e-6)
  assert np.all(np.isfinite(logits))
  grad = jax.grad(lambda x: fn(x)[0].sum())(x)
  assert np.all(np.isfinite(grad))


def test_meta_embedding_head_rejects_bad_centroids():
  x, centroids = _head_inputs()
  head = MetaEmbeddingHead(num_classes=6)
  with pytest.raises(ValueError, match=r"\(6, 5\).*got None"):
    head.init(KEY, x)
  with pytest.raises(ValueError, match=r"shape \(6, 5\).*got \(5, 6\)"):
    head.init(KEY, x, centroids=centroids.T)
  with pytest.raises(ValueError, match=r"got \(7, 5\)"):
    head.init(KEY, x, centroids=np.zeros((7, 5), np.float32))


def _all_shapes(jaxpr):
  """Shapes of every variable of a (closed) jaxpr, sub-jaxprs (pjit, custom_jvp...) included."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  shapes = [v.aval.shape for v in (*jaxpr.invars, *jaxpr.constvars) if hasattr(v.aval, "shape")]
  for eqn in jaxpr.eqns:
    shapes += [v.aval.shape for v in eqn.outvars if hasattr(v.aval, "shape")]
    for param in eqn.params.values():
      for sub in param if isinstance(param, tuple | list) else (param,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr | jax.extend.core.Jaxpr):
          shapes += _all_shapes(sub)
  return shapes


def test_meta_embedding_head_never_forms_a_batch_by_class_by_dim_array():
  b, k, d = 4, 6, 5
  x, centroids = _head_inputs(b, k, d)
  head = MetaEmbeddingHead(num_classes=k)
  params = head.init(KEY, x, centroids=centroids)["params"]

  def forward(params, x, centroids):
    return head.apply({"params": params}, x, centroids=centroids)

  def loss(params, x, centroids):
    return forward(params, x, centroids)[0].mean()

  def has_bkd(fn):
    shapes = _all_shapes(jax.make_jaxpr(fn)(params, x, centroids))
    assert shapes  # the walker saw the program
    return any(np.prod(s, dtype=int) >= b * k * d for s in shapes)

  # The check catches a naive broadcast distance.
  naive = lambda p, x, c: jnp.linalg.norm(x[:, None] - c[None], axis=-1).min(-1)
  assert has_bkd(naive)
  assert not has_bkd(forward)
  assert not has_bkd(jax.grad(loss, argnums=(0, 1)))


def test_meta_embedding_head_bfloat16_compute():
  x, centroids = _head_inputs()
  head32 = MetaEmbeddingHead(num_classes=6)
  params = head32.init(KEY, x, centroids=centroids)["params"]
  logits32, _ = head32.apply({"params": params}, x, centroids=centroids)
  head16 = MetaEmbeddingHead(num_classes=6, dtype=jnp.bfloat16)
  logits16, extras = head16.apply({"params": params}, x, centroids=centroids)
  assert logits16.dtype == jnp.float32 and extras["infused_feature"].dtype == jnp.float32
  np.testing.assert_allclose(logits16, logits32, atol=0.1)


# --- In the Classifier -------------------------------------------------------------------------


class _TinyBackbone(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    fmap = nn.Conv(8, (3, 3), strides=(2, 2), name="conv")(x)
    return {"feature_map": fmap, "features": fmap.mean(axis=(1, 2))}


def test_classifier_with_oltr_neck_and_meta_embedding_head():
  model = Classifier(
    backbone=_TinyBackbone(),
    head=MetaEmbeddingHead(num_classes=5),
    neck=OLTRNeck(use_attention=True, fc_add=4),
  )
  images = jax.random.normal(KEY, (2, 8, 10, 3))
  centroids = jax.random.normal(KEY, (5, 4))
  variables = jax.jit(lambda k, i, c: model.init(k, i, train=False, centroids=c))(
    KEY, images, centroids
  )
  assert set(variables["params"]) == {"backbone", "neck", "head"}
  assert set(variables["params"]["neck"]) == {"attention", "fc_add"}
  apply = jax.jit(lambda v, i, c: model.apply(v, i, train=True, centroids=c))
  logits, aux = apply(variables, images, centroids)
  assert logits.shape == (2, 5)
  assert aux["features"].shape == aux["direct_feature"].shape == (2, 4)
  np.testing.assert_array_equal(aux["features"], aux["direct_feature"])
  assert aux["reachability"].shape == (2,)


def test_meta_embedding_head_at_inaturalist_scale_compiles_runs_and_stays_small():
  """Forward + backward at K=8142, D=2048, B=128 (iNaturalist 2018, ResNet-50 features)."""
  k, d, b = 8142, 2048, 128
  head = MetaEmbeddingHead(num_classes=k)
  key = jax.random.key(0, impl="rbg")
  x = jax.random.normal(jax.random.fold_in(key, 1), (b, d))
  centroids = jax.random.normal(jax.random.fold_in(key, 2), (k, d))
  params = jax.jit(head.init)(key, x, centroids=centroids)["params"]

  def loss(params, x, centroids):
    return head.apply({"params": params}, x, centroids=centroids)[0].mean()

  compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x, centroids).compile()
  memory = compiled.memory_analysis()
  broadcast = 4 * b * k * d  # one (B, K, D) float32 array: 8.0 GiB
  assert memory.temp_size_in_bytes < broadcast / 20
  grads, dx = compiled(params, x, centroids)
  assert dx.shape == (b, d) and np.all(np.isfinite(dx))
  assert grads["hallucinator"]["kernel"].shape == (d, k)
