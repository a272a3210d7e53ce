"""The discriminative centroids loss of OLTR (Liu et al., "Large-Scale Long-Tailed Recognition in an
Open World", CVPR 2019), which OLTR's stage adds to its classification loss.

The discriminative centroids loss (paper Sec. 3.3, "Loss function") pulls each feature towards
the centroid of its class and pushes it away from the other centroids:

  loss = attract + REPEL_WEIGHT * repel

The caller adds ``LOSS_WEIGHT * loss`` to the cross-entropy. The centroids' gradient is the
centre-loss update of the reference implementation, not the true gradient of ``attract``:
see :func:`disc_centroids_loss`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ltjax import config as config_lib

Array = Any

# Paper / reference-code constants: the config's defaults (``ltjax.config``, where the
# recipes read them without importing JAX) under the names this module has always had.
MARGIN = config_lib.OLTR_MARGIN  # Mean squared distance to the other centroids below which
# repel is active.
REPEL_WEIGHT = config_lib.OLTR_REPEL_WEIGHT  # Weight of the repel term inside the loss.
REPEL_MAX = 1e6  # Upper clip of the repel term (reference: torch.clamp(..., 0.0, 1e6)).
# Weight of the whole centroids loss next to cross-entropy. Applied by the caller
# (total = ce + LOSS_WEIGHT * disc_centroids_loss(...)), not by disc_centroids_loss.
LOSS_WEIGHT = config_lib.OLTR_LOSS_WEIGHT


def _check_inputs(features: Array, labels: Array, centroids: Array) -> None:
  if features.ndim != 2:
    raise ValueError(f"features must be (B, D); got shape {tuple(features.shape)}.")
  if centroids.ndim != 2:
    raise ValueError(f"centroids must be (K, D); got shape {tuple(centroids.shape)}.")
  if labels.ndim != 1:
    raise ValueError(f"labels must be (B,); got shape {tuple(labels.shape)}.")
  (b, d), (k, dc) = features.shape, centroids.shape
  if d != dc:
    raise ValueError(
      f"features {tuple(features.shape)} and centroids {tuple(centroids.shape)} differ in the "
      f"feature dimension ({d} != {dc})."
    )
  if labels.shape[0] != b:
    raise ValueError(
      f"labels {tuple(labels.shape)} must have one entry per row of features "
      f"{tuple(features.shape)}."
    )
  if b == 0 or k == 0:
    raise ValueError(
      f"need at least one sample and one class; got features {tuple(features.shape)} and "
      f"centroids {tuple(centroids.shape)}."
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integers; got dtype {labels.dtype}.")


@jax.custom_vjp
def _attract(features: jax.Array, labels: jax.Array, centroids: jax.Array) -> jax.Array:
  """``sum_i ||x_i - c_{y_i}||^2 / 2 / B``, with the centre-loss update as centroid gradient."""
  diff = features - centroids[labels]
  return jnp.sum(diff * diff) / 2.0 / features.shape[0]


def _attract_fwd(features, labels, centroids):
  diff = features - centroids[labels]
  return jnp.sum(diff * diff) / 2.0 / features.shape[0], (diff, labels, centroids)


def _attract_bwd(residuals, g):
  diff, labels, centroids = residuals
  batch, num_classes = diff.shape[0], centroids.shape[0]
  grad_features = g * diff / batch
  # Centre-loss update; deliberately independent of the cotangent g (as in the reference).
  counts = jax.ops.segment_sum(jnp.ones(labels.shape, diff.dtype), labels, num_segments=num_classes)
  sums = jax.ops.segment_sum(-diff, labels, num_segments=num_classes)  # sum_i (c_k - x_i)
  grad_centroids = sums / (1.0 + counts)[:, None] / batch
  return grad_features, None, grad_centroids.astype(centroids.dtype)


_attract.defvjp(_attract_fwd, _attract_bwd)


def disc_centroids_loss(
  features: Array,
  labels: Array,
  centroids: Array,
  margin: float = MARGIN,
  repel_weight: float = REPEL_WEIGHT,
) -> jax.Array:
  """The discriminative centroids loss of OLTR, as in the reference ``DiscCentroidsLoss``.

  With features ``x_i`` (``i < B``), labels ``y_i`` and centroids ``c_k`` (``k < K``), and
  ``d(x, c) = ||x||^2 - 2 x.c + ||c||^2`` the squared Euclidean distance::

    attract = sum_i ||x_i - c_{y_i}||^2 / 2 / B
    repel   = clip(margin - sum_{i, k != y_i} d(x_i, c_k) / (B K), 0, REPEL_MAX)
    loss    = attract + repel_weight * repel

  The repel mean divides by ``B K`` although only ``B (K - 1)`` pairs are summed (the
  reference zeroes the own-class entries of the ``(B, K)`` distance matrix, then averages).
  Distances are computed from that expansion (one ``(B, K)`` matrix, never ``(B, K, D)``).

  Gradients (as the reference's autograd function):

  * features: the ordinary gradient of both terms, ``(x_i - c_{y_i}) / B`` from attract and
    ``-repel_weight / (B K) * sum_{k != y_i} 2 (x_i - c_k)`` from repel.
  * centroids: the ordinary gradient of ``repel_weight * repel``, i.e.
    ``-repel_weight / (B K) * sum_{i: y_i != k} 2 (c_k - x_i)``, plus, in place of the
    gradient of attract, the centre-loss update::

      g_k = sum_{i: y_i = k} (c_k - x_i) / (1 + n_k) / B,   n_k = #{i: y_i = k}

    (zero for classes absent from the batch). This update IGNORES the incoming cotangent:
    scaling the loss (e.g. by ``LOSS_WEIGHT`` next to cross-entropy) scales the feature
    gradient and the repel part, but not ``g_k``. So the centroids move with the optimiser's
    learning rate times ``g_k``, 1 / LOSS_WEIGHT = 100 times faster than the true gradient of
    the weighted loss would move them; keep this in mind when choosing their learning rate.

  The repel gradient is zero where the clip is active (``margin - mean distance`` below 0 or
  above ``REPEL_MAX``); at the bounds it passes, as ``torch.clamp`` does.

  Only ``jnp`` operations and segment sums: jittable, and works unchanged when features and
  labels are sharded over a mesh axis (XLA inserts the reductions).

  Args:
    features: ``(B, D)`` float features.
    labels: ``(B,)`` integer labels in ``[0, K)``; values outside give unspecified results
      (they cannot be checked under ``jit``).
    centroids: ``(K, D)`` float class centroids.
    margin: repel margin on the mean squared distance to the other centroids.
    repel_weight: weight of the repel term.

  Returns:
    The scalar loss, in the promoted float dtype of the inputs (at least float32).

  Raises:
    ValueError: if the shapes are not ``(B, D)``, ``(B,)``, ``(K, D)`` with ``B, K >= 1``.
    TypeError: if labels are not integers.
  """
  features, labels, centroids = jnp.asarray(features), jnp.asarray(labels), jnp.asarray(centroids)
  _check_inputs(features, labels, centroids)
  dtype = jnp.promote_types(jnp.result_type(features, centroids), jnp.float32)
  features, centroids = features.astype(dtype), centroids.astype(dtype)
  batch, num_classes = features.shape[0], centroids.shape[0]

  attract = _attract(features, labels, centroids)

  # (B, K) squared distances; HIGHEST precision as the expansion cancels (TPU default is bf16).
  cross = jnp.matmul(features, centroids.T, precision=jax.lax.Precision.HIGHEST)
  dist = (
    jnp.sum(features * features, axis=1)[:, None]
    - 2.0 * cross
    + jnp.sum(centroids * centroids, axis=1)[None, :]
  )
  other = labels[:, None] != jnp.arange(num_classes)[None, :]
  raw = margin - jnp.sum(jnp.where(other, dist, 0.0)) / (batch * num_classes)
  repel = jnp.where(raw < 0.0, 0.0, jnp.where(raw > REPEL_MAX, REPEL_MAX, raw))
  return attract + repel_weight * repel
