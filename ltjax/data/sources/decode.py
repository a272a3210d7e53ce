"""Decoding stored images (JPEG, PNG, ... anything Pillow reads) to uint8 arrays: what every
source of encoded images (split lists over an image tree, packed shards, TFDS records)
calls, so the same bytes give the same pixels from every source.

JPEGs are decoded by libjpeg-turbo through simplejpeg, straight into a numpy array (the
same pixels as Pillow, faster: BENCHMARKS.md has the comparison); everything else (PNG,
..., and the JPEGs libjpeg-turbo's strict mode refuses) by Pillow.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from ltjax.data.pp.image_ops import check_size, from_pil

#: DCT scale-downs libjpeg offers that decode faster than full size (others are slower).
_JPEG_SCALES = (8, 4, 2, 1)


def _is_jpeg(data) -> bool:
  return bytes(data[:2]) == b"\xff\xd8"


def jpeg_scale(height: int, width: int, min_size: int | None) -> int:
  """The DCT scale-down 1, 2, 4 or 8 of Pillow's ``draft(mode, (min_size, min_size))``.

  The largest of them not above ``min(height // min_size, width // min_size)``, so both
  decoded sides, ``ceil(side / scale)``, stay >= min_size (1 if the image is smaller).
  """
  if min_size is None:
    return 1
  limit = min(height // min_size, width // min_size)
  return next(s for s in _JPEG_SCALES if s <= max(limit, 1))


def _decode_jpeg(data, channels: int, height: int, width: int, scale: int) -> np.ndarray:
  """libjpeg-turbo decode at 1/scale; ValueError on anything its strict mode refuses."""
  out = simplejpeg.decode_jpeg(
    data,
    "RGB" if channels == 3 else "GRAY",
    min_height=-(-height // scale),
    min_width=-(-width // scale),
  )
  return out.reshape(out.shape[0], out.shape[1], channels)


def _decode_pil(data, channels: int, min_size: int | None) -> np.ndarray:
  mode = "RGB" if channels == 3 else "L"
  try:
    with Image.open(io.BytesIO(data)) as img:
      if min_size is not None:
        img.draft(mode, (min_size, min_size))
      img = img.convert(mode)  # Forces the full decode inside the try.
  except UnidentifiedImageError as e:  # Its message names an anonymous BytesIO: say what.
    raise ValueError(
      f"cannot decode image: not a format PIL reads ({len(data)} bytes starting "
      f"{bytes(data[:8])!r})"
    ) from e
  except Exception as e:  # PIL raises OSError, SyntaxError, struct.error, ... on bad data.
    raise ValueError(f"cannot decode image: {e}") from e
  return from_pil(img)


def _check_decode_args(data, channels: int, min_size: int | None) -> int | None:
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
  if not isinstance(data, bytes | bytearray | memoryview):
    raise ValueError(f"data must be bytes, got {type(data).__name__}.")
  return None if min_size is None else check_size(min_size, "min_size")


def decode_image(data: bytes, channels: int = 3, min_size: int | None = None) -> np.ndarray:
  """Decodes an encoded image (JPEG, PNG, ... anything PIL reads) to a uint8 array.

  JPEGs go to libjpeg-turbo (simplejpeg) in strict mode; what it refuses (other formats,
  and JPEGs with libjpeg warnings, which Pillow decodes) goes to Pillow, whose error is
  reported if it fails too. Both decode a JPEG to the same pixels. Grayscale output of a
  colour JPEG is its luma channel (Y).

  With ``min_size``, JPEGs are decoded at a reduced scale (1/2, 1/4 or 1/8, see
  `jpeg_scale`) chosen so both sides stay >= ``min_size`` (unless the image is already
  smaller), as Pillow's ``draft`` does. Decoding large JPEGs for 224-pixel evaluation is
  then much faster; pixels differ slightly from a full decode followed by a resize. Other
  formats ignore ``min_size``.

  Args:
    data: the encoded bytes.
    channels: 3 for RGB or 1 for grayscale (ITU-R 601-2 luma).
    min_size: optional lower bound on the decoded shorter side, enabling scaled decoding.

  Returns:
    (H, W, channels) uint8, writable.

  Raises:
    ValueError: on bad arguments, or "cannot decode image: ..." if the image cannot be
      decoded (chained from PIL's error).
  """
  min_size = _check_decode_args(data, channels, min_size)
  if _is_jpeg(data):
    try:
      height, width, _, _ = simplejpeg.decode_jpeg_header(data)
      return _decode_jpeg(data, channels, height, width, jpeg_scale(height, width, min_size))
    except ValueError:
      pass  # Pillow decodes what strict libjpeg-turbo refuses, or names the error.
  return _decode_pil(data, channels, min_size)
