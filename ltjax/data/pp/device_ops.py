"""The ImageNet training augmentation split between host and accelerator.

``data.augment = "imagenet_device"`` runs the ``imagenet`` augmentation (RandomResizedCrop
+ horizontal flip + ColorJitter(0.4, 0.4, 0.4), see ``ltjax.data.pp.image_ops``) with the
same per-record random numbers, but leaves the host only the JPEG decode and a crop copy:

* host (`prepare_batch`): pick the crop box (``image_ops.random_resized_crop_params``,
  the same uniforms), copy the crop into the top-left corner of a zero uint8 buffer of
  side ``S = BUFFER_FACTOR * size`` (448 for 224) and record its valid (h, w); a crop
  larger than S on a side is first shrunk by an integer factor per axis with Pillow's
  ``reduce`` (a box filter; the only step whose pixels differ from the host path). The
  flip bit, the three jitter factors and the jitter order travel with the batch.
* device (`resize_flip_jitter`, jitted into the train step): antialiased bilinear resize of each
  valid region to size x size as two batched matmuls with per-image weights (Pillow's
  triangle filter, support scaled by the downscale factor, weights normalised over the
  valid pixels only, horizontal pass first and rounded to uint8 between passes, as
  Pillow), the flip folded into the horizontal weights, then the jitter as Pillow's
  ``ImageEnhance`` blends (truncated to uint8 after each step) in float32.

On the same decoded image the output equals the host path's up to rounding ties and the
``reduce`` of crops larger than S (tests/data/test_device_augment.py). The cost moves to
the accelerator: the uint8 buffer crossing the bus is (S / size)^2 = 4x the host path's
batch, and the resize is ~26 GFLOP per 64 images at 224 (matmuls at full float32
precision), negligible on an accelerator but on a CPU-only run it competes with the
train step (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltjax.data.pp import image_ops
from ltjax.data.pp.rng import record_uniforms

#: Keys of a batch prepared by `prepare_batch`, besides ``image`` and ``label``.
KEYS = ("crop_hw", "flip", "jitter", "jitter_order")
#: Buffer side over output side: crops up to 2 x size pass to the device untouched.
BUFFER_FACTOR = 2
#: Pillow's fixed-point precision of resampling coefficients (8-bit images).
_PRECISION_BITS = 32 - 8 - 2


def buffer_side(size: int) -> int:
  """Side S of the host buffer for output side ``size``."""
  return BUFFER_FACTOR * int(size)


def output_size(side: int) -> int:
  """Output side of `resize_flip_jitter` for a buffer of side ``side`` (inverse of
  `buffer_side`)."""
  if side % BUFFER_FACTOR:
    raise ValueError(f"buffer side {side} is not a multiple of {BUFFER_FACTOR}.")
  return side // BUFFER_FACTOR


def has_device_inputs(batch) -> bool:
  """Whether ``batch`` was prepared by `prepare_batch` (carries the extra keys)."""
  return all(k in batch for k in KEYS)


# ---------------------------------------------------------------------------- host


def _fit_crop(image: np.ndarray, box: tuple[int, int, int, int], side: int) -> np.ndarray:
  """The crop, reduced by integer factors (Pillow ``reduce``) so both sides fit in ``side``."""
  top, left, h, w = box
  if h <= side and w <= side:
    return image[top : top + h, left : left + w]
  factors = (-(-w // side), -(-h // side))  # (x, y), as Pillow takes them.
  return image_ops.from_pil(image_ops.crop_to_pil(image, *box).reduce(factors))


def example_shapes(size: int, channels: int) -> dict[str, tuple[tuple[int, ...], type]]:
  """Per-example (shape, dtype) of every key `prepare_batch` returns for output ``size``."""
  side = buffer_side(size)
  return {
    "image": ((side, side, channels), np.uint8),
    "crop_hw": ((2,), np.int32),
    "flip": ((), np.bool_),
    "jitter": ((3,), np.float32),
    "jitter_order": ((3,), np.int32),
  }


def prepare_batch(
  images_list: Sequence[np.ndarray],
  positions,
  seed: int,
  size: int = 224,
  jitter: float = image_ops.IMAGENET_JITTER[0],
) -> dict[str, np.ndarray]:
  """Host half of ``imagenet_device``: crops in a fixed buffer + the per-record draws.

  Record ``i`` reads row ``i`` of ``record_uniforms(seed, positions, IMAGENET_TRAIN_DRAWS)``
  with the layout of ``image_ops.imagenet_train``: crop box, flip, jitter factors, order.

  Args:
    images_list: B decoded images (H_i, W_i, C) uint8, sizes may differ, same C.
    positions: (B,) global positions of the records in the sample stream.
    seed: augmentation seed.
    size: output side of the device half (`resize_flip_jitter`); the buffer side is 2 x size.
    jitter: the ColorJitter strength (0: factors of exactly 1, which the blends of
      `resize_flip_jitter` leave unchanged).

  Returns:
    ``image`` (B, S, S, C) uint8, zero outside each crop; ``crop_hw`` (B, 2) int32, the
    crop's valid height and width; ``flip`` (B,) bool; ``jitter`` (B, 3) float32,
    brightness, contrast and saturation factors; ``jitter_order`` (B, 3) int32, the
    adjustments in the order to apply (0 brightness, 1 contrast, 2 saturation).
  """

  images = image_ops.check_image_list(images_list)
  positions = np.asarray(positions)
  if positions.shape != (len(images),):
    raise ValueError(f"positions must have shape ({len(images)},), got {positions.shape}.")
  size = image_ops.check_size(size, "size")
  side = buffer_side(size)
  u = record_uniforms(seed, positions, image_ops.IMAGENET_TRAIN_DRAWS)
  rrc = image_ops.RRC_DRAWS  # Layout: crop, flip, jitter factors, jitter order keys.
  jit_at = rrc + image_ops.FLIP_DRAWS
  buf = np.zeros((len(images), side, side, images[0].shape[2]), np.uint8)
  crop_hw = np.empty((len(images), 2), np.int32)
  for i, (image, row) in enumerate(zip(images, u, strict=True)):
    box = image_ops.random_resized_crop_params(image.shape[0], image.shape[1], row[:rrc])
    crop = _fit_crop(image, box, side)
    h, w = crop.shape[:2]
    buf[i, :h, :w] = crop
    crop_hw[i] = h, w
  strengths = np.full(3, float(jitter), np.float64)
  lo = np.maximum(0.0, 1.0 - strengths)
  # As image_ops._jitter: the factor in float64, then float32 as Image.blend takes it.
  factors = lo + (1.0 + strengths - lo) * u[:, jit_at : jit_at + 3]
  order = np.argsort(u[:, jit_at + 3 : jit_at + 6], axis=1, kind="stable")
  return {
    "image": buf,
    "crop_hw": crop_hw,
    "flip": u[:, rrc] < 0.5,
    "jitter": factors.astype(np.float32),
    "jitter_order": order.astype(np.int32),
  }


# -------------------------------------------------------------------------- device


def resize_weights(lengths: jax.Array, side: int, size: int) -> jax.Array:
  """(B, size, side) float32 weights of Pillow's antialiased bilinear resize.

  Row ``o`` of image ``b`` resamples a signal whose first ``lengths[b]`` of ``side``
  samples are valid to output sample ``o`` of ``size``: the triangle filter centred on
  ``(o + 0.5) * scale`` with support ``max(scale, 1)``, ``scale = length / size``,
  normalised over the valid samples (the padding gets weight exactly 0), then rounded
  to Pillow's 22-bit fixed point.
  """
  n = lengths.astype(jnp.float32)[:, None, None]
  scale = n / size
  support = jnp.maximum(scale, 1.0)
  centre = (jnp.arange(size, dtype=jnp.float32)[None, :, None] + 0.5) * scale
  src = jnp.arange(side, dtype=jnp.float32)[None, None, :]
  w = jnp.maximum(0.0, 1.0 - jnp.abs((src - centre + 0.5) / support))
  w = jnp.where(src < n, w, 0.0)
  w = w / jnp.maximum(w.sum(-1, keepdims=True), 1e-30)
  one = float(1 << _PRECISION_BITS)
  return jnp.floor(0.5 + w * one) / one


def _round_u8(x: jax.Array) -> jax.Array:
  return jnp.clip(jnp.floor(x + 0.5), 0.0, 255.0)


def _gray(x: jax.Array) -> jax.Array:
  """Pillow's "L": (19595 R + 38470 G + 7471 B + 2^15) >> 16, exact in float32."""
  if x.shape[-1] == 1:
    return x
  luma = 19595.0 * x[..., 0] + 38470.0 * x[..., 1] + 7471.0 * x[..., 2] + 32768.0
  return jnp.floor(luma / 65536.0)[..., None]


def _blend(degenerate: jax.Array, x: jax.Array, factor: jax.Array) -> jax.Array:
  """Pillow's Image.blend: trunc(d + f * (x - d)) clipped to [0, 255], float32."""
  return jnp.floor(jnp.clip(degenerate + factor * (x - degenerate), 0.0, 255.0))


def color_jitter(x: jax.Array, factors: jax.Array, order: jax.Array) -> jax.Array:
  """``image_ops.color_jitter`` on a batch of integral float32 images (B, H, W, C).

  Args:
    x: (B, H, W, C) float32 holding integers in [0, 255].
    factors: (B, 3) brightness, contrast and saturation factors.
    order: (B, 3) int, the adjustments in the order to apply.
  """
  b = x.shape[0]
  f = factors.astype(jnp.float32)[:, :, None, None, None]
  for k in range(3):
    op = order[:, k][:, None, None, None]
    bright = _blend(jnp.zeros_like(x), x, f[:, 0])
    gray = _gray(x)
    # ImageEnhance.Contrast's mean: int(mean(L) + 0.5), in exact integer arithmetic.
    total = gray.reshape(b, -1).astype(jnp.int32).sum(-1)
    count = gray[0].size
    mean = ((2 * total + count) // (2 * count)).astype(jnp.float32)[:, None, None, None]
    contrast = _blend(jnp.broadcast_to(mean, x.shape), x, f[:, 1])
    if x.shape[-1] == 1:
      saturation = x  # A grey image is its own saturation degenerate.
    else:
      saturation = _blend(jnp.broadcast_to(gray, x.shape), x, f[:, 2])
    x = jnp.where(op == 0, bright, jnp.where(op == 1, contrast, saturation))
  return x


def resize_flip_jitter(batch, size: int | None = None) -> jax.Array:
  """Device half of ``imagenet_device``: resize each crop, flip, jitter.

  Args:
    batch: a `prepare_batch` dict (as jax or numpy arrays).
    size: output side; default the buffer side / `BUFFER_FACTOR`.

  Returns:
    (B, size, size, C) uint8, ready for ``ltjax.train.steps.normalize``.
  """
  images = batch["image"]
  side = images.shape[1]
  if images.shape[2] != side:
    raise ValueError(f"the buffer must be square, got {images.shape}.")
  size = output_size(side) if size is None else int(size)
  hw = jnp.asarray(batch["crop_hw"])
  wy = resize_weights(hw[:, 0], side, size)
  wx = resize_weights(hw[:, 1], side, size)
  # A flip after the resize is the resize with the output columns reversed.
  wx = jnp.where(jnp.asarray(batch["flip"])[:, None, None], wx[:, ::-1], wx)
  hi = jax.lax.Precision.HIGHEST
  x = images.astype(jnp.float32)
  x = _round_u8(jnp.einsum("bhwc,bow->bhoc", x, wx, precision=hi))  # Horizontal pass first.
  x = _round_u8(jnp.einsum("boh,bhpc->bopc", wy, x, precision=hi))
  x = color_jitter(x, jnp.asarray(batch["jitter"]), jnp.asarray(batch["jitter_order"]))
  return x.astype(jnp.uint8)
