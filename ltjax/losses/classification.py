"""Classification losses: the registry the stages take their loss from (``config.loss``).

A loss is a registered class (:data:`LOSSES`) whose dataclass fields are its options, read
from ``config.loss`` by :func:`from_config`; called on a batch it is a pure function of the
logits, the integer labels and the :class:`LossInputs` the train step hands every loss (the
training class counts, for re-balancing losses; the fractional epoch, for deferred
schedules). A new loss is one class here, each option with its meaning in the docstring's
``Attributes:`` section (``--help`` shows it: ``ltjax.config.declared``) and its default in
``config.loss``; the stages and the loop never ask which loss it is. OLTR's discriminative
centroids term is not one of them: OLTR's stage adds it (``ltjax.losses.centroids``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from ltjax.config import components

Array = Any


@dataclasses.dataclass(frozen=True)
class LossInputs:
  """What the train step hands every classification loss besides logits and labels.

  Attributes:
    class_counts: ``(K,)`` float32 training images per class (the un-sampled training set).
    epoch: the fractional epoch of the step, ``step / steps_per_epoch`` (a traced scalar).
  """

  class_counts: Array
  epoch: Array


class ClassificationLoss:
  """Base of the registered losses: ``loss(logits, labels, inputs) -> scalar``, the mean
  over the batch.

  ``heads``: the model heads the loss is defined on (None: any); ``check`` refuses others
  before any work."""

  name: ClassVar[str]
  heads: ClassVar[tuple[str, ...] | None] = None

  def __call__(self, logits: jax.Array, labels: jax.Array, inputs: LossInputs) -> jax.Array:
    raise NotImplementedError

  @property
  def logit_scale(self) -> float:
    """The factor the loss applies to the model's logits before its softmax (1: none): the
    evaluation scores the same logits, so that its probabilities (calibration, NLL,
    open-set thresholds) are the ones the loss trained (``ltjax.train.steps``)."""
    return 1.0

  def check(self, config) -> None:
    """Raises ValueError when ``config`` cannot train with this loss (its head)."""
    if self.heads is not None and config.model.head not in self.heads:
      raise ValueError(
        f"loss {self.name!r} is defined on a {' or '.join(self.heads)} head, got "
        f"model.head={config.model.head!r}: add --config.model.head={self.heads[0]}."
      )


LOSSES: components.Registry = components.Registry("loss", "loss.name")
#: Class decorator: adds a loss to ``LOSSES`` under ``cls.name``.
register = LOSSES.register
#: The loss class registered as ``name``; a ValueError listing the valid names otherwise.
get = LOSSES.lookup


def from_config(config) -> ClassificationLoss:
  """The loss of ``config.loss.name``, each option (dataclass field) from ``config.loss``.

  Raises:
    ValueError: an unknown name, an option out of range (naming its config field), or
      another loss's option set away from its default (``--config.loss.gamma=3`` with the
      softmax loss would do nothing).
  """
  cls = get(config.loss.name)
  components.refuse_foreign_option(LOSSES, cls.name, config.loss)
  options = {f.name: config.loss[f.name] for f in dataclasses.fields(cls) if f.name in config.loss}
  try:
    return cls(**options)
  except components.UnreadOption as e:  # An option the loss's other options leave unread.
    raise components.UnreadOption(f"loss {cls.name!r}: {e}", f"loss.{e.key}", e.default) from None
  except ValueError as e:
    fields = ", ".join(f"--config.loss.{f}" for f in options)
    raise ValueError(f"loss {cls.name!r}: {e} ({fields or 'no options'})") from None


@register
@dataclasses.dataclass(frozen=True)
class Softmax(ClassificationLoss):
  """Softmax cross-entropy, the papers' loss (Decoupling, OLTR): ``-log softmax(z)_y``."""

  name = "softmax"

  def __call__(self, logits, labels, inputs):
    del inputs
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# --- re-balancing losses of the comparison set -------------------------------------------


def _cross_entropy(logits, labels) -> jax.Array:
  """Per-example ``-log softmax(z)_y`` in float32, ``(B,)``."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def log_prior(class_counts, tau: float = 1.0) -> jax.Array:
  """``log(pi^tau + 1e-12)``, pi the training class prior ``n_j / N``: the adjustment of
  logit-adjusted training and post-hoc adjustment (the official code's form; the 1e-12
  keeps a class without training images finite)."""
  counts = jnp.asarray(class_counts, jnp.float32)
  prior = counts / jnp.sum(counts)
  return jnp.log(prior**tau + 1e-12)


def effective_number_weights(class_counts, beta: float) -> jax.Array:
  """Class-balanced weights by the effective number of samples (Cui et al., CVPR 2019,
  Eq. 3 and Sec. 4): ``w_j = (1 - beta) / (1 - beta^n_j)``, normalised to sum to K.

  beta = 0 gives uniform weights; beta -> 1, inverse class frequency. A class with no
  training images (n_j = 0) would get an infinite weight: it gets 0 (no example of it is
  ever trained on)."""
  counts = jnp.asarray(class_counts, jnp.float32)
  beta = float(beta)
  if beta == 0.0:
    return jnp.where(counts > 0, 1.0, 0.0) * counts.shape[0] / jnp.sum(counts > 0)
  # 1 - beta^n as -expm1(n log(beta)), log(beta) in float64: beta = 0.9999 is not exact in
  # float32, and 1 - beta^n in float32 would lose ~1e-4 of its value.
  effective = -jnp.expm1(counts * jnp.float32(math.log(beta)))
  weights = jnp.where(counts > 0, (1.0 - beta) / jnp.where(counts > 0, effective, 1.0), 0.0)
  return weights / jnp.sum(weights) * counts.shape[0]


def _focal_factor(ce: jax.Array, gamma: float) -> jax.Array:
  """``(1 - p_y)^gamma`` from the per-example cross-entropy (``p_y = exp(-ce)``), with a
  finite gradient where ``p_y = 1`` for any gamma >= 0."""
  if gamma == 0:
    return jnp.ones_like(ce)
  one_minus_p = -jnp.expm1(-ce)  # 1 - exp(-ce), accurate for small ce.
  return jnp.power(jnp.maximum(one_minus_p, jnp.finfo(jnp.float32).tiny), gamma)


def _check_range(name: str, value: float, low: float, high: float | None = None) -> None:
  if not (value >= low and (high is None or value <= high)):
    bound = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ValueError(f"{name} must be {bound}, got {value!r}")


@register
@dataclasses.dataclass(frozen=True)
class LogitAdjusted(ClassificationLoss):
  """Logit-adjusted cross-entropy (Menon et al., "Long-tail learning via logit adjustment",
  ICLR 2021, Eq. 10): ``-log softmax(z + tau log pi)_y``, pi the training class prior.

  ``tau = 1`` is Balanced Softmax (Ren et al., NeurIPS 2020, Eq. 4), the paper's default.
  At test time the model's own logits are used (the adjustment is training-only).

  Attributes:
    tau: the adjustment's strength, ``z + tau log(prior)`` (1 = Balanced Softmax).
  """

  name = "logit_adjusted"
  tau: float = 1.0

  def __post_init__(self):
    _check_range("tau", self.tau, 0.0)

  def __call__(self, logits, labels, inputs):
    adjusted = logits.astype(jnp.float32) + log_prior(inputs.class_counts, self.tau)
    return _cross_entropy(adjusted, labels).mean()


@register
@dataclasses.dataclass(frozen=True)
class Focal(ClassificationLoss):
  """Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, Eq. 4) in
  its multi-class softmax form, as the long-tail literature uses it (the LDAM-DRW code's
  ``FocalLoss``): ``(1 - p_y)^gamma * -log p_y``, ``p = softmax(z)``; gamma = 0 is
  cross-entropy. Lin et al.'s default gamma = 2.

  Attributes:
    gamma: the focusing exponent of ``(1 - p_y)^gamma`` (0 = cross-entropy).
  """

  name = "focal"
  gamma: float = 2.0

  def __post_init__(self):
    _check_range("gamma", self.gamma, 0.0)

  def __call__(self, logits, labels, inputs):
    del inputs
    ce = _cross_entropy(logits, labels)
    return (_focal_factor(ce, self.gamma) * ce).mean()


@register
@dataclasses.dataclass(frozen=True)
class ClassBalanced(ClassificationLoss):
  """Class-balanced loss (Cui et al., "Class-Balanced Loss Based on Effective Number of
  Samples", CVPR 2019, Eq. 5-7): each example weighted by its class's
  ``effective_number_weights`` (beta; 0.9999 is the paper's CIFAR-LT choice), over softmax
  cross-entropy (``base='softmax'``) or the focal loss (``base='focal'``, ``gamma``; the
  softmax form of ``focal``, where the paper's focal variant is sigmoid-based). The mean
  over the batch of ``w_y * loss``, as the paper's code reduces it.

  Attributes:
    beta: of the effective-number weights ``(1 - beta) / (1 - beta^n_j)`` (0 = uniform,
      towards 1 = inverse class frequency).
    base: the loss weighted, 'softmax' (cross-entropy) or 'focal'.
    gamma: with ``base='focal'``, the focusing exponent of ``(1 - p_y)^gamma``.
  """

  name = "class_balanced"
  beta: float = 0.9999
  base: str = "softmax"
  gamma: float = 2.0

  def __post_init__(self):
    _check_range("beta", self.beta, 0.0, 1.0 - 1e-12)
    _check_range("gamma", self.gamma, 0.0)
    if self.base not in ("softmax", "focal"):
      raise ValueError(f"base must be 'softmax' or 'focal', got {self.base!r}")
    if self.base == "softmax" and self.gamma != ClassBalanced.gamma:
      raise components.UnreadOption(
        f"gamma={self.gamma} is read with base='focal' only (base='softmax' has no focusing "
        f"term): set base='focal', or leave gamma {ClassBalanced.gamma}",
        "gamma",
        ClassBalanced.gamma,
      )

  def __call__(self, logits, labels, inputs):
    ce = _cross_entropy(logits, labels)
    per_example = ce if self.base == "softmax" else _focal_factor(ce, self.gamma) * ce
    weights = effective_number_weights(inputs.class_counts, self.beta)[labels]
    return (weights * per_example).mean()


@register
@dataclasses.dataclass(frozen=True)
class LDAM(ClassificationLoss):
  """Label-distribution-aware margin loss with deferred re-weighting (Cao et al.,
  "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss", NeurIPS 2019,
  Eq. 13 and Alg. 1).

  On a cosine classifier (``model.head='normed_linear'``: logits in [-1, 1]), the true
  class's logit is lowered by its margin ``m_j = C / n_j^(1/4)``, C such that the largest
  margin is ``max_margin`` (0.5), and the logits are scaled by ``scale`` (s = 30) before
  cross-entropy. Deferred re-weighting (DRW): from epoch ``drw_epoch`` on (the paper's
  160 of 200; None = never), each example is weighted by ``effective_number_weights``
  with ``beta`` (0.9999) and the loss is ``sum(w_y * ce) / sum(w_y)``, PyTorch's weighted
  cross-entropy as the paper's code uses it. The epoch is the step's (0-based) epoch.

  Attributes:
    max_margin: the largest class margin (the rarest class's).
    scale: s, the logit scale (evaluation scores the scaled logits too).
    drw_epoch: deferred re-weighting from this epoch on (None: never).
    beta: the DRW effective-number weights' beta.
  """

  name = "ldam"
  heads = ("normed_linear",)
  max_margin: float = 0.5
  scale: float = 30.0
  drw_epoch: int | None = None
  beta: float = 0.9999

  def __post_init__(self):
    if not self.max_margin > 0:
      raise ValueError(f"max_margin must be > 0, got {self.max_margin!r}")
    if not self.scale > 0:
      raise ValueError(f"scale must be > 0, got {self.scale!r}")
    if self.drw_epoch is not None and self.drw_epoch < 0:
      raise ValueError(f"drw_epoch must be >= 0 or None, got {self.drw_epoch!r}")
    _check_range("beta", self.beta, 0.0, 1.0 - 1e-12)

  @property
  def logit_scale(self) -> float:
    """s: the cosine logits are scaled by it in the loss, and so in evaluation (without the
    margin, which needs the label: the code's test-time logits times s)."""
    return float(self.scale)

  def margins(self, class_counts) -> jax.Array:
    """``(K,)`` margins ``m_j``, proportional to ``n_j^(-1/4)``, the largest ``max_margin``
    (a class without training images gets the largest)."""
    counts = jnp.maximum(jnp.asarray(class_counts, jnp.float32), 1.0)
    m = 1.0 / jnp.sqrt(jnp.sqrt(counts))
    return m * (self.max_margin / jnp.max(m))

  def __call__(self, logits, labels, inputs):
    logits = logits.astype(jnp.float32)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    margin = self.margins(inputs.class_counts)[labels]
    ce = _cross_entropy(self.scale * (logits - onehot * margin[:, None]), labels)
    if self.drw_epoch is None:
      return ce.mean()
    weights = effective_number_weights(inputs.class_counts, self.beta)[labels]
    deferred = jnp.floor(inputs.epoch) >= self.drw_epoch
    weights = jnp.where(deferred, weights, jnp.ones_like(weights))
    return jnp.sum(weights * ce) / jnp.sum(weights)
