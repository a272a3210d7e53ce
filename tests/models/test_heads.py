"""Tests for the Decoupling classifier tools: tau-normalisation, NCM and the LWS head."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltjax.models import HEADS, get_head
from ltjax.models.heads import (
  NCM_DISTANCES,
  NCM_FEATURE_TYPES,
  LinearClassifier,
  LWSClassifier,
  class_means,
  ncm_logits,
  tau_logits,
  tau_normalize,
  tau_sweep_predictions,
)

KEY = jax.random.key(0, impl="rbg")


def _weights(rng, k=12, d=16):
  # Very different row norms, as after long-tailed training; one zero row.
  w = rng.normal(size=(k, d)) * rng.uniform(0.1, 5.0, size=(k, 1))
  w[3] = 0.0
  return w.astype(np.float32)


# --- tau-normalisation -----------------------------------------------------------------------


def test_tau_zero_is_identity_and_tau_one_gives_unit_rows():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(20, 16)).astype(np.float32)
  w = _weights(rng)
  np.testing.assert_array_equal(tau_normalize(w, 0.0), w)
  np.testing.assert_allclose(tau_logits(x, w, 0.0), x @ w.T, rtol=1e-5, atol=1e-5)
  norms = np.linalg.norm(np.asarray(tau_normalize(w, 1.0)), axis=1)
  expected = np.ones(len(w))
  expected[3] = 0.0  # the zero row stays zero (no NaN)
  np.testing.assert_allclose(norms, expected, rtol=1e-6, atol=1e-6)
  half = np.asarray(tau_normalize(w, 0.5))
  ref = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-30) ** 0.5
  np.testing.assert_allclose(half, ref, rtol=1e-6, atol=1e-7)


def test_tau_logits_matches_normalised_weights():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(30, 16)).astype(np.float32)
  w = _weights(rng)
  for tau in (0.0, 0.3, 1.0, 1.7):
    ref = x @ np.asarray(tau_normalize(w, tau)).T
    out = tau_logits(x, w, tau)
    assert out.shape == (30, 12) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("taus_per_step", [1, 4])
def test_sweep_equals_naive_per_tau_argmax(taus_per_step):
  rng = np.random.default_rng(2)
  x = rng.normal(size=(500, 16)).astype(np.float32)
  w = _weights(rng)
  taus = np.linspace(0.0, 2.0, 21)
  preds = np.asarray(tau_sweep_predictions(x, w, taus, taus_per_step=taus_per_step))
  assert preds.shape == (21, 500) and preds.dtype == np.int32
  for t, tau in enumerate(taus):
    logits = np.asarray(x @ tau_normalize(w, tau).T)
    naive = logits.argmax(-1)
    # The two orders of floating-point operations may only disagree on exact near-ties.
    rows = np.arange(len(x))
    gap = np.abs(logits[rows, preds[t]] - logits[rows, naive])
    assert np.all((preds[t] == naive) | (gap <= 1e-5 * np.abs(logits).max())), tau
    assert np.mean(preds[t] == naive) > 0.99
  assert len({tuple(p) for p in preds}) > 1  # the grid actually changes predictions


def test_tau_bad_inputs():
  w = np.ones((3, 4), np.float32)
  with pytest.raises(ValueError, match="kernel.T"):
    tau_logits(np.ones((2, 3)), w, 1.0)
  with pytest.raises(ValueError, match="weights must be 2-D"):
    tau_normalize(np.ones(4), 1.0)
  with pytest.raises(ValueError, match="tau must be a scalar"):
    tau_normalize(w, [0.5, 1.0])
  with pytest.raises(ValueError, match="non-empty 1-D"):
    tau_sweep_predictions(np.ones((2, 4)), w, 1.0)
  with pytest.raises(ValueError, match="taus_per_step"):
    tau_sweep_predictions(np.ones((2, 4)), w, [1.0], taus_per_step=0)


# --- NCM -------------------------------------------------------------------------------------


def _np_transform(x, mu, feat_type):
  if feat_type == "cl2n":
    x = x - mu
  if feat_type in ("l2n", "cl2n"):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
  return x


def _np_class_means(x, y, k, feat_type):
  mu = x.mean(0)
  f = _np_transform(x, mu, feat_type)
  return np.stack([f[y == c].mean(0) for c in range(k)]), mu


def _np_ncm_logits(q, m, mu, feat_type, distance):
  q = _np_transform(q, mu, feat_type)
  if distance == "l2":
    return -(((q[:, None, :] - m[None, :, :]) ** 2).sum(-1))
  return (q[:, None, :] * m[None, :, :]).sum(-1) / q.shape[1]


def _ncm_data(seed=3, k=5, d=8):
  rng = np.random.default_rng(seed)
  y = np.concatenate([np.arange(k), rng.integers(0, k, 40)])  # every class present
  x = (rng.normal(size=(len(y), d)) + y[:, None] * 0.5 + 1.0).astype(np.float64)
  q = rng.normal(size=(17, d)) + 1.0
  return x, y, q


@pytest.mark.parametrize("feat_type", NCM_FEATURE_TYPES)
def test_class_means_match_numpy_loop(feat_type):
  x, y, _ = _ncm_data()
  means, mu = class_means(x, y, 5, feat_type)
  ref_means, ref_mu = _np_class_means(x, y, 5, feat_type)
  assert means.shape == (5, 8) and means.dtype == jnp.float32 and mu.shape == (8,)
  np.testing.assert_allclose(means, ref_means, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(mu, ref_mu, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  ("feat_type", "distance"), list(itertools.product(NCM_FEATURE_TYPES, NCM_DISTANCES))
)
def test_ncm_logits_match_numpy_reference(feat_type, distance):
  x, y, q = _ncm_data()
  means, mu = class_means(x, y, 5, feat_type)
  out = ncm_logits(q, means, mu, feat_type, distance)
  m64, mu64 = np.asarray(means, np.float64), np.asarray(mu, np.float64)
  ref = _np_ncm_logits(q, m64, mu64, feat_type, distance)
  assert out.shape == (17, 5) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_ncm_errors():
  x, y, q = _ncm_data()
  with pytest.raises(ValueError, match=r"class id\(s\): \[5\]"):
    class_means(x, y, 6, "cl2n")
  with pytest.raises(ValueError, match=r"\[1, 3\]"):
    class_means(x[y % 2 == 0], y[y % 2 == 0], 5, "un")
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
    class_means(x, y, 4, "un")
  with pytest.raises(ValueError, match=r"valid feat_types: \['un', 'l2n', 'cl2n'\]"):
    class_means(x, y, 5, "l2")
  means, mu = class_means(x, y, 5, "un")
  with pytest.raises(ValueError, match=r"valid distances: \['l2', 'cos'\]"):
    ncm_logits(q, means, mu, "un", "euclidean")
  with pytest.raises(ValueError, match="valid feat_types"):
    ncm_logits(q, means, mu, "cl2", "l2")


# --- LWS -------------------------------------------------------------------------------------


def test_lws_head_extends_linear_head():
  x = jax.random.normal(jax.random.key(1, impl="rbg"), (6, 16))
  lws = LWSClassifier(num_classes=7)
  params = lws.init(KEY, x)["params"]
  assert set(params) == {"fc", "scales"}
  assert params["fc"]["kernel"].shape == (16, 7) and params["fc"]["bias"].shape == (7,)
  np.testing.assert_array_equal(params["scales"], np.ones(7, np.float32))

  # A stage-1 linear head's params load unchanged and give the same logits at f = 1.
  linear = LinearClassifier(num_classes=7)
  lin_params = linear.init(jax.random.key(2, impl="rbg"), x)["params"]
  assert jax.tree.structure(lin_params) == jax.tree.structure({"fc": params["fc"]})
  loaded = {"fc": lin_params["fc"], "scales": params["scales"]}
  ref = linear.apply({"params": lin_params}, x)
  out = lws.apply({"params": loaded}, x, train=True)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)

  # Scaling f_k scales logit column k only.
  scaled = {**loaded, "scales": loaded["scales"].at[4].set(2.5)}
  out2 = np.asarray(lws.apply({"params": scaled}, x))
  np.testing.assert_allclose(out2[:, 4], 2.5 * np.asarray(ref)[:, 4], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.delete(out2, 4, 1), np.delete(np.asarray(ref), 4, 1))


def test_lws_registered():
  assert HEADS["lws"].name == "lws"
  head = get_head("lws", num_classes=3, dtype="bfloat16")
  assert isinstance(head, LWSClassifier) and head.dtype == jnp.bfloat16
  out = head.apply(head.init(KEY, jnp.ones((2, 4))), jnp.ones((2, 4)))
  assert out.dtype == jnp.float32 and out.shape == (2, 3)


def test_cosine_head_is_lifts_cosine_classifier():
  """LIFT's ``CosineClassifier`` restated in numpy: F.normalize(x) @ F.normalize(W).T *
  scale; the kernel where tau-norm and NCM read a head's."""
  head = get_head("cosine", num_classes=5, head_scale=25.0)
  x = jax.random.normal(jax.random.key(0), (4, 8)) * 3.0
  params = head.init(jax.random.key(1), x)
  kernel = np.asarray(params["params"]["fc"]["kernel"])
  np.testing.assert_allclose(np.linalg.norm(kernel, axis=0), 1.0, rtol=1e-5)  # LIFT's init.
  w = kernel.T * np.arange(1, 6)[:, None]  # Class rows of other norms: normalised away.
  logits = head.apply({"params": {"fc": {"kernel": w.T}}}, x)
  xn = np.asarray(x) / np.linalg.norm(np.asarray(x), axis=1, keepdims=True)
  wn = w / np.linalg.norm(w, axis=1, keepdims=True)
  np.testing.assert_allclose(np.asarray(logits), 25.0 * xn @ wn.T, rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(logits).max()) <= 25.0 + 1e-4


def test_head_scale_is_the_cosine_heads_option():
  """A head reads its own options from ``config.model`` and refuses another head's."""
  from ltjax.models import head_registry

  cosine = head_registry.from_config({"head": "cosine", "head_scale": 30.0, "width": 2})
  assert cosine.module(4, jnp.float32).scale == 30.0
  assert head_registry.from_config({"head": "lws_cosine", "head_scale": 30.0}).head_scale == 30.0
  assert head_registry.from_config({"head": "linear", "head_scale": 25.0}) == head_registry.Linear()
  with pytest.raises(
    ValueError, match=r"head_scale=16.0 is an option of the cosine / lws_cosine heads"
  ):
    head_registry.from_config({"head": "linear", "head_scale": 16.0})
  with pytest.raises(ValueError, match="model.head='arcface': unknown head; valid: .*'cosine'"):
    head_registry.from_config({"head": "arcface"})


def test_a_new_head_is_one_registered_class_and_its_option():
  """A toy head with an option of its own: built from ``config.model`` by the registry,
  refused on other heads, trained by ``Classifier`` (the extension path of the README)."""
  import dataclasses

  from ltjax import models
  from ltjax.models import head_registry

  class Toy(nn.Module):
    num_classes: int
    bias: float

    @nn.compact
    def __call__(self, x, train=False):
      del train
      return nn.Dense(self.num_classes, name="fc")(x) + self.bias

  @head_registry.register
  @dataclasses.dataclass(frozen=True)
  class ToyHead(head_registry.Head):
    name = "toy_bias"
    toy_bias: float = 0.0

    def module(self, num_classes, dtype):
      return Toy(num_classes, self.toy_bias)

  try:
    head = head_registry.from_config({"head": "toy_bias", "toy_bias": 3.0})
    model = models.build_model("cifar_resnet8", head, 3, width=0.25)
    x = jnp.zeros((2, 8, 8, 3))
    variables = model.init(KEY, x, train=False)
    logits, _ = model.apply(variables, x, train=False)
    assert logits.shape == (2, 3)
    with pytest.raises(ValueError, match="toy_bias=3.0 is an option of the toy_bias head"):
      head_registry.from_config({"head": "linear", "toy_bias": 3.0})
  finally:
    del head_registry.HEADS["toy_bias"]
