"""Batched augmentation with per-record randomness.

Every random number used to augment a record is a hash of (seed, the record's
position in the global sample stream, draw id). So a record is augmented the same
way whatever the batch size, the number of processes or the prefetch order; this is
what makes resumed runs and multi-process runs reproduce single-process runs.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
  x = x + _GOLDEN
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def record_uniforms(seed: int, positions: np.ndarray, num_draws: int) -> np.ndarray:
  """Uniform [0, 1) numbers, a pure function of (seed, position, draw).

  Args:
    seed: stream seed.
    positions: (B,) global positions of the records in the sample stream.
    num_draws: random numbers needed per record.

  Returns:
    (B, num_draws) float64.
  """
  positions = np.asarray(positions, dtype=np.uint64)
  with np.errstate(over="ignore"):
    key = _splitmix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(0x5EED))
    base = _splitmix64(key ^ positions)[:, None]
    draws = np.arange(num_draws, dtype=np.uint64)[None, :]
    bits = _splitmix64(base + draws * _GOLDEN)
  return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def random_crop_flip(
  images: np.ndarray, uniforms: np.ndarray, *, pad: int, flip: bool
) -> np.ndarray:
  """Zero-pads by ``pad``, crops back to the input size at a random offset, maybe flips.

  The CIFAR recipe (pad 4, random 32x32 crop, horizontal flip with probability 1/2).

  Args:
    images: (B, H, W, C) uint8.
    uniforms: (B, >=3) per-record uniforms: y offset, x offset, flip.
    pad: padding in pixels on every side (0 disables the crop).
    flip: whether to flip horizontally with probability 1/2.

  Returns:
    (B, H, W, C) uint8.
  """
  b, h, w, _ = images.shape
  if pad:
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oy = np.minimum((uniforms[:, 0] * (2 * pad + 1)).astype(np.int64), 2 * pad)
    ox = np.minimum((uniforms[:, 1] * (2 * pad + 1)).astype(np.int64), 2 * pad)
  else:
    padded = images
    oy = ox = np.zeros(b, np.int64)
  cols = np.arange(w)[None, :]
  if flip:
    cols = np.where((uniforms[:, 2] < 0.5)[:, None], w - 1 - cols, cols)
  rows = oy[:, None] + np.arange(h)[None, :]
  cols = ox[:, None] + cols
  return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


AUGMENTATIONS = ("none", "crop_flip", "imagenet", "imagenet_device")
EVAL_TRANSFORMS = ("none", "resize_center_crop")


def augment_batch(
  images,
  positions: np.ndarray,
  seed: int,
  *,
  kind: str,
  pad: int = 4,
  flip: bool = True,
  size: int = 224,
) -> np.ndarray | dict[str, np.ndarray]:
  """Applies the named training augmentation to a batch with per-record randomness.

  Args:
    images: (B, H, W, C) uint8, or for ``imagenet`` also a list of differently sized images.
    positions: (B,) global stream positions of the records (the randomness key).
    seed: stream seed.
    kind: ``none``; ``crop_flip`` (small images: pad, random crop, optional flip);
      ``imagenet`` (RandomResizedCrop(size) + flip + colour jitter 0.4, as the references);
      ``imagenet_device`` (the same random numbers, but the host only crops: returns the
      dict of ``ltjax.data.device_augment.prepare_batch``, which the train step resizes,
      flips and jitters on the device).
    pad, flip: ``crop_flip`` options.
    size: output side of ``imagenet`` and ``imagenet_device``.
  """
  if kind == "none":
    return images
  if kind == "crop_flip":
    return random_crop_flip(images, record_uniforms(seed, positions, 3), pad=pad, flip=flip)
  if kind == "imagenet":
    from ltjax.data import image_ops  # noqa: PLC0415

    return image_ops.imagenet_train_batch(list(images), positions, seed, size=size)
  if kind == "imagenet_device":
    from ltjax.data import device_augment  # noqa: PLC0415

    return device_augment.prepare_batch(list(images), positions, seed, size=size)
  raise ValueError(f"unknown augmentation {kind!r}; valid: {', '.join(AUGMENTATIONS)}.")


def eval_transform(images, *, kind: str, size: int = 224) -> np.ndarray:
  """Deterministic evaluation transform.

  ``none``, or ``resize_center_crop``: resize the shorter side to size * 256 / 224 and
  centre-crop size x size (the references' 256 -> 224).
  """
  if kind == "none":
    return images
  if kind == "resize_center_crop":
    from ltjax.data import image_ops  # noqa: PLC0415

    return image_ops.imagenet_eval_batch(list(images), resize=round(size * 256 / 224), crop=size)
  raise ValueError(f"unknown eval transform {kind!r}; valid: {', '.join(EVAL_TRANSFORMS)}.")
