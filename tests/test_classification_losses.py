"""The comparison set's losses against their papers' formulas, restated in numpy (float64)
on small cases that include a class with a single training image; and PyTorch where the
papers' code reduces with it (weighted cross-entropy)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltjax import config as config_lib
from ltjax import losses
from ltjax.losses import LossInputs

COUNTS = np.array([50.0, 20.0, 5.0, 1.0])  # Class 3 has one training image.
LABELS = np.array([0, 0, 1, 2, 3, 3, 1, 0], np.int32)


def logits(seed=0, scale=2.0, bounded=False):
  z = scale * np.random.default_rng(seed).normal(size=(len(LABELS), len(COUNTS)))
  return np.tanh(z) if bounded else z  # bounded: cosine logits, in [-1, 1].


def inputs(epoch=0.0):
  return LossInputs(jnp.asarray(COUNTS, jnp.float32), jnp.asarray(epoch, jnp.float32))


def np_ce(z, y):
  z = z - z.max(-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -log_p[np.arange(len(y)), y]


def np_cb_weights(counts, beta):
  w = (1 - beta) / (1 - beta**counts)
  return w / w.sum() * len(counts)


def close(got, want):
  np.testing.assert_allclose(float(got), float(want), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.0])
def test_logit_adjusted_is_cross_entropy_on_logits_plus_tau_log_prior(tau):
  z = logits()
  prior = COUNTS / COUNTS.sum()
  want = np_ce(z + np.log(prior**tau + 1e-12), LABELS).mean()
  close(losses.get("logit_adjusted")(tau=tau)(z, LABELS, inputs()), want)
  if tau == 0:
    close(want, np_ce(z, LABELS).mean())  # tau = 0: plain cross-entropy.


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_is_one_minus_p_to_the_gamma_times_cross_entropy(gamma):
  z = logits()
  ce = np_ce(z, LABELS)
  p = np.exp(-ce)
  close(losses.get("focal")(gamma=gamma)(z, LABELS, inputs()), ((1 - p) ** gamma * ce).mean())


@pytest.mark.parametrize("base, gamma", [("softmax", 2.0), ("focal", 1.0)])
@pytest.mark.parametrize("beta", [0.9999, 0.99, 0.0])
def test_class_balanced_weights_each_example_by_the_effective_number(base, gamma, beta):
  z = logits()
  w = np_cb_weights(COUNTS, beta)
  assert np.isclose(w.sum(), len(COUNTS))
  if beta == 0:
    np.testing.assert_allclose(w, 1.0)  # beta = 0: no re-weighting.
  ce = np_ce(z, LABELS)
  per = ce if base == "softmax" else (1 - np.exp(-ce)) ** gamma * ce
  loss = losses.get("class_balanced")(beta=beta, base=base, gamma=gamma)
  close(loss(z, LABELS, inputs()), (w[LABELS] * per).mean())
  np.testing.assert_allclose(losses.effective_number_weights(COUNTS, beta), w, rtol=1e-5)


def np_ldam(z, y, counts, max_m=0.5, s=30.0, weights=None):
  m = 1.0 / np.sqrt(np.sqrt(counts))
  m = m * (max_m / m.max())
  out = z.copy()
  out[np.arange(len(y)), y] -= m[y]
  ce = np_ce(s * out, y)
  if weights is None:
    return ce.mean()
  return (weights[y] * ce).sum() / weights[y].sum()


def test_ldam_margins_follow_n_to_the_minus_quarter():
  m = np.asarray(losses.get("ldam")().margins(COUNTS))
  np.testing.assert_allclose(m[3], 0.5)  # The one-image class has the largest margin.
  np.testing.assert_allclose(m / m[3], (COUNTS / COUNTS[3]) ** -0.25, rtol=1e-6)


@pytest.mark.parametrize("epoch, deferred", [(0.0, False), (159.99, False), (160.0, True)])
def test_ldam_with_deferred_reweighting(epoch, deferred):
  z = logits(bounded=True)
  w = np_cb_weights(COUNTS, 0.9999)
  loss = losses.get("ldam")(drw_epoch=160)
  want = np_ldam(z, LABELS, COUNTS, weights=w if deferred else None)
  close(loss(z, LABELS, inputs(epoch)), want)
  close(losses.get("ldam")()(z, LABELS, inputs(epoch)), np_ldam(z, LABELS, COUNTS))


def test_ldam_drw_reduces_as_pytorchs_weighted_cross_entropy():
  """The paper's code: F.cross_entropy(s * output, target, weight=per_cls_weights)."""
  torch = pytest.importorskip("torch")
  z = logits(bounded=True)
  m = np.asarray(losses.get("ldam")().margins(COUNTS), np.float64)
  out = z.copy()
  out[np.arange(len(LABELS)), LABELS] -= m[LABELS]
  weights = torch.tensor(np_cb_weights(COUNTS, 0.9999))
  want = torch.nn.functional.cross_entropy(
    torch.tensor(30.0 * out), torch.tensor(LABELS, dtype=torch.long), weight=weights
  )
  close(losses.get("ldam")(drw_epoch=0)(z, LABELS, inputs(5.0)), want.item())


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_gradient_is_the_formulas_and_finite_where_p_is_one(gamma):
  focal = losses.get("focal")(gamma=gamma)

  def naive(z):  # The formula as written, differentiated by jax.
    log_p = jax.nn.log_softmax(z)[jnp.arange(len(LABELS)), LABELS]
    return (-((1 - jnp.exp(log_p)) ** gamma) * log_p).mean()

  z = jnp.asarray(logits(), jnp.float32)
  got = jax.grad(lambda z: focal(z, LABELS, inputs()))(z)
  np.testing.assert_allclose(got, jax.grad(naive)(z), rtol=1e-4, atol=1e-7)
  # A confident example (p_y = 1 in float32): the gradient stays finite (the naive form's
  # (1 - p)^gamma has an infinite derivative there for gamma < 1).
  sure = jnp.zeros((1, 4)).at[0, 0].set(200.0)
  g = jax.grad(lambda z: focal(z, jnp.array([0]), inputs()))(sure)
  assert np.all(np.isfinite(g)), g


@pytest.mark.parametrize("name", ["logit_adjusted", "class_balanced", "ldam"])
def test_rebalancing_gradients_match_their_formulas(name):
  """jax.grad of each loss equals that of a second, independent jnp restatement."""
  counts = jnp.asarray(COUNTS, jnp.float32)
  prior = counts / counts.sum()
  w = jnp.asarray(np_cb_weights(COUNTS, 0.9999), jnp.float32)
  onehot = jax.nn.one_hot(LABELS, 4)

  def restated(z):
    if name == "logit_adjusted":
      return -(onehot * jax.nn.log_softmax(z + jnp.log(prior))).sum(-1).mean()
    if name == "class_balanced":
      return -(w[LABELS] * (onehot * jax.nn.log_softmax(z)).sum(-1)).mean()
    m = counts**-0.25
    m = 0.5 * m / m.max()
    ce = -(onehot * jax.nn.log_softmax(30.0 * (z - onehot * m[LABELS][:, None]))).sum(-1)
    return (w[LABELS] * ce).sum() / w[LABELS].sum()

  options = {"ldam": {"drw_epoch": 0}}.get(name, {})
  loss = losses.get(name)(**options)
  z = jnp.asarray(logits(bounded=name == "ldam"), jnp.float32)
  got = jax.grad(lambda z: loss(z, LABELS, inputs(1.0)))(z)
  np.testing.assert_allclose(got, jax.grad(restated)(z), rtol=1e-4, atol=1e-6)


def test_every_loss_comes_from_the_config_with_its_defaults():
  c = config_lib.base_config()
  assert sorted(losses.LOSSES) == [
    "class_balanced",
    "focal",
    "ldam",
    "logit_adjusted",
    "softmax",
  ]
  for name in losses.LOSSES:
    c.loss.name = name
    loss = losses.from_config(c)
    assert loss.name == name
  c.loss.name, c.loss.drw_epoch, c.loss.scale = "ldam", 160, 16.0
  assert losses.from_config(c) == losses.get("ldam")(drw_epoch=160, scale=16.0)
  c.loss.name, c.loss.tau, c.loss.drw_epoch, c.loss.scale = "logit_adjusted", -1.0, None, 30.0
  with pytest.raises(ValueError, match=r"loss 'logit_adjusted': tau must be >= 0.*--config.loss"):
    losses.from_config(c)
  c.loss.name, c.loss.tau, c.loss.base = "class_balanced", 1.0, "sigmoid"
  with pytest.raises(ValueError, match="base must be 'softmax' or 'focal'"):
    losses.from_config(c)


def test_ldam_needs_the_cosine_classifier():
  c = config_lib.base_config()
  c.loss.name = "ldam"
  with pytest.raises(ValueError, match="add --config.model.head=normed_linear"):
    losses.from_config(c).check(c)
  c.model.head = "normed_linear"
  losses.from_config(c).check(c)
