"""ImageNet-size augmentations on single images, driven by per-record uniforms.

These reproduce the torchvision transforms used by the reference long-tailed recipes
(facebookresearch/classifier-balancing, OLTR) for ImageNet-LT and Places-LT:

  train: RandomResizedCrop(224) -> RandomHorizontalFlip() -> ColorJitter(0.4, 0.4, 0.4)
  eval:  Resize(256) -> CenterCrop(224)
  eval, LIFT's test-time ensemble (shijxcs/LIFT, tte_mode="fivecrop"):
         Resize(224 + 24) -> FiveCrop(224)

The references apply them to PIL images, so torchvision runs Pillow's operations: crop
then bilinear resize (antialiased when downsampling), ``transpose`` for the flip, and
``ImageEnhance`` for the jitter (each adjustment a ``blend`` with a degenerate image,
truncated to uint8). This module runs the same Pillow operations, so its outputs are
those of torchvision on the same decoded image and the same random draws.

All randomness comes from an explicit 1-D array ``u`` of uniforms in [0, 1), normally a
row of ``ltjax.data.pp.rng.record_uniforms(seed, positions, IMAGENET_TRAIN_DRAWS)``. A
record is therefore augmented identically whatever the batch size, process count or
thread order. Nothing here touches numpy's global random state or torch.

Images are (H, W, C) uint8 arrays with C = 1 (grayscale) or C = 3 (RGB), as the sources
decode them (``ltjax.data.sources.decode``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ltjax.data.pp.rng import record_uniforms

#: Attempts made by `random_resized_crop` before falling back to a central crop.
RRC_ATTEMPTS = 10
#: Uniforms per attempt: area fraction, log aspect ratio, top offset, left offset.
RRC_DRAWS_PER_ATTEMPT = 4
#: Uniforms consumed by `random_resized_crop`.
RRC_DRAWS = RRC_ATTEMPTS * RRC_DRAWS_PER_ATTEMPT
#: Uniforms consumed by `horizontal_flip`.
FLIP_DRAWS = 1
#: Uniforms consumed by `color_jitter`: three factors, then three sort keys for the order.
JITTER_DRAWS = 6
#: Uniforms consumed by `imagenet_train`: crop, then flip, then jitter, in that layout.
IMAGENET_TRAIN_DRAWS = RRC_DRAWS + FLIP_DRAWS + JITTER_DRAWS
#: Colour-jitter strengths of the reference recipes (brightness, contrast, saturation).
IMAGENET_JITTER = (0.4, 0.4, 0.4)


# ----------------------------------------------------------------------------- helpers


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] not in (1, 3):
    raise ValueError(f"{name} must have shape (H, W, C) with C = 1 or 3, got {image.shape}.")
  if image.dtype != np.uint8:
    raise ValueError(f"{name} must be uint8, got {image.dtype}.")
  if image.shape[0] < 1 or image.shape[1] < 1:
    raise ValueError(f"{name} must be non-empty, got shape {image.shape}.")
  return image


def check_size(value, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}.")
  return int(value)


def _check_uniforms(u, needed: int, name: str = "u") -> np.ndarray:
  u = np.asarray(u, dtype=np.float64)
  if u.ndim != 1 or u.shape[0] < needed:
    raise ValueError(f"{name} must be a 1-D array of at least {needed} uniforms, got {u.shape}.")
  u = u[:needed]
  if not np.all((u >= 0.0) & (u <= 1.0)):
    raise ValueError(f"{name} must hold uniforms in [0, 1].")
  return u


def _check_range(value, name: str, *, positive: bool) -> tuple[float, float]:
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a (min, max) pair, got {value!r}.") from None
  if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
    raise ValueError(f"{name} must be a finite (min, max) pair with min <= max, got {value!r}.")
  if positive and lo <= 0.0:
    raise ValueError(f"{name} must be positive, got {value!r}.")
  if not positive and lo < 0.0:
    raise ValueError(f"{name} must be non-negative, got {value!r}.")
  return lo, hi


def _check_strengths(brightness, contrast, saturation) -> tuple[float, float, float]:
  strengths = (brightness, contrast, saturation)
  for name, s in zip(("brightness", "contrast", "saturation"), strengths, strict=True):
    if not (isinstance(s, int | float | np.floating | np.integer) and math.isfinite(s) and s >= 0):
      raise ValueError(f"{name} must be a finite number >= 0, got {s!r}.")
  return tuple(float(s) for s in strengths)


def _to_pil(image: np.ndarray) -> Image.Image:
  """A PIL copy of an (H, W, C) uint8 array, which may be a strided view (a crop)."""
  return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


def from_pil(img: Image.Image) -> np.ndarray:
  out = np.array(img, dtype=np.uint8)  # A writable copy (asarray would be read-only).
  return out[:, :, None] if out.ndim == 2 else out


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear (antialiased) resize of an (H, W, C) uint8 image to (height, width)."""
  if image.shape[:2] == (height, width):
    return image
  return from_pil(_to_pil(image).resize((width, height), Image.Resampling.BILINEAR))


def _round_half_even(x: float) -> int:
  # Python's round(), as torchvision uses; kept explicit because np.round on arrays differs.
  return int(round(x))


# ---------------------------------------------------------------------- random crops


def random_resized_crop_params(
  height: int,
  width: int,
  u,
  scale: tuple[float, float] = (0.08, 1.0),
  ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
  """The crop box chosen by `random_resized_crop` (torchvision's ``get_params``).

  Attempt ``k`` (of `RRC_ATTEMPTS`) reads ``u[4k : 4k + 4]``: an area fraction uniform in
  ``scale``, a log aspect ratio uniform in ``log(ratio)``, then the top and left offsets,
  uniform over the valid positions. The first attempt whose box fits in the image wins;
  if none does, the result is the largest central box whose aspect ratio is clamped to
  ``ratio`` (the whole image if its ratio is already in range).

  Args:
    height: image height in pixels.
    width: image width in pixels.
    u: 1-D array of at least `RRC_DRAWS` uniforms in [0, 1).
    scale: (min, max) fraction of the image area to crop.
    ratio: (min, max) aspect ratio (width / height) of the crop.

  Returns:
    (top, left, crop_height, crop_width).

  Raises:
    ValueError: on a non-positive image size, too few uniforms or invalid ranges.
  """
  height = check_size(height, "height")
  width = check_size(width, "width")
  u = _check_uniforms(u, RRC_DRAWS)
  scale_lo, scale_hi = _check_range(scale, "scale", positive=False)
  ratio_lo, ratio_hi = _check_range(ratio, "ratio", positive=True)

  area = height * width
  log_lo, log_hi = math.log(ratio_lo), math.log(ratio_hi)
  for attempt in range(RRC_ATTEMPTS):
    u_area, u_ratio, u_top, u_left = u[attempt * 4 : attempt * 4 + 4]
    target_area = area * (scale_lo + (scale_hi - scale_lo) * u_area)
    aspect = math.exp(log_lo + (log_hi - log_lo) * u_ratio)
    w = _round_half_even(math.sqrt(target_area * aspect))
    h = _round_half_even(math.sqrt(target_area / aspect))
    if 0 < w <= width and 0 < h <= height:
      top = min(int(u_top * (height - h + 1)), height - h)
      left = min(int(u_left * (width - w + 1)), width - w)
      return top, left, h, w

  # Fallback: central crop with the aspect ratio clamped to the allowed range.
  in_ratio = width / height
  if in_ratio < ratio_lo:
    w = width
    h = min(max(_round_half_even(w / ratio_lo), 1), height)
  elif in_ratio > ratio_hi:
    h = height
    w = min(max(_round_half_even(h * ratio_hi), 1), width)
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def crop_to_pil(image: np.ndarray, top: int, left: int, h: int, w: int) -> Image.Image:
  """The crop as a PIL image, copying only the crop's pixels, once."""
  if image.shape[2] == 1 or not image.flags.c_contiguous:
    return _to_pil(image[top : top + h, left : left + w])
  width = image.shape[1]
  pixels = memoryview(image.reshape(-1))[(top * width + left) * 3 :]
  return Image.frombuffer("RGB", (w, h), pixels, "raw", "RGB", width * 3, 1)


def _crop_resize(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> Image.Image:
  """torchvision's ``resized_crop`` on PIL: crop ``box``, then bilinear resize to size^2."""
  img = crop_to_pil(image, *box)
  if img.size == (size, size):
    return img
  return img.resize((size, size), Image.Resampling.BILINEAR)


def random_resized_crop(
  image: np.ndarray,
  u,
  size: int,
  scale: tuple[float, float] = (0.08, 1.0),
  ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
  """torchvision ``RandomResizedCrop(size, scale, ratio)`` with explicit randomness.

  The box is chosen by `random_resized_crop_params` (up to 10 attempts, then a central
  fallback), cropped, and resized to ``size x size`` with PIL's bilinear filter.

  Args:
    image: (H, W, C) uint8.
    u: 1-D array of at least `RRC_DRAWS` (= 40) uniforms in [0, 1); only the first
      `RRC_DRAWS` are read.
    size: output height and width.
    scale: (min, max) fraction of the image area to crop.
    ratio: (min, max) aspect ratio (width / height) of the crop.

  Returns:
    (size, size, C) uint8.

  Raises:
    ValueError: on a malformed image, size, uniforms or ranges.
  """
  image = _check_image(image)
  size = check_size(size, "size")
  box = random_resized_crop_params(image.shape[0], image.shape[1], u, scale, ratio)
  return from_pil(_crop_resize(image, box, size))


def horizontal_flip(image: np.ndarray, u0: float) -> np.ndarray:
  """Mirrors the image left-right when ``u0 < 0.5`` (probability 1/2).

  Args:
    image: (H, W, C) uint8.
    u0: one uniform in [0, 1).

  Returns:
    (H, W, C) uint8; the input itself when not flipped.
  """
  image = _check_image(image)
  u0 = float(u0)
  if not 0.0 <= u0 <= 1.0:
    raise ValueError(f"u0 must be a uniform in [0, 1], got {u0}.")
  return np.ascontiguousarray(image[:, ::-1]) if u0 < 0.5 else image


# ---------------------------------------------------------------------- color jitter


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


def _blend(degenerate: Image.Image, img: Image.Image, factor: float) -> Image.Image:
  # ImageEnhance's enhance(): trunc(d + f * (x - d)) in float32, clipped to [0, 255].
  return Image.blend(degenerate, img, factor)


def _gray_mean(img: Image.Image) -> int:
  """ImageEnhance.Contrast's mean: int(mean of the "L" image + 0.5)."""
  hist = np.asarray((img if img.mode == "L" else img.convert("L")).histogram(), np.int64)
  return int(int(hist @ np.arange(256)) / int(hist.sum()) + 0.5)


def _jitter(img: Image.Image, u: np.ndarray, strengths: tuple[float, float, float]) -> Image.Image:
  """`color_jitter` on a PIL image ("L" or "RGB"), ``u`` already checked."""
  for op in np.argsort(u[3:6], kind="stable"):
    s = strengths[op]
    if s == 0.0 or (op == 2 and img.mode == "L"):
      continue  # A grey image is its own saturation degenerate: a no-op.
    lo = max(0.0, 1.0 - s)
    factor = lo + (1.0 + s - lo) * float(u[op])
    if op == 0:
      degenerate = Image.new(img.mode, img.size, 0)
    elif op == 1:
      mean = _gray_mean(img)
      degenerate = Image.new(img.mode, img.size, mean if img.mode == "L" else (mean,) * 3)
    else:
      degenerate = img.convert("L").convert(img.mode)
    img = _blend(degenerate, img, factor)
  return img


def color_jitter(
  image: np.ndarray,
  u,
  brightness: float = 0.4,
  contrast: float = 0.4,
  saturation: float = 0.4,
) -> np.ndarray:
  """torchvision ``ColorJitter(brightness, contrast, saturation)`` with explicit randomness.

  Factors are ``u[0..2]`` mapped uniformly onto ``[max(0, 1 - s), 1 + s]`` for strength
  ``s`` (brightness, contrast, saturation in that order); the three adjustments are applied
  in the order given by sorting ``u[3..5]`` (a uniformly random permutation). A strength of
  0 skips its adjustment. As torchvision on PIL images (``ImageEnhance``), each adjustment
  is ``trunc(d + f * (x - d))`` clipped to [0, 255], for ``x`` the image, ``f`` the factor
  and ``d`` the degenerate image:

  * brightness: ``d = 0``;
  * contrast: ``d = int(m + 0.5)`` with ``m`` the mean of the grayscale image;
  * saturation: ``d`` the per-pixel grayscale; a no-op for 1-channel images.

  Grayscale is Pillow's ITU-R 601-2 luma, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``.

  Args:
    image: (H, W, C) uint8.
    u: 1-D array of at least `JITTER_DRAWS` (= 6) uniforms in [0, 1).
    brightness: brightness strength, >= 0.
    contrast: contrast strength, >= 0.
    saturation: saturation strength, >= 0.

  Returns:
    (H, W, C) uint8.

  Raises:
    ValueError: on a malformed image or uniforms, or a negative or non-finite strength.
  """
  image = _check_image(image)
  u = _check_uniforms(u, JITTER_DRAWS)
  strengths = _check_strengths(brightness, contrast, saturation)
  if not any(strengths[: 2 if image.shape[2] == 1 else 3]):
    return image
  return from_pil(_jitter(_to_pil(image), u, strengths))


# -------------------------------------------------------------- deterministic resizing


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
  """Resizes so the shorter side is ``size``, keeping the aspect ratio (``Resize(size)``).

  As in torchvision, the longer side becomes ``int(size * long / short)`` (truncated).

  Args:
    image: (H, W, C) uint8.
    size: target length of the shorter side.

  Returns:
    (H', W', C) uint8 with min(H', W') == size; the input itself if already that size.
  """
  image = _check_image(image)
  size = check_size(size, "size")
  h, w = image.shape[:2]
  if h <= w:
    new_h, new_w = size, int(size * w / h)
  else:
    new_h, new_w = int(size * h / w), size
  return _resize(image, new_h, new_w)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """The central ``size x size`` crop (torchvision ``CenterCrop(size)``).

  The offset is ``round((H - size) / 2)`` (Python rounding, as torchvision). A side shorter
  than ``size`` is first zero-padded to ``size``, as torchvision does.

  Args:
    image: (H, W, C) uint8.
    size: output height and width.

  Returns:
    (size, size, C) uint8.
  """
  image = _check_image(image)
  size = check_size(size, "size")
  h, w = image.shape[:2]
  if h < size or w < size:
    pad_h, pad_w = max(size - h, 0), max(size - w, 0)
    image = np.pad(image, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
    h, w = image.shape[:2]
  top = _round_half_even((h - size) / 2.0)
  left = _round_half_even((w - size) / 2.0)
  return image[top : top + size, left : left + size]


def eval_resize_center_crop(image: np.ndarray, resize: int = 256, crop: int = 224) -> np.ndarray:
  """``Resize(resize)`` then ``CenterCrop(crop)``: the ImageNet evaluation transform.

  Args:
    image: (H, W, C) uint8.
    resize: shorter side after resizing.
    crop: output height and width.

  Returns:
    (crop, crop, C) uint8.
  """
  return center_crop(resize_shorter(image, resize), crop)


# ---------------------------------------------------------------- full pipelines


def _flip_jitter(img: Image.Image, u: np.ndarray, jitter: float) -> Image.Image:
  """The flip and jitter of `imagenet_train` on its resized crop; ``u`` is its whole row."""
  if u[RRC_DRAWS] < 0.5:
    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  if not jitter:  # No ColorJitter in the recipe (its draws stay in the row, unused).
    return img
  return _jitter(img, u[RRC_DRAWS + FLIP_DRAWS :], (jitter,) * 3)


def _train_pil(image: np.ndarray, u: np.ndarray, size: int, jitter: float) -> Image.Image:
  box = random_resized_crop_params(image.shape[0], image.shape[1], u[:RRC_DRAWS])
  return _flip_jitter(_crop_resize(image, box, size), u, jitter)


def imagenet_train(
  image: np.ndarray, u, size: int = 224, jitter: float = IMAGENET_JITTER[0]
) -> np.ndarray:
  """RandomResizedCrop(size) -> RandomHorizontalFlip -> ColorJitter(jitter, jitter, jitter).

  Layout of ``u``: ``u[:RRC_DRAWS]`` crop, ``u[RRC_DRAWS]`` flip, then `JITTER_DRAWS`
  for the jitter; `IMAGENET_TRAIN_DRAWS` (= 47) in all. The result equals
  ``color_jitter(horizontal_flip(random_resized_crop(image, ...), ...), ...)``; this
  function just stays in Pillow between the steps.

  Args:
    image: (H, W, C) uint8.
    u: 1-D array of at least `IMAGENET_TRAIN_DRAWS` uniforms in [0, 1).
    size: output height and width.
    jitter: brightness, contrast and saturation strength (0.4 in the references'
      ImageNet-LT / Places-LT recipes; 0: no jitter, as their iNaturalist recipe).

  Returns:
    (size, size, C) uint8.
  """
  image = _check_image(image)
  size = check_size(size, "size")
  u = _check_uniforms(u, IMAGENET_TRAIN_DRAWS)
  return from_pil(_train_pil(image, u, size, _check_strengths(jitter, jitter, jitter)[0]))


def check_image_list(images: Sequence[np.ndarray]) -> list[np.ndarray]:
  images = [_check_image(im, f"images[{i}]") for i, im in enumerate(images)]
  if not images:
    raise ValueError("images must hold at least one image.")
  channels = {im.shape[2] for im in images}
  if len(channels) > 1:
    raise ValueError(f"images must all have the same channel count, got {sorted(channels)}.")
  return images


def imagenet_train_batch(
  images_list: Sequence[np.ndarray],
  positions,
  seed: int,
  size: int = 224,
  jitter: float = IMAGENET_JITTER[0],
) -> np.ndarray:
  """`imagenet_train` on each image, with per-record randomness.

  Record ``i`` uses row ``i`` of ``record_uniforms(seed, positions, IMAGENET_TRAIN_DRAWS)``,
  so its output depends only on (seed, positions[i], image), not on the batch it is in.

  Args:
    images_list: B images (H_i, W_i, C) uint8, sizes may differ, same C.
    positions: (B,) global positions of the records in the sample stream.
    seed: augmentation seed.
    size: output height and width.
    jitter: the ColorJitter strength (see `imagenet_train`).

  Returns:
    (B, size, size, C) uint8.
  """
  images = check_image_list(images_list)
  jitter = _check_strengths(jitter, jitter, jitter)[0]
  positions = np.asarray(positions)
  if positions.shape != (len(images),):
    raise ValueError(f"positions must have shape ({len(images)},), got {positions.shape}.")
  size = check_size(size, "size")
  u = record_uniforms(seed, positions, IMAGENET_TRAIN_DRAWS)
  out = np.empty((len(images), size, size, images[0].shape[2]), np.uint8)
  for i, (image, row) in enumerate(zip(images, u, strict=True)):
    out[i] = np.asarray(_train_pil(image, row, size, jitter)).reshape(out.shape[1:])
  return out


#: The crops of `five_crop`, in torchvision ``FiveCrop``'s order.
FIVE_CROPS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")


def five_crop(image: np.ndarray, size: int) -> np.ndarray:
  """The four corner and the central ``size x size`` crops (torchvision ``FiveCrop(size)``).

  In `FIVE_CROPS`'s order (top-left, top-right, bottom-left, bottom-right, centre); the
  centre crop is `center_crop`'s (offset ``round((H - size) / 2)``, as torchvision).

  Args:
    image: (H, W, C) uint8 with H, W >= size.
    size: crop height and width.

  Returns:
    (5, size, size, C) uint8.

  Raises:
    ValueError: a side of the image is shorter than ``size`` (as torchvision, which does
      not pad here).
  """
  image = _check_image(image)
  size = check_size(size, "size")
  h, w = image.shape[:2]
  if size > h or size > w:
    raise ValueError(f"five_crop: the {size}x{size} crops do not fit in a {h}x{w} image.")
  bottom, right = h - size, w - size
  corners = [(0, 0), (0, right), (bottom, 0), (bottom, right)]
  crops = [image[t : t + size, x : x + size] for t, x in corners]
  return np.stack([*crops, center_crop(image, size)])


def eval_resize_five_crop(image: np.ndarray, resize: int, crop: int) -> np.ndarray:
  """``Resize(resize)`` then ``FiveCrop(crop)``: LIFT's test-time ensemble (its
  ``tte_mode="fivecrop"``: ``resize = crop + expand``, expand 24 by default).

  The resize is `resize_shorter`'s: Pillow's bilinear filter (antialiased when it
  downsamples, interpolating when it upsamples), the longer side truncated, which is what
  torchvision's ``Resize(int)`` runs on the PIL images LIFT loads, so the crops are
  torchvision's pixel for pixel.

  Args:
    image: (H, W, C) uint8, any size (a smaller image is upsampled).
    resize: shorter side after resizing, >= crop.
    crop: crop height and width.

  Returns:
    (5, crop, crop, C) uint8 (`FIVE_CROPS`' order).
  """
  resize, crop = check_size(resize, "resize"), check_size(crop, "crop")
  if crop > resize:
    raise ValueError(f"five_crop: crop {crop} is larger than the resized shorter side {resize}.")
  return five_crop(resize_shorter(image, resize), crop)


def five_crop_batch(images_list: Sequence[np.ndarray], resize: int, crop: int) -> np.ndarray:
  """`eval_resize_five_crop` on each image.

  Args:
    images_list: B images (H_i, W_i, C) uint8, sizes may differ, same C.
    resize: shorter side after resizing, >= crop.
    crop: crop height and width.

  Returns:
    (B, 5, crop, crop, C) uint8.
  """
  images = check_image_list(images_list)
  return np.stack([eval_resize_five_crop(im, resize, crop) for im in images])


def imagenet_eval_batch(
  images_list: Sequence[np.ndarray], resize: int = 256, crop: int = 224
) -> np.ndarray:
  """`eval_resize_center_crop` on each image.

  Args:
    images_list: B images (H_i, W_i, C) uint8, sizes may differ, same C.
    resize: shorter side after resizing.
    crop: output height and width.

  Returns:
    (B, crop, crop, C) uint8.
  """
  images = check_image_list(images_list)
  return np.stack([eval_resize_center_crop(im, resize, crop) for im in images])
