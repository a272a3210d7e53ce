"""ImageNet-size augmentations on single decoded images, driven by per-record uniforms.

These are numpy/PIL versions of the torchvision transforms used by the reference
long-tailed recipes (facebookresearch/classifier-balancing, OLTR) for ImageNet-LT and
Places-LT:

  train: RandomResizedCrop(224) -> RandomHorizontalFlip() -> ColorJitter(0.4, 0.4, 0.4)
  eval:  Resize(256) -> CenterCrop(224)

All randomness comes from an explicit 1-D array ``u`` of uniforms in [0, 1), normally a
row of ``ltjax.data.augment.record_uniforms(seed, positions, IMAGENET_TRAIN_DRAWS)``. A
record is therefore augmented identically whatever the batch size, process count or
thread order. Nothing here touches numpy's global random state or torch.

Images are (H, W, C) uint8 arrays with C = 1 (grayscale) or C = 3 (RGB). Resizing uses
PIL's bilinear filter, which (like torchvision on PIL images) antialiases when
downsampling.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ltjax.data.augment import record_uniforms

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

# ITU-R 601-2 luma weights, as in PIL's convert("L") and torchvision's rgb_to_grayscale.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


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


def _check_size(value, name: str) -> int:
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


def _to_pil(image: np.ndarray) -> Image.Image:
  return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


def _from_pil(img: Image.Image, channels: int) -> np.ndarray:
  out = np.array(img, dtype=np.uint8)  # A writable copy (asarray would be read-only).
  return out[:, :, None] if channels == 1 else out


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear (antialiased) resize of an (H, W, C) uint8 image to (height, width)."""
  if image.shape[:2] == (height, width):
    return image
  img = _to_pil(image).resize((width, height), Image.Resampling.BILINEAR)
  return _from_pil(img, image.shape[2])


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
  height = _check_size(height, "height")
  width = _check_size(width, "width")
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
  size = _check_size(size, "size")
  top, left, h, w = random_resized_crop_params(image.shape[0], image.shape[1], u, scale, ratio)
  return _resize(image[top : top + h, left : left + w], size, size)


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


def _grayscale(x: np.ndarray) -> np.ndarray:
  """(H, W, 1) float32 luma of an (H, W, C) float32 image."""
  if x.shape[2] == 1:
    return x
  return (x @ _LUMA)[:, :, None]


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
  0 skips its adjustment. With ``x`` the image and ``f`` the factor:

  * brightness: ``x * f``;
  * contrast: ``m + f * (x - m)`` with ``m`` the mean of the grayscale image;
  * saturation: ``g + f * (x - g)`` with ``g`` the per-pixel grayscale (ITU-R 601-2 luma,
    ``0.299 R + 0.587 G + 0.114 B``); a no-op for 1-channel images.

  The arithmetic is in float32. Like torchvision, each adjustment clips to [0, 255], but
  the result is rounded to uint8 only once, at the end; torchvision quantizes to uint8
  after every adjustment (and PIL uses an integer grayscale and contrast mean), so outputs
  can differ from torchvision's by about one grey level per adjustment.

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
  strengths = (brightness, contrast, saturation)
  for name, s in zip(("brightness", "contrast", "saturation"), strengths, strict=True):
    if not (isinstance(s, int | float | np.floating | np.integer) and math.isfinite(s) and s >= 0):
      raise ValueError(f"{name} must be a finite number >= 0, got {s!r}.")
  factors = [
    max(0.0, 1.0 - s) + (1.0 + s - max(0.0, 1.0 - s)) * u[i] for i, s in enumerate(strengths)
  ]
  active = [i for i, s in enumerate(strengths) if s > 0 and not (i == 2 and image.shape[2] == 1)]
  if not active:
    return image

  x = image.astype(np.float32)
  for op in np.argsort(u[3:6], kind="stable"):
    if op not in active:
      continue
    f = np.float32(factors[op])
    if op == 0:
      x = x * f
    elif op == 1:
      m = np.float32(_grayscale(x).mean(dtype=np.float64))
      x = m + f * (x - m)
    else:
      g = _grayscale(x)
      x = g + f * (x - g)
    np.clip(x, 0.0, 255.0, out=x)
  return np.rint(x).astype(np.uint8)


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
  size = _check_size(size, "size")
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
  size = _check_size(size, "size")
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


def imagenet_train(image: np.ndarray, u, size: int = 224) -> np.ndarray:
  """RandomResizedCrop(size) -> RandomHorizontalFlip -> ColorJitter(0.4, 0.4, 0.4).

  Layout of ``u``: ``u[:RRC_DRAWS]`` crop, ``u[RRC_DRAWS]`` flip, then `JITTER_DRAWS`
  for the jitter; `IMAGENET_TRAIN_DRAWS` (= 47) in all.

  Args:
    image: (H, W, C) uint8.
    u: 1-D array of at least `IMAGENET_TRAIN_DRAWS` uniforms in [0, 1).
    size: output height and width.

  Returns:
    (size, size, C) uint8.
  """
  u = _check_uniforms(u, IMAGENET_TRAIN_DRAWS)
  out = random_resized_crop(image, u[:RRC_DRAWS], size)
  out = horizontal_flip(out, u[RRC_DRAWS])
  return color_jitter(out, u[RRC_DRAWS + FLIP_DRAWS :])


def _check_image_list(images: Sequence[np.ndarray]) -> list[np.ndarray]:
  images = [_check_image(im, f"images[{i}]") for i, im in enumerate(images)]
  if not images:
    raise ValueError("images must hold at least one image.")
  channels = {im.shape[2] for im in images}
  if len(channels) > 1:
    raise ValueError(f"images must all have the same channel count, got {sorted(channels)}.")
  return images


def imagenet_train_batch(
  images_list: Sequence[np.ndarray], positions, seed: int, size: int = 224
) -> np.ndarray:
  """`imagenet_train` on each image, with per-record randomness.

  Record ``i`` uses row ``i`` of ``record_uniforms(seed, positions, IMAGENET_TRAIN_DRAWS)``,
  so its output depends only on (seed, positions[i], image), not on the batch it is in.

  Args:
    images_list: B images (H_i, W_i, C) uint8, sizes may differ, same C.
    positions: (B,) global positions of the records in the sample stream.
    seed: augmentation seed.
    size: output height and width.

  Returns:
    (B, size, size, C) uint8.
  """
  images = _check_image_list(images_list)
  positions = np.asarray(positions)
  if positions.shape != (len(images),):
    raise ValueError(f"positions must have shape ({len(images)},), got {positions.shape}.")
  size = _check_size(size, "size")
  u = record_uniforms(seed, positions, IMAGENET_TRAIN_DRAWS)
  return np.stack([imagenet_train(im, row, size) for im, row in zip(images, u, strict=True)])


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
  images = _check_image_list(images_list)
  return np.stack([eval_resize_center_crop(im, resize, crop) for im in images])


# ----------------------------------------------------------------------- decoding


def decode_image(data: bytes, channels: int = 3, min_size: int | None = None) -> np.ndarray:
  """Decodes an encoded image (JPEG, PNG, ... anything PIL reads) to a uint8 array.

  With ``min_size``, JPEGs are decoded at a reduced scale (1/2, 1/4 or 1/8, via PIL's
  ``draft``) chosen so both sides, hence the shorter side, stay >= ``min_size`` (unless
  the image is already smaller). Decoding large JPEGs for 224-pixel training is then much
  faster; pixels differ slightly from a full decode followed by a resize. Other formats
  ignore ``min_size``.

  Args:
    data: the encoded bytes.
    channels: 3 for RGB or 1 for grayscale (ITU-R 601-2 luma).
    min_size: optional lower bound on the decoded shorter side, enabling draft mode.

  Returns:
    (H, W, channels) uint8.

  Raises:
    ValueError: on bad arguments, or "cannot decode image: ..." if PIL fails to decode
      (chained from PIL's error).
  """
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
  if min_size is not None:
    min_size = _check_size(min_size, "min_size")
  if not isinstance(data, bytes | bytearray | memoryview):
    raise ValueError(f"data must be bytes, got {type(data).__name__}.")
  mode = "RGB" if channels == 3 else "L"
  try:
    with Image.open(io.BytesIO(data)) as img:
      if min_size is not None:
        img.draft(mode, (min_size, min_size))
      img = img.convert(mode)  # Forces the full decode inside the try.
  except Exception as e:  # PIL raises OSError, SyntaxError, struct.error, ... on bad data.
    raise ValueError(f"cannot decode image: {e}") from e
  return _from_pil(img, channels)
