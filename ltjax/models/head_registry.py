"""The head registry: one registered dataclass per classifier head, whose fields are its options.

``config.model.head`` names the entry; its options are read from ``config.model`` by field
name (``from_config``), as a backbone's are: a head reads its own options and nothing else of
the config, and an option of another head set away from its default is refused by name
(``model.head_scale`` on a linear head). Its docstring's ``Attributes:`` section is what
``ltjax train --config=FILE --help`` says of each option (``ltjax.config.declared``). The
modules themselves are in ``ltjax.models.heads`` and ``ltjax.models.oltr``; adding a head is
its module and one registered class here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn

from ltjax.config import components
from ltjax.models import heads, oltr


@dataclasses.dataclass(frozen=True)
class Head:
  """A classifier head and its options (the dataclass fields, defaults as in ``config.model``)."""

  name: ClassVar[str]
  #: Its classifier is one ``(D, K)`` kernel ``head/fc/kernel`` (and a bias, zeroed), which
  #: CLIP's text features or the class means can start (``model.head_init``).
  starts_from_class_vectors: ClassVar[bool] = False
  #: The head LWS re-scales this one with (``stage=lws`` after a run with this head); "" =
  #: none.
  lws_twin: ClassVar[str] = ""

  def module(self, num_classes: int, dtype: Any) -> nn.Module:
    """The unbound Flax module with ``num_classes`` logits, computing in ``dtype``."""
    raise NotImplementedError


#: name -> the registered class (``model.head``).
HEADS: components.Registry = components.Registry("head", "model.head")
#: Adds ``cls`` to ``HEADS`` under ``cls.name`` (a decorator).
register = HEADS.register
#: The class registered as ``name``; a ValueError listing the valid names otherwise.
get = HEADS.lookup


def from_config(model: Mapping) -> Head:
  """The head of a ``config.model`` block: ``model["head"]`` with its options.

  Raises:
    ValueError: an unknown head (listing the valid ones), or another head's option set
      away from its default (naming it, its heads and the value to leave it at).
  """
  cls = get(model["head"])
  found = components.foreign_option(HEADS, cls.name, model)
  if found is not None:
    field, value, default, owners = found
    names = [o.name for o in owners]
    which = " / ".join(names) + (" heads" if len(names) > 1 else " head")
    raise components.UnreadOption(
      f"--config.model.{field}={value!r} is an option of the {which}, not of {cls.name!r}: "
      f"leave it {default!r} (or set --config.model.head={names[0]}).",
      f"model.{field}",
      default,
    )
  return components.build(cls, model)


@register
@dataclasses.dataclass(frozen=True)
class Linear(Head):
  """``W x + b`` (the references' ``DotProduct_Classifier``; ``heads.LinearClassifier``)."""

  name = "linear"
  starts_from_class_vectors = True
  lws_twin = "lws"

  def module(self, num_classes, dtype):
    return heads.LinearClassifier(num_classes=num_classes, dtype=dtype)


@register
@dataclasses.dataclass(frozen=True)
class LWS(Head):
  """Decoupling's learnable weight scaling: the linear head times one learnt scale per
  class (``heads.LWSClassifier``)."""

  name = "lws"

  def module(self, num_classes, dtype):
    return heads.LWSClassifier(num_classes=num_classes, dtype=dtype)


@register
@dataclasses.dataclass(frozen=True)
class NormedLinear(Head):
  """LDAM's cosine classifier, logits in [-1, 1], scaled by the loss
  (``heads.NormedLinearClassifier``)."""

  name = "normed_linear"
  starts_from_class_vectors = True

  def module(self, num_classes, dtype):
    return heads.NormedLinearClassifier(num_classes=num_classes, dtype=dtype)


@register
@dataclasses.dataclass(frozen=True)
class Cosine(Head):
  """LIFT's scaled cosine classifier (``heads.CosineClassifier``).

  Attributes:
    head_scale: the logit scale: logits = head_scale * cos(x, w_j) (LIFT's configs: 25).
  """

  name = "cosine"
  starts_from_class_vectors = True
  lws_twin = "lws_cosine"
  head_scale: float = 25.0

  def module(self, num_classes, dtype):
    return heads.CosineClassifier(num_classes=num_classes, scale=self.head_scale, dtype=dtype)


@register
@dataclasses.dataclass(frozen=True)
class CosineLWS(Cosine):
  """LWS on the cosine classifier (``heads.CosineLWSClassifier``)."""

  name = "lws_cosine"
  starts_from_class_vectors = False
  lws_twin = ""

  def module(self, num_classes, dtype):
    return heads.CosineLWSClassifier(num_classes=num_classes, scale=self.head_scale, dtype=dtype)


@register
@dataclasses.dataclass(frozen=True)
class MetaEmbedding(Head):
  """OLTR's dynamic meta-embedding with its cosine classifier (``oltr.MetaEmbeddingHead``),
  which reads the stage's centroids."""

  name = "meta_embedding"

  def module(self, num_classes, dtype):
    return oltr.MetaEmbeddingHead(num_classes=num_classes, dtype=dtype)
