"""The augmentation registry: a config name -> the batched host (and device) ops.

Training augmentations (``data.augment``) and evaluation transforms
(``data.eval_transform``) are looked up here by name; the ops themselves are in
``ltjax.data.pp.image_ops`` (host) and ``ltjax.data.pp.device_ops`` (device), which never
import this module. Randomness is per record (``ltjax.data.pp.rng.record_uniforms``).
"""

from __future__ import annotations

import numpy as np

from ltjax.data.pp import device_ops, image_ops
from ltjax.data.pp.rng import record_uniforms

AUGMENTATIONS = ("none", "crop_flip", "imagenet", "imagenet_device")
EVAL_TRANSFORMS = ("none", "resize_center_crop", "five_crop")
#: Eval transforms that give each example several views, and how many: its batches' images
#: are (B, views, H, W, C), and the eval and feature steps average the model's outputs over
#: the views (``ltjax.train.steps``).
EVAL_VIEWS = {"five_crop": len(image_ops.FIVE_CROPS)}


def augment_batch(
  images,
  positions: np.ndarray,
  seed: int,
  *,
  kind: str,
  pad: int = 4,
  flip: bool = True,
  size: int = 224,
  jitter: float = image_ops.IMAGENET_JITTER[0],
) -> np.ndarray | dict[str, np.ndarray]:
  """Applies the named training augmentation to a batch with per-record randomness.

  Args:
    images: (B, H, W, C) uint8, or for ``imagenet`` also a list of differently sized images.
    positions: (B,) global stream positions of the records (the randomness key).
    seed: stream seed.
    kind: ``none``; ``crop_flip`` (small images: pad, random crop, optional flip);
      ``imagenet`` (RandomResizedCrop(size) + flip + ColorJitter(jitter), as the references);
      ``imagenet_device`` (the same random numbers, but the host only crops: returns the
      dict of ``ltjax.data.pp.device_ops.prepare_batch``, which the train step resizes,
      flips and jitters on the device).
    pad, flip: ``crop_flip`` options.
    size: output side of ``imagenet`` and ``imagenet_device``.
    jitter: their ColorJitter strength (brightness = contrast = saturation; 0 = none).
  """
  if kind == "none":
    return as_batch(images, kind)
  if kind == "crop_flip":
    return image_ops.random_crop_flip(
      as_batch(images, kind), record_uniforms(seed, positions, 3), pad=pad, flip=flip
    )
  if kind == "imagenet":
    return image_ops.imagenet_train_batch(list(images), positions, seed, size=size, jitter=jitter)
  if kind == "imagenet_device":
    return device_ops.prepare_batch(list(images), positions, seed, size=size, jitter=jitter)
  raise ValueError(f"unknown augmentation {kind!r}; valid: {', '.join(AUGMENTATIONS)}.")


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


def eval_transform(images, *, kind: str, size: int = 224, tte_expand: int = 24) -> np.ndarray:
  """Deterministic evaluation transform.

  ``none``: the stored images, (B, H, W, C).

  ``resize_center_crop``: resize the shorter side to size * 256 / 224 and centre-crop
  size x size (the references' 256 -> 224): (B, size, size, C).

  ``five_crop``: LIFT's test-time ensemble (shijxcs/LIFT, ``tte_mode="fivecrop"``): resize
  the shorter side to ``size + tte_expand`` and take the four corner and the central
  size x size crops (torchvision ``Resize`` + ``FiveCrop``; ``image_ops.five_crop_batch``):
  (B, 5, size, size, C), ``EVAL_VIEWS`` crops per example, whose logits the eval step
  averages.

  Both resizes are Pillow's bilinear filter, antialiased when downsampling: torchvision's
  on PIL images, so the pixels are the references' (``ltjax.data.pp.image_ops``).
  """
  if kind == "none":
    return as_batch(images, kind)
  if kind == "resize_center_crop":
    return image_ops.imagenet_eval_batch(list(images), resize=round(size * 256 / 224), crop=size)
  if kind == "five_crop":
    tte_expand = _check_expand(tte_expand)
    return image_ops.five_crop_batch(list(images), resize=size + tte_expand, crop=size)
  raise ValueError(f"unknown eval transform {kind!r}; valid: {', '.join(EVAL_TRANSFORMS)}.")


def _check_expand(value) -> int:
  if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
    raise ValueError(f"five_crop: tte_expand must be an integer >= 0, got {value!r}.")
  return int(value)
