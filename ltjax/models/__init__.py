"""Model zoo: backbone and head registries and the full ``Classifier``.

Backbones and heads are registered dataclasses whose fields are their options
(``backbones``, ``head_registry``); each builds its Flax module.

Typical use::

  model = build_model("resnet50", "linear", num_classes=1000, dtype="bfloat16")
  variables = model.init(key, x, train=False)
  (logits, aux), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])

Parameters live under ``params["backbone"][...]`` and ``params["head"][...]`` (the linear
head's dense layer is ``params["head"]["fc"]``), so training stages can freeze by path.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltjax.models import backbones, head_registry
from ltjax.models.backbones import BACKBONES, Backbone
from ltjax.models.head_registry import HEADS, Head
from ltjax.models.heads import (
  CosineClassifier,
  CosineLWSClassifier,
  LinearClassifier,
  LWSClassifier,
  NormedLinearClassifier,
)
from ltjax.models.oltr import MetaEmbeddingHead, OLTRNeck
from ltjax.models.resnet import BasicBlock, Bottleneck, CifarResNet, ResNet

__all__ = [
  "BACKBONES",
  "Backbone",
  "DTYPES",
  "HEADS",
  "BasicBlock",
  "Bottleneck",
  "CifarResNet",
  "Classifier",
  "CosineClassifier",
  "CosineLWSClassifier",
  "Head",
  "LWSClassifier",
  "LinearClassifier",
  "MetaEmbeddingHead",
  "NormedLinearClassifier",
  "OLTRNeck",
  "ResNet",
  "assemble",
  "backbones",
  "build_model",
  "get_backbone",
  "get_head",
  "head_registry",
  "resolve_dtype",
]

Array = Any

DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def resolve_dtype(dtype: Any) -> Any:
  """Maps ``"float32"``/``"bfloat16"`` (or the matching jnp dtype) to a jnp dtype.

  Raises:
    ValueError: for any other dtype, listing the valid names.
  """
  try:
    name = dtype if isinstance(dtype, str) else jnp.dtype(dtype).name
  except TypeError:
    name = repr(dtype)
  if name not in DTYPES:
    raise ValueError(f"Unknown dtype {dtype!r}; valid dtypes: {sorted(DTYPES)}.")
  return DTYPES[name]


def get_backbone(name: str, dtype: Any = jnp.float32, **options: Any) -> nn.Module:
  """Builds the backbone registered as ``name`` (``ltjax.models.backbones``).

  Args:
    name: a key of ``BACKBONES``, e.g. ``"resnet50"`` or ``"cifar_resnet32"``.
    dtype: the computation dtype (string or jnp dtype).
    **options: the backbone's options (its dataclass fields), e.g. ``width`` for the
      ``cifar_*`` backbones.

  Raises:
    ValueError: if ``name`` is not registered (the message lists the valid names).
  """
  return backbones.get(name)(**options).module(resolve_dtype(dtype))


def get_head(name: str, num_classes: int, dtype: Any = jnp.float32, **options: Any) -> nn.Module:
  """Builds the head registered as ``name`` (``ltjax.models.head_registry``).

  Args:
    name: a key of ``HEADS``, e.g. ``"linear"``.
    num_classes: number of logits.
    dtype: the computation dtype (string or jnp dtype).
    **options: the head's options (its dataclass fields), e.g. ``head_scale`` for
      ``cosine``.

  Raises:
    ValueError: if ``name`` is not registered (the message lists the valid names).
  """
  return head_registry.get(name)(**options).module(num_classes, resolve_dtype(dtype))


class Classifier(nn.Module):
  """Backbone, optional neck, and a classifier head on the features.

  Attributes:
    backbone: module called as ``backbone(x, train)`` returning ``{"feature_map",
      "features"}``.
    head: module called as ``head(features, train, **head_inputs)`` returning logits, or
      ``(logits, extras)`` with ``extras`` merged into ``aux``; ``head_inputs`` are what a
      stage gives its head of the state it keeps (OLTR's meta-embedding: ``centroids``).
    neck: optional module ``neck(feature_map, train) -> (B, D)`` replacing the
      backbone's pooling (OLTR: modulated attention, pooling, optional fc).
  """

  backbone: nn.Module
  head: nn.Module
  neck: nn.Module | None = None

  def features(
    self,
    x: Array,
    train: bool,
    *,
    backbone_train: bool | None = None,
    freeze_backbone: bool = False,
  ) -> tuple[Array, Array]:
    """(features (B, D) float32, feature_map) of a normalised batch; see ``__call__``."""
    out = self.backbone(x, train if backbone_train is None else backbone_train)
    if freeze_backbone:
      out = jax.lax.stop_gradient(out)
    features = out["features"] if self.neck is None else self.neck(out["feature_map"], train)
    return features.astype(jnp.float32), out["feature_map"]

  def __call__(
    self,
    x: Array,
    train: bool,
    *,
    backbone_train: bool | None = None,
    freeze_backbone: bool = False,
    **head_inputs: Any,
  ) -> tuple[Array, dict[str, Array]]:
    """Classifies a float, already normalised NHWC batch.

    Args:
      x: ``(B, H, W, C)`` float images; cast to the backbone's dtype inside.
      train: batch statistics and ``batch_stats`` updates if True, running averages if
        False.
      backbone_train: BatchNorm mode of the backbone alone (default: ``train``). cRT and
        LWS run a frozen backbone in inference mode.
      freeze_backbone: stop gradients at the backbone's output, so a step that trains
        only the head never computes the backbone's backward pass.
      **head_inputs: keyword arguments of the head, beside the features (a stage's own
        state: ``ltjax.train.stages.Stage.model_inputs``).

    Returns:
      ``(logits, aux)``: float32 logits ``(B, K)`` and ``aux = {"features": (B, D)
      float32, "feature_map": (B, H', W', C)}`` plus any head extras.
    """
    features, feature_map = self.features(
      x, train, backbone_train=backbone_train, freeze_backbone=freeze_backbone
    )
    aux = {"features": features, "feature_map": feature_map}
    head_out = self.head(features, train, **head_inputs)
    if isinstance(head_out, tuple):
      logits, extras = head_out
      aux.update(extras)
    else:
      logits = head_out
    return logits.astype(jnp.float32), aux


def build_model(
  backbone: str | Backbone,
  head: str | Head,
  num_classes: int,
  dtype: str = "float32",
  neck: dict | None = None,
  **backbone_options: Any,
) -> Classifier:
  """Builds ``Classifier(backbone, head, neck)`` from registry names.

  Args:
    backbone: a key of ``BACKBONES``, or a ``Backbone`` with its options
      (``backbones.from_config(config.model)``).
    head: a key of ``HEADS`` (with its default options), or a ``Head`` with its options
      (``head_registry.from_config(config.model)``).
    num_classes: number of logits.
    dtype: computation dtype, ``"float32"`` or ``"bfloat16"``; parameters stay float32.
    neck: keyword arguments of ``ltjax.models.oltr.OLTRNeck`` (``use_attention``,
      ``fc_add``), or None for the backbone's own pooling.
    **backbone_options: the options of a backbone given by name, e.g. ``width=0.25`` for
      ``cifar_*``.

  Raises:
    ValueError: for an unknown backbone, head or dtype (listing the valid choices).
  """
  if not isinstance(backbone, Backbone):
    backbone = backbones.get(backbone)(**backbone_options)
  if not isinstance(head, Head):
    head = head_registry.get(head)()
  return assemble(backbone, head, num_classes, dtype, neck)


def assemble(
  backbone: Backbone, head: Head, num_classes: int, dtype: str = "float32", neck=None
) -> Classifier:
  """``Classifier(backbone, head, neck)`` of a backbone and a head already built with their
  options (a run's: ``experiment.Components``); ``build_model``'s arguments otherwise."""
  jdtype = resolve_dtype(dtype)
  return Classifier(
    # Its options given the classes (LIFT's adapter width rule, ``model.adapter_dim=0``).
    backbone=backbone.for_classes(num_classes).module(jdtype),
    head=head.module(num_classes, jdtype),
    neck=None if neck is None else OLTRNeck(dtype=jdtype, **neck),
  )
