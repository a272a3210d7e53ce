"""The augmentation registries: a config name -> a registered dataclass whose fields are its
options (read from ``config.data``), called on a batch.

Training augmentations (``data.augment``, :data:`AUGMENTATIONS`) and evaluation transforms
(``data.eval_transform``, :data:`EVAL_TRANSFORMS`) are built here from the config
(``from_config``, ``eval_from_config``); the ops themselves are in
``ltjax.data.pp.image_ops`` (host) and ``ltjax.data.pp.device_ops`` (device), which never
import this module. Randomness is per record (``ltjax.data.pp.rng.record_uniforms``). A new
one is a class here; its options' meanings are its docstring's ``Attributes:`` section
(``--help`` shows them: ``ltjax.config.declared``) and their defaults go in ``config.data``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from ltjax.config import components
from ltjax.data.pp import device_ops, image_ops
from ltjax.data.pp.rng import record_uniforms


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """A training augmentation: ``augmentation(images, positions, seed)`` is the batch the
  train step takes, with per-record randomness keyed by the records' global stream
  ``positions``: ``(B, H, W, C)`` uint8, or the dict of ``device_ops.prepare_batch`` when
  the train step finishes it on the device (``on_device``). ``images`` is ``(B, H, W, C)``
  uint8 or a list of images (of several sizes for the ones that resize)."""

  name: ClassVar[str]
  #: Its images are ``crop_size`` square (else the stored size): the model's input.
  resizes: ClassVar[bool] = False
  #: The train step resizes, flips and jitters (``ltjax.data.pp.device_ops``).
  on_device: ClassVar[bool] = False

  def __call__(self, images, positions: np.ndarray, seed: int):
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class EvalTransform:
  """A deterministic evaluation transform: ``transform(images)`` is ``(B, H, W, C)`` uint8,
  or ``(B, views, H, W, C)`` for one of several views per example, whose logits the eval
  and feature steps average (``ltjax.train.steps``)."""

  name: ClassVar[str]
  #: Views per example; None: one.
  views: ClassVar[int | None] = None

  def __call__(self, images) -> np.ndarray:
    raise NotImplementedError


#: ``data.augment`` -> the registered class.
AUGMENTATIONS: components.Registry = components.Registry("augmentation", "data.augment")
#: ``data.eval_transform`` -> the registered class.
EVAL_TRANSFORMS: components.Registry = components.Registry(
  "evaluation transform", "data.eval_transform"
)
#: The augmentation class registered as ``name``; a ValueError listing the valid ones.
get = AUGMENTATIONS.lookup
#: The evaluation transform class registered as ``name``; a ValueError listing the valid ones.
get_eval = EVAL_TRANSFORMS.lookup


def register(cls):
  """Class decorator: adds an augmentation or an evaluation transform to its registry."""
  return (AUGMENTATIONS if issubclass(cls, Augmentation) else EVAL_TRANSFORMS).register(cls)


def from_config(data: Mapping) -> Augmentation:
  """The augmentation of ``data.augment``, its options from ``data`` (``config.data``).

  Raises:
    ValueError: an unknown name, or an option that neither it nor the evaluation transform
      reads set away from its default (``check_options``).
  """
  check_options(data)
  return components.build(get(data["augment"]), data)


def eval_from_config(data: Mapping) -> EvalTransform:
  """The evaluation transform of ``data.eval_transform``, its options from ``data``.

  Raises:
    ValueError: as ``from_config``.
  """
  check_options(data)
  return components.build(get_eval(data["eval_transform"]), data)


def check_options(data: Mapping) -> None:
  """Refuses an option of the augmentations or evaluation transforms that ``data`` sets away
  from its default while neither its augmentation nor its evaluation transform reads it
  (``--config.data.jitter=0.2`` with ``crop_flip``, which has no colour jitter): the two
  share ``config.data``, so an option one of them reads (``crop_size``) is never refused.

  Raises:
    ValueError: naming the option, the members it belongs to and the value to leave it at.
  """
  chosen = [(AUGMENTATIONS, get(data["augment"]).name)]
  if "eval_transform" in data:
    chosen.append((EVAL_TRANSFORMS, get_eval(data["eval_transform"]).name))
  components.refuse_unread_option(data, chosen)


def as_batch(images, kind: str) -> np.ndarray:
  """``images`` as one ``(B, H, W, C)`` array: sources of files (image folders, lists,
  packed shards) give a list, which the transforms that keep the stored size take when its
  images share one size; otherwise a ValueError naming the transforms that resize."""
  if isinstance(images, np.ndarray):
    return images
  shapes = {np.shape(x) for x in images}
  if len(shapes) > 1:
    raise ValueError(
      f"'{kind}' keeps the images' stored size, but they differ in size ({sorted(shapes)[:3]}"
      f"{', ...' if len(shapes) > 3 else ''}): use --config.data.augment=imagenet (random "
      "resized crops to data.crop_size) and --config.data.eval_transform=resize_center_crop."
    )
  return np.stack(images)


# ------------------------------------------------------------------- training augmentations


@register
@dataclasses.dataclass(frozen=True)
class NoAugmentation(Augmentation):
  """The stored images, as they are."""

  name = "none"

  def __call__(self, images, positions, seed):
    return as_batch(images, self.name)


@register
@dataclasses.dataclass(frozen=True)
class CropFlip(Augmentation):
  """Small images (CIFAR): zero-pad, random crop of the stored size, random horizontal flip.

  Attributes:
    pad: pixels of zero padding on each side before the random crop.
    flip: a random horizontal flip.
  """

  name = "crop_flip"
  pad: int = 4
  flip: bool = True

  def __call__(self, images, positions, seed):
    uniforms = record_uniforms(seed, positions, 3)
    return image_ops.random_crop_flip(
      as_batch(images, self.name), uniforms, pad=self.pad, flip=self.flip
    )


@register
@dataclasses.dataclass(frozen=True)
class ImageNet(Augmentation):
  """The references' ImageNet training transform on the host: RandomResizedCrop(crop_size),
  horizontal flip and ColorJitter(jitter), Pillow's pixels as torchvision's.

  Attributes:
    crop_size: the side of the random resized crops: the model's input.
    jitter: ColorJitter strength, brightness = contrast = saturation (0 = none).
  """

  name = "imagenet"
  resizes = True
  crop_size: int = 224
  jitter: float = image_ops.IMAGENET_JITTER[0]

  def __call__(self, images, positions, seed):
    return image_ops.imagenet_train_batch(
      list(images), positions, seed, size=self.crop_size, jitter=self.jitter
    )


@register
@dataclasses.dataclass(frozen=True)
class ImageNetDevice(ImageNet):
  """``imagenet`` with the same random numbers, but the host only crops: the batch is the
  dict of ``ltjax.data.pp.device_ops.prepare_batch``, which the train step resizes, flips
  and jitters on the device."""

  name = "imagenet_device"
  on_device = True

  def __call__(self, images, positions, seed):
    return device_ops.prepare_batch(
      list(images), positions, seed, size=self.crop_size, jitter=self.jitter
    )


# ------------------------------------------------------------------- evaluation transforms


@register
@dataclasses.dataclass(frozen=True)
class NoTransform(EvalTransform):
  """The stored images, (B, H, W, C)."""

  name = "none"

  def __call__(self, images):
    return as_batch(images, self.name)


@register
@dataclasses.dataclass(frozen=True)
class ResizeCenterCrop(EvalTransform):
  """The references' 256 -> 224: resize the shorter side to ``crop_size * 256 / 224`` and
  centre-crop ``crop_size`` square (Pillow's bilinear filter, antialiased when downsampling:
  torchvision's pixels on PIL images).

  Attributes:
    crop_size: the side of the centre crop: the model's input.
  """

  name = "resize_center_crop"
  crop_size: int = 224

  def __call__(self, images):
    size = self.crop_size
    return image_ops.imagenet_eval_batch(list(images), resize=round(size * 256 / 224), crop=size)


@register
@dataclasses.dataclass(frozen=True)
class FiveCrop(EvalTransform):
  """LIFT's test-time ensemble (shijxcs/LIFT, ``tte_mode="fivecrop"``): resize the shorter
  side to ``crop_size + tte_expand`` and take the four corner and the central ``crop_size``
  square crops (torchvision ``Resize`` + ``FiveCrop``; ``image_ops.five_crop_batch``):
  (B, 5, size, size, C), whose logits the eval step averages.

  Attributes:
    crop_size: the side of the five crops: the side the model trained at.
    tte_expand: pixels the shorter side is resized to beyond crop_size (LIFT: 24).
  """

  name = "five_crop"
  views = len(image_ops.FIVE_CROPS)
  crop_size: int = 224
  tte_expand: int = 24

  def __post_init__(self):
    value = self.tte_expand
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
      raise ValueError(f"five_crop: tte_expand must be an integer >= 0, got {value!r}.")

  def __call__(self, images):
    resize = self.crop_size + int(self.tte_expand)
    return image_ops.five_crop_batch(list(images), resize=resize, crop=self.crop_size)
