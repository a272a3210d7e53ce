"""Classifier heads.

A head is a linen module called as ``head(features, train)`` on pooled float32 features
``(B, D)``. It returns float32 logits ``(B, num_classes)``, or a ``(logits, extras)`` pair
whose ``extras`` dict ``Classifier`` merges into its ``aux`` output.

Also the classifier re-balancing tools of Decoupling (Kang et al., "Decoupling
Representation and Classifier for Long-Tailed Recognition", ICLR 2020), applied to a
trained representation:

* tau-normalisation: ``tau_normalize``, ``tau_logits`` and the one-matmul validation sweep
  ``tau_sweep_predictions``;
* nearest class mean (NCM): ``class_means`` and ``ncm_logits``;
* learnable weight scaling (LWS): the ``LWSClassifier`` head.

These functions take class weights with one row per class, ``(K, D)``; a flax dense kernel
is ``(D, K)``, so pass ``params["head"]["fc"]["kernel"].T`` (the bias is dropped, as in the
reference evaluation).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
Array = Any


def torch_linear_init(fan_in: int) -> nn.initializers.Initializer:
  """``nn.Linear``-style init: uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``.

  Used for both kernel and bias (PyTorch's default ``reset_parameters`` gives the kernel
  exactly this range via kaiming_uniform with ``a=sqrt(5)``).
  """
  bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

  return init


class LinearClassifier(nn.Module):
  """A single dense layer with bias (parameters under ``"fc"``).

  Attributes:
    num_classes: number of output logits.
    dtype: computation dtype; parameters and returned logits are float32.
  """

  num_classes: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Array, train: bool = False) -> Array:
    del train  # same call signature as heads that behave differently in training
    init = torch_linear_init(features.shape[-1])
    logits = nn.Dense(
      self.num_classes,
      use_bias=True,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      kernel_init=init,
      bias_init=init,
      name="fc",
    )(features)
    return logits.astype(jnp.float32)


def normed_linear_init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32):
  """The LDAM-DRW code's ``NormedLinear`` init: uniform(-1, 1), each class column scaled to
  unit norm (``renorm_(2, 1, 1e-5).mul_(1e5)``)."""
  w = jax.random.uniform(key, shape, jnp.float32, minval=-1.0, maxval=1.0)
  return (w / jnp.linalg.norm(w, axis=0, keepdims=True)).astype(dtype)


class _CosineDense(nn.Module):
  """``normalize(x) @ normalize(kernel, axis=0)``, PyTorch's ``F.normalize`` (eps 1e-12)."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", normed_linear_init, (x.shape[-1], self.features), jnp.float32)
    x = x.astype(jnp.float32)
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    w = kernel / jnp.maximum(jnp.linalg.norm(kernel, axis=0, keepdims=True), 1e-12)
    return jnp.matmul(x.astype(self.dtype), w.astype(self.dtype)).astype(jnp.float32)


class NormedLinearClassifier(nn.Module):
  """The cosine classifier of LDAM (Cao et al., NeurIPS 2019; the code's ``NormedLinear``):
  ``logits_j = <x / ||x||, w_j / ||w_j||>`` in [-1, 1], no bias. The loss scales them
  (``ldam``'s ``scale``). The kernel ``(D, K)`` is ``params["head"]["fc"]["kernel"]`` as
  the linear head's, so tau-normalisation and NCM read it the same way.

  Attributes:
    num_classes: number of output logits.
    dtype: computation dtype; parameters and returned logits are float32.
  """

  num_classes: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Array, train: bool = False) -> Array:
    del train  # same call signature as heads that behave differently in training
    return _CosineDense(self.num_classes, self.dtype, name="fc")(features)


class CosineClassifier(nn.Module):
  """The scaled cosine classifier of LIFT (Shi et al., ICML 2024; shijxcs/LIFT
  ``models/classifiers.py`` ``CosineClassifier``): ``logits_j = scale * <x / ||x||, w_j /
  ||w_j||>``, no bias. Unlike LDAM's ``normed_linear`` head, the head carries its scale, so
  any loss (LIFT: logit-adjusted cross-entropy) sees logits in ``[-scale, scale]``. LIFT's
  init (uniform(-1, 1), each class row renormed to unit length) is ``normed_linear_init``'s;
  a text-initialised head replaces it (``model.head_init``). The kernel ``(D, K)`` is
  ``params["head"]["fc"]["kernel"]`` as the linear head's.

  Attributes:
    num_classes: number of output logits.
    scale: the logit scale (``model.head_scale``; LIFT's configs: 25).
    dtype: computation dtype; parameters and returned logits are float32.
  """

  num_classes: int
  scale: float = 25.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Array, train: bool = False) -> Array:
    del train  # same call signature as heads that behave differently in training
    return self.scale * _CosineDense(self.num_classes, self.dtype, name="fc")(features)


class LWSClassifier(nn.Module):
  """Learnable weight scaling (LWS) head of Decoupling (Kang et al., ICLR 2020, Sec. 4).

  A dense layer with bias followed by one learnable scale per class:
  ``logits_i = f_i * (w_i^T x + b_i)``, i.e. the re-scaled classifier ``w~_i = f_i * w_i``
  (tau-normalisation is the fixed choice ``f_i = 1 / ||w_i||^tau``). As in the reference
  implementation the bias is scaled too. The dense layer is named ``"fc"`` with the same
  parameter names and shapes as ``LinearClassifier``, so a stage-1 linear head's params load
  unchanged; ``"scales"`` ``(num_classes,)`` starts at ones (the head then equals the linear
  one). Training only ``params["head"]["scales"]`` (all else frozen, class-balanced sampling)
  is the caller's job.

  Attributes:
    num_classes: number of output logits.
    dtype: computation dtype of the dense layer; parameters and returned logits are float32.
  """

  num_classes: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Array, train: bool = False) -> Array:
    del train  # same call signature as heads that behave differently in training
    init = torch_linear_init(features.shape[-1])
    logits = nn.Dense(
      self.num_classes,
      use_bias=True,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      kernel_init=init,
      bias_init=init,
      name="fc",
    )(features)
    scales = self.param("scales", nn.initializers.ones, (self.num_classes,), jnp.float32)
    return logits.astype(jnp.float32) * scales


class CosineLWSClassifier(nn.Module):
  """LWS on a cosine classifier (``model.head=lws_cosine``): LIFT's head (``CosineClassifier``,
  a LIFT run's) with one learnable scale per class, ``logits_j = f_j * scale * cos(x, w_j)``.
  The cosine is what Decoupling's LWS re-scales when the stage-1 classifier has no bias and
  normalised rows; ``"fc"`` loads a cosine head's kernel unchanged and ``"scales"`` start at
  ones (the head then equals the cosine one).

  Attributes:
    num_classes: number of output logits.
    scale: the cosine head's logit scale (``model.head_scale``).
    dtype: computation dtype; parameters and returned logits are float32.
  """

  num_classes: int
  scale: float = 25.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Array, train: bool = False) -> Array:
    del train
    logits = self.scale * _CosineDense(self.num_classes, self.dtype, name="fc")(features)
    scales = self.param("scales", nn.initializers.ones, (self.num_classes,), jnp.float32)
    return logits.astype(jnp.float32) * scales


# --- Decoupling: tau-normalisation ----------------------------------------------------------

# Eval-time matmuls use full float32 precision, so the one-matmul sweep and the per-tau
# computation agree on any backend (TPU's default would be a single bfloat16 pass).
_PRECISION = jax.lax.Precision.HIGHEST


def _float_matrix(x: Array, name: str) -> jax.Array:
  x = jnp.asarray(x)
  if x.ndim != 2:
    raise ValueError(
      f"{name} must be 2-D, got shape {tuple(x.shape)}; pass one row per "
      f"{'class' if name in ('weights', 'means') else 'example'}."
    )
  return x.astype(jnp.float32)


def _check_same_dim(a: jax.Array, a_name: str, b: jax.Array, b_name: str) -> None:
  if a.shape[-1] != b.shape[-1]:
    raise ValueError(
      f"{a_name} has feature dimension {a.shape[-1]} but {b_name} has {b.shape[-1]}; both "
      "must be (..., D) (a flax dense kernel is (D, K): pass kernel.T as the weights)."
    )


def _check_scalar(x: Any, name: str) -> jax.Array:
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 0:
    raise ValueError(
      f"{name} must be a scalar, got shape {tuple(x.shape)}; sweep several with "
      "tau_sweep_predictions."
    )
  return x


def _safe_row_norms(weights: jax.Array) -> jax.Array:
  """``||w_i||``, with 1 in place of 0 so zero rows stay zero under any power."""
  norms = jnp.linalg.norm(weights, axis=-1)
  return jnp.where(norms > 0, norms, 1.0)


def _tau_scales(weights: jax.Array, tau: jax.Array) -> jax.Array:
  """Per-class factors ``||w_i||^-tau``, shape ``(K,)``."""
  return jnp.power(_safe_row_norms(weights), -tau)


@jax.jit
def _tau_normalize(weights: jax.Array, tau: jax.Array) -> jax.Array:
  return weights * _tau_scales(weights, tau)[:, None]


@jax.jit
def _tau_logits(features: jax.Array, weights: jax.Array, tau: jax.Array) -> jax.Array:
  logits = jnp.matmul(features, weights.T, precision=_PRECISION)
  return logits * _tau_scales(weights, tau)[None, :]


@functools.partial(jax.jit, static_argnames=("taus_per_step",))
def _tau_sweep_predictions(
  features: jax.Array, weights: jax.Array, taus: jax.Array, taus_per_step: int
) -> jax.Array:
  logits = jnp.matmul(features, weights.T, precision=_PRECISION)  # the only matmul
  norms = _safe_row_norms(weights)

  def predict(tau: jax.Array) -> jax.Array:
    # Same factors as _tau_scales; XLA fuses the rescale into the argmax reduction.
    return jnp.argmax(logits * jnp.power(norms, -tau)[None, :], axis=-1).astype(jnp.int32)

  return jax.lax.map(predict, taus, batch_size=taus_per_step if taus_per_step > 1 else None)


def tau_normalize(weights: Array, tau: Any) -> jax.Array:
  """tau-normalised classifier weights (Decoupling, Sec. 4): ``w~_i = w_i / ||w_i||^tau``.

  ``tau = 0`` leaves the weights unchanged and ``tau = 1`` gives unit-norm rows; values in
  between shrink the large norms of the head classes more than the tail ones. The bias is not
  part of the weights: like the reference evaluation, the caller drops it. A zero row (norm
  0) is left as zeros rather than divided by zero.

  Args:
    weights: ``(K, D)`` class weights, one row per class (a flax kernel is ``(D, K)``: pass
      ``kernel.T``).
    tau: scalar exponent (float or 0-d array).

  Returns:
    ``(K, D)`` float32 normalised weights.

  Raises:
    ValueError: if ``weights`` is not 2-D or ``tau`` is not a scalar.
  """
  w = _float_matrix(weights, "weights")
  return _tau_normalize(w, _check_scalar(tau, "tau"))


def tau_logits(features: Array, weights: Array, tau: Any) -> jax.Array:
  """Logits of the tau-normalised classifier: ``z_ij = x_i^T w_j / ||w_j||^tau``.

  Equal to ``features @ tau_normalize(weights, tau).T``, computed as the column rescale
  ``(X W^T) * ||w||^-tau`` (zero-norm rows give zero columns).

  Args:
    features: ``(N, D)`` features.
    weights: ``(K, D)`` class weights (``kernel.T`` of a flax dense layer; no bias).
    tau: scalar exponent.

  Returns:
    ``(N, K)`` float32 logits.

  Raises:
    ValueError: for non-2-D inputs, mismatched ``D`` or a non-scalar ``tau``.
  """
  x = _float_matrix(features, "features")
  w = _float_matrix(weights, "weights")
  _check_same_dim(x, "features", w, "weights")
  return _tau_logits(x, w, _check_scalar(tau, "tau"))


def tau_sweep_predictions(
  features: Array, weights: Array, taus: Array, *, taus_per_step: int = 1
) -> jax.Array:
  """Argmax predictions of the tau-normalised classifier for every tau of a grid.

  Decoupling selects tau on the validation split. Since ``x^T (w_j / ||w_j||^tau) =
  (x^T w_j) * ||w_j||^-tau``, the whole sweep costs one matmul: ``logits(tau) = (X W^T) *
  ||w||^-tau`` (a column rescale), followed per tau by an argmax. The taus are processed
  ``taus_per_step`` at a time (``jax.lax.map``), so memory stays ``O(N K)`` rather than
  ``O(T N K)``. Runs jitted (one compilation per shape and ``taus_per_step``).

  Args:
    features: ``(N, D)`` validation features.
    weights: ``(K, D)`` class weights (``kernel.T`` of a flax dense layer; no bias).
    taus: ``(T,)`` grid of exponents, e.g. ``np.linspace(0, 2, 21)``.
    taus_per_step: taus evaluated together (vectorised) per step; 1 is sequential.

  Returns:
    ``(T, N)`` int32 predicted classes; row ``t`` is ``argmax(tau_logits(features, weights,
    taus[t]), -1)``.

  Raises:
    ValueError: for non-2-D features/weights, mismatched ``D``, ``taus`` not a non-empty 1-D
      array, or ``taus_per_step`` < 1.
  """
  x = _float_matrix(features, "features")
  w = _float_matrix(weights, "weights")
  _check_same_dim(x, "features", w, "weights")
  taus = jnp.asarray(taus, jnp.float32)
  if taus.ndim != 1 or taus.shape[0] == 0:
    raise ValueError(
      f"taus must be a non-empty 1-D array, got shape {tuple(taus.shape)}; use tau_logits "
      "for a single tau."
    )
  if not isinstance(taus_per_step, int) or taus_per_step < 1:
    raise ValueError(f"taus_per_step must be a positive int, got {taus_per_step!r}; use 1.")
  return _tau_sweep_predictions(x, w, taus, taus_per_step)


# --- Decoupling: nearest class mean (NCM) ---------------------------------------------------

# Feature transforms: raw, L2-normalised, centred (by the mean training feature) and then
# L2-normalised.
NCM_FEATURE_TYPES = ("un", "l2n", "cl2n")
NCM_DISTANCES = ("l2", "cos")


def _check_name(value: Any, valid: tuple[str, ...], what: str) -> None:
  if value not in valid:
    raise ValueError(f"Unknown {what} {value!r}; valid {what}s: {list(valid)}.")


def _l2_normalize(x: jax.Array) -> jax.Array:
  norms = jnp.linalg.norm(x, axis=-1, keepdims=True)
  return x / jnp.where(norms > 0, norms, 1.0)


def _ncm_transform(x: jax.Array, train_mean: jax.Array, feat_type: str) -> jax.Array:
  if feat_type == "cl2n":
    x = x - train_mean
  if feat_type in ("l2n", "cl2n"):
    x = _l2_normalize(x)
  return x


@functools.partial(jax.jit, static_argnames=("num_classes", "feat_type"))
def _class_means(
  features: jax.Array, labels: jax.Array, counts: jax.Array, num_classes: int, feat_type: str
) -> tuple[jax.Array, jax.Array]:
  train_mean = jnp.mean(features, axis=0)
  feats = _ncm_transform(features, train_mean, feat_type)
  sums = jax.ops.segment_sum(feats, labels, num_segments=num_classes)
  return sums / counts[:, None], train_mean


@functools.partial(jax.jit, static_argnames=("feat_type", "distance"))
def _ncm_logits(
  queries: jax.Array, means: jax.Array, train_mean: jax.Array, feat_type: str, distance: str
) -> jax.Array:
  q = _ncm_transform(queries, train_mean, feat_type)
  qm = jnp.matmul(q, means.T, precision=_PRECISION)
  if distance == "cos":
    return qm / q.shape[-1]
  qq = jnp.sum(q * q, axis=-1, keepdims=True)
  mm = jnp.sum(means * means, axis=-1)
  return -(qq - 2.0 * qm + mm[None, :])


def class_means(
  features: Array, labels: Array, num_classes: int, feat_type: str
) -> tuple[jax.Array, jax.Array]:
  """Class means for the NCM classifier (Decoupling, Sec. 4): ``m_k = mean_{y_i=k} phi(x_i)``.

  ``phi`` is the feature transform: ``un`` ``phi(x) = x``; ``l2n`` ``phi(x) = x / ||x||``;
  ``cl2n`` ``phi(x) = (x - mu) / ||x - mu||`` with ``mu`` the mean training feature. Use the
  plain (un-sampled) training features. Zero-norm features stay zero under normalisation.
  Unlike the reference, which averages over ``np.unique(labels)`` and so silently shifts the
  class ids when a class is missing, an empty class is an error.

  Args:
    features: ``(N, D)`` training features.
    labels: ``(N,)`` integer class ids in ``[0, num_classes)``.
    num_classes: ``K``.
    feat_type: one of ``NCM_FEATURE_TYPES``.

  Returns:
    ``(means, train_mean)``: ``(K, D)`` float32 class means of the transformed features and
    the ``(D,)`` float32 mean of the raw training features (``mu``; ``ncm_logits`` needs it
    for ``cl2n``).

  Raises:
    ValueError: for an unknown ``feat_type`` (listing the valid ones), bad shapes, labels out
      of range, or a class without any training sample (naming the class ids).
  """
  _check_name(feat_type, NCM_FEATURE_TYPES, "feat_type")
  x = _float_matrix(features, "features")
  labels_np = np.asarray(labels)
  if labels_np.shape != (x.shape[0],) or not np.issubdtype(labels_np.dtype, np.integer):
    raise ValueError(
      f"labels must be an integer array of shape ({x.shape[0]},) matching features, got "
      f"{labels_np.dtype} of shape {labels_np.shape}."
    )
  if not isinstance(num_classes, int | np.integer) or num_classes < 1:
    raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
  num_classes = int(num_classes)
  if labels_np.size and (labels_np.min() < 0 or labels_np.max() >= num_classes):
    raise ValueError(
      f"labels must lie in [0, {num_classes}), got range [{labels_np.min()}, "
      f"{labels_np.max()}]; check num_classes."
    )
  counts = np.bincount(labels_np, minlength=num_classes)
  empty = np.flatnonzero(counts == 0)
  if empty.size:
    shown = ", ".join(str(k) for k in empty[:20]) + (", ..." if empty.size > 20 else "")
    raise ValueError(
      f"{empty.size} class(es) have no training sample, class id(s): [{shown}]; NCM needs "
      "at least one training feature per class (pass the full, un-sampled training set)."
    )
  return _class_means(
    x, jnp.asarray(labels_np, jnp.int32), jnp.asarray(counts, jnp.float32), num_classes, feat_type
  )


def ncm_logits(
  queries: Array, means: Array, train_mean: Array, feat_type: str, distance: str
) -> jax.Array:
  """Nearest-class-mean logits (Decoupling, Sec. 4), as the reference computes them.

  The queries get the same transform ``phi`` as in ``class_means`` (for ``cl2n``: centred by
  ``train_mean``, then L2-normalised); the stored means are used as given (the reference
  centres only the queries). With ``q = phi(x)``:

  * ``l2``: ``z_k = -||q - m_k||^2``, computed as ``-(||q||^2 - 2 q^T m_k + ||m_k||^2)``
    (one matmul, no ``N x K x D`` broadcast);
  * ``cos``: ``z_k = q^T m_k / D``. The means are not re-normalised, so this is a cosine
    only up to each mean's norm ``||m_k||`` (and the constant ``1 / D``), as in the
    reference.

  Args:
    queries: ``(N, D)`` features to classify.
    means: ``(K, D)`` class means from ``class_means`` with the same ``feat_type``.
    train_mean: ``(D,)`` mean training feature from ``class_means`` (unused for ``un`` and
      ``l2n``).
    feat_type: one of ``NCM_FEATURE_TYPES``.
    distance: one of ``NCM_DISTANCES``.

  Returns:
    ``(N, K)`` float32 logits; the prediction is their argmax.

  Raises:
    ValueError: for an unknown ``feat_type`` or ``distance`` (listing the valid names) or
      mismatched shapes.
  """
  _check_name(feat_type, NCM_FEATURE_TYPES, "feat_type")
  _check_name(distance, NCM_DISTANCES, "distance")
  q = _float_matrix(queries, "queries")
  m = _float_matrix(means, "means")
  _check_same_dim(q, "queries", m, "means")
  mu = jnp.asarray(train_mean, jnp.float32)
  if mu.shape != (q.shape[-1],):
    raise ValueError(
      f"train_mean must have shape ({q.shape[-1]},), got {tuple(mu.shape)}; pass the second "
      "output of class_means."
    )
  return _ncm_logits(q, m, mu, feat_type, distance)
