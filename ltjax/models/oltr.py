"""OLTR model modules (Liu et al., "Large-Scale Long-Tailed Recognition in an Open World",
CVPR 2019, Sec. 3).

* ``ModulatedAttention``: self-attention modulated by a spatial attention map, on the
  backbone's last feature map (Sec. 3.2, Eq. 3);
* ``OLTRNeck``: optional modulated attention, global average pooling and the optional extra
  dense layer of the reference (``use_fc``); it replaces the backbone's own pooling in
  ``ltjax.models.Classifier``;
* ``CosineNormClassifier``: the cosine classifier with a norm-squashed input (Sec. 3,
  "Cosine Classifier", Eqs. 4-5, in the reference's variant);
* ``MetaEmbeddingHead``: the dynamic meta-embedding (Sec. 3.1, Eqs. 1-2) followed by the
  cosine classifier; called as ``head(x, train, centroids=...)`` with the class centroids
  (the visual memory), which OLTR's stage keeps outside the parameters (``TrainState.extra``).

Parameters are float32; ``dtype`` is the computation dtype of the dense / conv layers.
Softmaxes, norms, distances and the returned features and logits are float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltjax import config as config_lib
from ltjax.models.heads import torch_linear_init

Dtype = Any
Array = Any

# Dynamic meta-embedding (Sec. 3.1): the reference scales the meta-embedding by
# ``REACHABILITY_SCALE / gamma`` with gamma the distance to the nearest centroid.
REACHABILITY_SCALE = 10.0
# Cosine classifier (Sec. 3, Eqs. 4-5): logits are ``COSINE_SCALE`` times a cosine.
COSINE_SCALE = 16.0
# Smallest nearest-centroid distance used in the reachability (a feature sitting exactly on
# a centroid would divide by zero). The squared distance is floored at its square before the
# square root, which also keeps the gradient finite there.
MIN_CENTROID_DISTANCE = 1e-6
# Non-local block (Wang et al., "Non-local Neural Networks", CVPR 2018, Sec. 3.3): theta, phi
# and g embed the C input channels into C // ATTENTION_REDUCTION channels.
ATTENTION_REDUCTION = 2
# Width of the reference's optional dense layer after pooling (``use_fc``: 512 units).
REFERENCE_FC_ADD = config_lib.OLTR_FC_ADD


def _kaiming_normal() -> nn.initializers.Initializer:
  """PyTorch ``kaiming_normal_`` (fan-in, ReLU gain): normal with std ``sqrt(2 / fan_in)``."""
  return nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _safe_norm(x: jax.Array) -> jax.Array:
  """``||x||`` over the last axis (keepdims), with a zero (not NaN) gradient at ``x = 0``."""
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


class ModulatedAttention(nn.Module):
  """Modulated attention (Sec. 3.2, Eq. 3): ``f_att = f + MA(f) * SA(f)``.

  On a feature map ``x`` ``(B, H, W, C)``:

  * ``SA(x)``: self-attention, the embedded-Gaussian non-local block (Wang et al., CVPR 2018,
    Eqs. 1-3): 1x1 convs ``theta``, ``phi``, ``g`` (with bias) to ``C' = C //
    ATTENTION_REDUCTION`` channels; ``f = softmax_j(theta(x)_i . phi(x)_j)`` over the ``HW``
    positions ``(B, HW, HW)``; ``y = f @ g(x)``; a 1x1 conv ``W`` back to ``C`` channels, no
    bias, zero-initialised: ``mask = W(y)``.
  * ``MA(x)``: spatial attention, a dense layer ``spatial`` from the flattened ``H*W*C`` map
    to ``H*W`` logits, softmax over positions, shape ``(B, H, W, 1)`` (one weight per
    position, shared by the channels).
  * output ``spatial_att * mask + x``.

  Since ``W`` starts at zero, the layer is exactly the identity at initialisation (as the
  non-local block's residual form intends). The reference hard-codes a 7x7 map; here ``H``
  and ``W`` come from the input at init (the ``spatial`` layer's input width is ``H*W*C``,
  so the layer is then tied to that map size). The flattening is in NHWC order, unlike the
  reference's NCHW one (matters only when porting weights).

  Init: ``theta``, ``phi``, ``g`` kernels ``kaiming_normal`` with zero biases, as the
  reference layer's ``init_weights``; ``spatial`` PyTorch ``nn.Linear`` style. (The
  reference backbone's init loop later re-draws all its conv kernels, including this layer's
  and the zero ``W``, from ``normal(0, sqrt(2 / fan_out))``; we keep the zero ``W`` and so
  the identity at start.)

  The spatial attention map ``(B, H, W, 1)`` float32 is sown as ``("intermediates",
  "attention_map")``: ``apply(..., mutable=["intermediates"])`` returns it.

  Attributes:
    reduction: channel reduction of the non-local embeddings (paper: 2).
    dtype: computation dtype of the convs and the dense layer; parameters are float32.
  """

  reduction: int = ATTENTION_REDUCTION
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> jax.Array:
    """Applies the layer.

    Args:
      x: ``(B, H, W, C)`` feature map.

    Returns:
      ``(B, H, W, C)`` attended feature map in ``dtype``.

    Raises:
      ValueError: if ``x`` is not 4-D or has fewer channels than ``reduction``.
    """
    if x.ndim != 4:
      raise ValueError(
        f"ModulatedAttention expects a (B, H, W, C) feature map, got shape {tuple(x.shape)}; "
        "pass the backbone's feature_map, not the pooled features."
      )
    b, h, w, c = x.shape
    inter = c // self.reduction
    if self.reduction < 1 or inter < 1:
      raise ValueError(
        f"ModulatedAttention needs channels >= reduction >= 1, got C={c} and "
        f"reduction={self.reduction}; use reduction in [1, {c}]."
      )
    x = jnp.asarray(x, self.dtype)

    def conv1x1(features: int, name: str) -> nn.Conv:
      return nn.Conv(
        features,
        (1, 1),
        use_bias=True,
        dtype=self.dtype,
        param_dtype=jnp.float32,
        kernel_init=_kaiming_normal(),
        bias_init=nn.initializers.zeros,
        name=name,
      )

    # Self-attention SA(x): the embedded-Gaussian non-local operation (Wang et al., Eq. 3).
    theta = conv1x1(inter, "theta")(x).reshape(b, h * w, inter)
    phi = conv1x1(inter, "phi")(x).reshape(b, h * w, inter)
    g = conv1x1(inter, "g")(x).reshape(b, h * w, inter)
    affinity = jnp.einsum("bic,bjc->bij", theta, phi).astype(jnp.float32)
    f = jax.nn.softmax(affinity, axis=-1)  # (B, HW, HW), normalised over positions j.
    y = jnp.einsum("bij,bjc->bic", f.astype(self.dtype), g).reshape(b, h, w, inter)
    mask = nn.Conv(
      c,
      (1, 1),
      use_bias=False,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      kernel_init=nn.initializers.zeros,
      name="W",
    )(y)

    # Spatial attention MA(x): one softmax weight per position.
    spatial_logits = nn.Dense(
      h * w,
      use_bias=True,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      kernel_init=torch_linear_init(h * w * c),
      bias_init=torch_linear_init(h * w * c),
      name="spatial",
    )(x.reshape(b, h * w * c))
    spatial_att = jax.nn.softmax(spatial_logits.astype(jnp.float32), axis=-1).reshape(b, h, w, 1)
    self.sow("intermediates", "attention_map", spatial_att)

    # Eq. 3. With W = 0, mask is exactly 0 and the output exactly x.
    return (spatial_att * mask + x).astype(self.dtype)


class OLTRNeck(nn.Module):
  """The OLTR feature path after the backbone: attention, pooling, optional dense layer.

  ``feature_map -> [ModulatedAttention ("attention")] -> global average pool -> [dense
  ("fc_add", fc_add units) + ReLU]``, the reference ``ResNet`` forward with
  ``use_modulatedatt`` and ``use_fc`` (Sec. 3.2 applies the attention to the backbone's last
  feature map). The direct feature ``v_direct`` of Sec. 3.1 is its output.

  Attributes:
    use_attention: apply ``ModulatedAttention`` before pooling.
    fc_add: if > 0, a dense layer to this many units (PyTorch ``nn.Linear`` init) + ReLU
      after pooling; the reference's ``use_fc`` is ``fc_add=REFERENCE_FC_ADD`` (512). 0 = none.
    dtype: computation dtype; parameters and the returned features are float32.
  """

  use_attention: bool = True
  fc_add: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, feature_map: Array, train: bool = False) -> jax.Array:
    """Pools a feature map into the direct feature.

    Args:
      feature_map: ``(B, H, W, C)`` backbone output.
      train: unused (same call signature as other necks and heads).

    Returns:
      ``(B, D)`` float32 features, ``D = fc_add`` if ``fc_add > 0`` else ``C``.

    Raises:
      ValueError: for a negative ``fc_add`` or a feature map that is not 4-D.
    """
    del train  # no train-mode behaviour (no dropout, no batch norm)
    if not isinstance(self.fc_add, int) or self.fc_add < 0:
      raise ValueError(
        f"fc_add must be an int >= 0, got {self.fc_add!r}; use 0 for no extra layer or "
        f"{REFERENCE_FC_ADD} for the reference's use_fc."
      )
    if feature_map.ndim != 4:
      raise ValueError(
        f"OLTRNeck expects a (B, H, W, C) feature map, got shape {tuple(feature_map.shape)}."
      )
    x = feature_map
    if self.use_attention:
      x = ModulatedAttention(dtype=self.dtype, name="attention")(x)
    pooled = jnp.mean(jnp.asarray(x, jnp.float32), axis=(1, 2))
    if self.fc_add > 0:
      init = torch_linear_init(pooled.shape[-1])
      pooled = nn.Dense(
        self.fc_add,
        use_bias=True,
        dtype=self.dtype,
        param_dtype=jnp.float32,
        kernel_init=init,
        bias_init=init,
        name="fc_add",
      )(pooled)
      pooled = nn.relu(pooled)
    return pooled.astype(jnp.float32)


class CosineNormClassifier(nn.Module):
  """Cosine classifier (Sec. 3, "Cosine Classifier", Eqs. 4-5), the reference's variant.

  ``logits_k = scale * (||v|| / (1 + ||v||)) * (v / ||v||) . (w_k / ||w_k||)``. The input is
  squashed to norm ``||v|| / (1 + ||v||) < 1`` (the paper's Eq. 4 writes the squared-norm
  squash ``||v||^2 / (1 + ||v||^2)``; the reference code, and this module, use the plain
  norm), so small-norm (unfamiliar) inputs get small logits. It is computed as the equal
  ``v / (1 + ||v||)``, which is 0 (not NaN) at ``v = 0``; a zero weight row gives zero
  logits.

  Attributes:
    num_classes: ``K``.
    scale: logit scale (reference: ``COSINE_SCALE`` = 16).
    dtype: computation dtype of the matmul; the weight and the logits are float32.
  """

  num_classes: int
  scale: float = COSINE_SCALE
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, v: Array, train: bool = False) -> jax.Array:
    """Classifies features.

    Args:
      v: ``(B, D)`` features.
      train: unused.

    Returns:
      ``(B, num_classes)`` float32 logits.
    """
    del train  # no train-mode behaviour
    v = jnp.asarray(v, jnp.float32)
    d = v.shape[-1]
    bound = 1.0 / d**0.5
    # (K, D), one row per class, uniform(-1/sqrt(D), 1/sqrt(D)) as the reference.
    weight = self.param(
      "weight",
      lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound),
      (self.num_classes, d),
    )
    squashed = v / (1.0 + _safe_norm(v))  # Eq. 4 (reference form)
    w_norm = _safe_norm(weight)
    w_hat = weight / jnp.where(w_norm > 0, w_norm, 1.0)  # Eq. 5
    cosines = jnp.matmul(squashed.astype(self.dtype), w_hat.astype(self.dtype).T)
    return self.scale * cosines.astype(jnp.float32)


class MetaEmbeddingHead(nn.Module):
  """Dynamic meta-embedding (Sec. 3.1) + cosine classifier: the OLTR stage-2 head.

  With the direct feature ``x = v_direct`` ``(B, D)`` and the class centroids ``c``
  ``(K, D)`` (the visual memory ``M``):

  * memory feature (Eq. 1): ``v_memory = o @ c`` with ``o = softmax(hallucinator(x))``,
    ``hallucinator`` a dense ``D -> K`` layer with bias (the training code initialises it
    from the stage-1 linear classifier: ``params["head"]["hallucinator"]`` has the kernel
    ``(D, K)`` and bias ``(K,)`` of ``LinearClassifier``'s ``"fc"``);
  * concept selector: ``e = tanh(selector(x))``, ``selector`` a dense ``D -> D`` layer;
  * reachability: ``gamma = reachability_scale / min_k ||x - c_k||`` (the paper's
    ``1 / gamma`` with ``gamma`` the nearest-centroid distance, times the reference's scale
    10); the distance is floored at ``MIN_CENTROID_DISTANCE``;
  * meta-embedding (Eq. 2): ``v_meta = gamma * (x + e * v_memory)``;
  * logits: ``CosineNormClassifier`` ``"cosnorm"`` on ``v_meta``.

  The centroids enter as constants (``stop_gradient``): the classification loss never moves
  them (only the centroids loss does, in the training step). Distances use ``||x||^2 - 2 x.c
  + ||c||^2`` (one ``(B, D) x (D, K)`` matmul, float32 at full precision, clamped at 0
  against cancellation), so memory is ``O(B K)``; no ``(B, K, D)`` array is formed.

  Attributes:
    num_classes: ``K``.
    reachability_scale: numerator of the reachability (reference: ``REACHABILITY_SCALE``).
    cosine_scale: scale of the cosine classifier (reference: ``COSINE_SCALE``).
    dtype: computation dtype of the dense layers and matmuls; parameters, distances, the
      returned logits and extras are float32.
  """

  num_classes: int
  reachability_scale: float = REACHABILITY_SCALE
  cosine_scale: float = COSINE_SCALE
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, x: Array, train: bool = False, centroids: Array | None = None
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Computes the meta-embedding and its logits.

    Args:
      x: ``(B, D)`` direct features.
      train: unused (same call signature as the other heads).
      centroids: ``(num_classes, D)`` class centroids; required.

    Returns:
      ``(logits, extras)``: ``(B, num_classes)`` float32 logits and float32 ``extras``
      ``{"direct_feature": x (B, D), "infused_feature": e * v_memory (B, D),
      "reachability": gamma (B,)}``.

    Raises:
      ValueError: if ``x`` is not 2-D, or ``centroids`` is None or not of shape
        ``(num_classes, D)``.
    """
    del train  # no train-mode behaviour
    if x.ndim != 2:
      raise ValueError(
        f"MetaEmbeddingHead expects (B, D) features, got shape {tuple(x.shape)}; pool the "
        "feature map first (OLTRNeck)."
      )
    d = x.shape[-1]
    expected = (self.num_classes, d)
    if centroids is None:
      raise ValueError(
        f"MetaEmbeddingHead needs centroids of shape {expected} (num_classes, D), got None; "
        "pass centroids=... to the head (Classifier forwards its keyword arguments to the head)."
      )
    if tuple(centroids.shape) != expected:
      raise ValueError(
        f"centroids must have shape {expected} (num_classes, D), got "
        f"{tuple(centroids.shape)}; compute one centroid per class from the features this "
        "head receives."
      )
    x = jnp.asarray(x, jnp.float32)
    centroids = jax.lax.stop_gradient(jnp.asarray(centroids, jnp.float32))

    # Reachability (Sec. 3.1): inverse distance to the nearest centroid, from the expansion
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2 (memory O(B K)).
    cross = jnp.matmul(x, centroids.T, precision=jax.lax.Precision.HIGHEST)  # (B, K)
    sq_dist = (
      jnp.sum(x * x, axis=-1, keepdims=True) - 2.0 * cross + jnp.sum(centroids**2, axis=-1)[None]
    )
    nearest_sq = jnp.maximum(jnp.min(sq_dist, axis=-1), 0.0)  # clamp the cancellation error
    nearest = jnp.sqrt(jnp.maximum(nearest_sq, MIN_CENTROID_DISTANCE**2))
    gamma = self.reachability_scale / nearest  # (B,)

    def dense(features: int, name: str) -> nn.Dense:
      init = torch_linear_init(d)
      return nn.Dense(
        features,
        use_bias=True,
        dtype=self.dtype,
        param_dtype=jnp.float32,
        kernel_init=init,
        bias_init=init,
        name=name,
      )

    # Memory feature (Eq. 1): hallucinated coefficients over the memory (the centroids).
    coefficients = jax.nn.softmax(
      dense(self.num_classes, "hallucinator")(x).astype(jnp.float32), axis=-1
    )
    memory = jnp.matmul(coefficients.astype(self.dtype), centroids.astype(self.dtype))
    memory = memory.astype(jnp.float32)
    # Concept selector.
    selector = jnp.tanh(dense(d, "selector")(x).astype(jnp.float32))
    infused = selector * memory
    # Meta-embedding (Eq. 2), gamma per sample.
    meta = gamma[:, None] * (x + infused)
    logits = CosineNormClassifier(
      self.num_classes, scale=self.cosine_scale, dtype=self.dtype, name="cosnorm"
    )(meta)
    return logits, {"direct_feature": x, "infused_feature": infused, "reachability": gamma}
