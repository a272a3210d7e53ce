"""Classification losses: the registry the stages take their loss from (``config.loss``).

A loss is a registered class (:data:`LOSSES`) whose dataclass fields are its options, read
from ``config.loss`` by :func:`from_config`; called on a batch it is a pure function of the
logits, the integer labels and the :class:`LossInputs` the train step hands every loss (the
training class counts, for re-balancing losses; the fractional epoch, for deferred
schedules). A new loss is one class here with its defaults in ``config.loss``; the stages
and the loop never ask which loss it is. OLTR's discriminative centroids term is not one of
them: OLTR's stage adds it (``ltjax.losses.centroids``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import optax

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
  over the batch."""

  name: ClassVar[str]

  def __call__(self, logits: jax.Array, labels: jax.Array, inputs: LossInputs) -> jax.Array:
    raise NotImplementedError


LOSSES: dict[str, type[ClassificationLoss]] = {}


def register(cls: type[ClassificationLoss]) -> type[ClassificationLoss]:
  """Class decorator: adds a loss to :data:`LOSSES` under ``cls.name``."""
  LOSSES[cls.name] = cls
  return cls


def get(name: str) -> type[ClassificationLoss]:
  """The loss class registered as ``name``; a ValueError listing the valid names otherwise."""
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}.")
  return LOSSES[name]


def from_config(config) -> ClassificationLoss:
  """The loss of ``config.loss.name``, each option (dataclass field) from ``config.loss``.

  Raises:
    ValueError: an unknown name, or an option out of range (naming its config field).
  """
  cls = get(config.loss.name)
  options = {f.name: config.loss[f.name] for f in dataclasses.fields(cls) if f.name in config.loss}
  try:
    return cls(**options)
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
