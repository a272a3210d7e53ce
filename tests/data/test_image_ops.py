"""Tests for ltjax.data.image_ops."""

import io

import numpy as np
import pytest
from PIL import Image

from ltjax.data import image_ops
from ltjax.data.augment import record_uniforms


def random_image(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def smooth_image(h: int, w: int) -> np.ndarray:
  """A smooth RGB gradient, which JPEG reproduces closely."""
  y, x = np.mgrid[0:h, 0:w]
  return np.stack([255 * x / w, 255 * y / h, 128 + 0 * x], axis=-1).astype(np.uint8)


def encode(image: np.ndarray, fmt: str, **options) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buf, fmt, **options)
  return buf.getvalue()


def uniforms(n: int, seed: int = 0) -> np.ndarray:
  return record_uniforms(seed, np.array([0]), n)[0]


# ------------------------------------------------------------------- random_resized_crop


def test_draw_counts():
  assert image_ops.RRC_DRAWS == 40
  assert image_ops.JITTER_DRAWS == 6
  assert image_ops.IMAGENET_TRAIN_DRAWS == 40 + 1 + 6


@pytest.mark.parametrize("shape", [(50, 70, 3), (90, 40, 1)])
def test_random_resized_crop_shape(shape):
  out = image_ops.random_resized_crop(random_image(*shape), uniforms(40), 32)
  assert out.shape == (32, 32, shape[2]) and out.dtype == np.uint8


def test_random_resized_crop_full_square_is_plain_resize():
  image = random_image(60, 60)
  out = image_ops.random_resized_crop(image, uniforms(40), 24, scale=(1, 1), ratio=(1, 1))
  expected = np.asarray(Image.fromarray(image).resize((24, 24), Image.Resampling.BILINEAR))
  np.testing.assert_array_equal(out, expected)


def test_random_resized_crop_deterministic_and_varies():
  image = random_image(80, 100)
  u1, u2 = uniforms(40, seed=1), uniforms(40, seed=2)
  a = image_ops.random_resized_crop(image, u1, 32)
  np.testing.assert_array_equal(a, image_ops.random_resized_crop(image, u1.copy(), 32))
  assert not np.array_equal(a, image_ops.random_resized_crop(image, u2, 32))
  boxes = {image_ops.random_resized_crop_params(80, 100, uniforms(40, s)) for s in range(20)}
  assert len(boxes) == 20


def test_random_resized_crop_params_valid_boxes():
  for s in range(50):
    top, left, h, w = image_ops.random_resized_crop_params(37, 53, uniforms(40, s))
    assert 0 <= top and top + h <= 37 and 0 <= left and left + w <= 53 and h > 0 and w > 0
    area = h * w / (37 * 53)
    assert 0.05 < area <= 1.0 and 0.6 < w / h < 1.6


def test_random_resized_crop_first_attempt_mapping():
  u = np.zeros(40)
  u[:4] = [1.0 - 1e-12, 0.5, 0.0, 0.999]  # Area ~1, ratio 1, top 0, left at the end.
  assert image_ops.random_resized_crop_params(20, 30, u, scale=(0.5, 0.5)) == (0, 30 - 17, 17, 17)


def test_random_resized_crop_fallback_wide_image():
  # No crop of >= 8% of a 10 x 200 image has aspect ratio <= 4/3 and height <= 10.
  params = {image_ops.random_resized_crop_params(10, 200, uniforms(40, s)) for s in range(10)}
  assert params == {(0, (200 - 13) // 2, 10, 13)}
  image = np.broadcast_to(np.arange(200, dtype=np.uint8)[None, :, None], (10, 200, 3)).copy()
  out = image_ops.random_resized_crop(image, uniforms(40), 16)
  expected = Image.fromarray(image[:, 93:106]).resize((16, 16), Image.Resampling.BILINEAR)
  assert out.shape == (16, 16, 3)
  np.testing.assert_array_equal(out, np.asarray(expected))


def test_random_resized_crop_fallback_tall_image_and_in_range():
  assert image_ops.random_resized_crop_params(300, 10, np.full(40, 0.5)) == (
    (300 - 13) // 2,
    0,
    13,
    10,
  )
  # All attempts fail (scale > 1) on an image whose ratio is in range: the whole image.
  assert image_ops.random_resized_crop_params(30, 35, np.full(40, 0.5), scale=(2, 3)) == (
    0,
    0,
    30,
    35,
  )


@pytest.mark.parametrize(
  "kwargs",
  [
    {"size": 0},
    {"size": 2.5},
    {"scale": (0.5, 0.1)},
    {"scale": (-0.1, 1)},
    {"ratio": (0, 1)},
    {"ratio": (2, 1)},
    {"u": np.zeros(39)},
    {"u": np.full(40, 1.5)},
    {"image": np.zeros((8, 8, 3), np.float32)},
    {"image": np.zeros((8, 8, 2), np.uint8)},
    {"image": np.zeros((8, 8), np.uint8)},
  ],
)
def test_random_resized_crop_validation(kwargs):
  args = {"image": random_image(8, 8), "u": np.zeros(40), "size": 4} | kwargs
  with pytest.raises(ValueError):
    image_ops.random_resized_crop(**args)


# ------------------------------------------------------------------- flip and jitter


def test_horizontal_flip():
  image = random_image(5, 7)
  np.testing.assert_array_equal(image_ops.horizontal_flip(image, 0.49), image[:, ::-1])
  np.testing.assert_array_equal(image_ops.horizontal_flip(image, 0.5), image)
  with pytest.raises(ValueError):
    image_ops.horizontal_flip(image, -0.1)


@pytest.mark.parametrize("channels", [1, 3])
def test_color_jitter_zero_strength_is_identity(channels):
  image = random_image(16, 12, channels)
  for s in range(5):
    out = image_ops.color_jitter(image, uniforms(6, s), 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(out, image)


def test_color_jitter_factor_one_is_identity():
  # u = 0.5 puts every factor at the centre of [1 - s, 1 + s], i.e. 1.
  image = random_image(16, 12)
  u = np.array([0.5, 0.5, 0.5, 0.1, 0.7, 0.4])
  np.testing.assert_array_equal(image_ops.color_jitter(image, u), image)


def test_color_jitter_brightness_on_constant_image():
  image = np.full((4, 4, 3), 100, np.uint8)
  for u0, expected in [(0.0, 50), (0.3, 80), (0.8, 130), (1.0, 150)]:
    u = np.array([u0, 0.9, 0.1, 0.2, 0.5, 0.8])
    # Contrast and saturation leave a constant grey image unchanged whatever their factor.
    out = image_ops.color_jitter(image, u, brightness=0.5, contrast=0.4, saturation=0.4)
    np.testing.assert_array_equal(out, np.full_like(image, expected))
  out = image_ops.color_jitter(np.full((2, 2, 3), 200, np.uint8), np.full(6, 0.99), 0.4, 0, 0)
  np.testing.assert_array_equal(out, 255)  # Clipped.


def test_color_jitter_contrast_and_saturation():
  image = random_image(20, 20)
  gray = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  # Contrast factor 0 (u = 0 with strength 1): every pixel becomes the grayscale mean.
  out = image_ops.color_jitter(image, np.zeros(6), 0.0, 1.0, 0.0)
  np.testing.assert_array_equal(out, np.full_like(image, np.rint(gray.mean())))
  # Saturation factor 0: the grayscale image in all three channels.
  out = image_ops.color_jitter(image, np.zeros(6), 0.0, 0.0, 1.0)
  np.testing.assert_array_equal(out, np.repeat(np.rint(gray).astype(np.uint8)[..., None], 3, -1))


def test_color_jitter_order_comes_from_uniforms():
  image = random_image(20, 20)
  # Brightness x1.4 then contrast x0.6 vs the reverse: clipping makes them differ.
  first_brightness = np.array([1.0, 0.0, 0.5, 0.0, 0.5, 0.9])
  first_contrast = np.array([1.0, 0.0, 0.5, 0.5, 0.0, 0.9])
  a = image_ops.color_jitter(image, first_brightness, 0.4, 0.4, 0.0)
  b = image_ops.color_jitter(image, first_contrast, 0.4, 0.4, 0.0)
  assert not np.array_equal(a, b)


def test_color_jitter_grayscale_keeps_one_channel():
  image = random_image(10, 9, 1)
  out = image_ops.color_jitter(image, uniforms(6))
  assert out.shape == (10, 9, 1) and out.dtype == np.uint8


def test_color_jitter_validation():
  with pytest.raises(ValueError, match="brightness"):
    image_ops.color_jitter(random_image(4, 4), np.zeros(6), brightness=-0.1)
  with pytest.raises(ValueError):
    image_ops.color_jitter(random_image(4, 4), np.zeros(5))


# ------------------------------------------------------------------ resize and crops


@pytest.mark.parametrize(
  "shape, expected",
  [((30, 60, 3), (20, 40, 3)), ((45, 30, 1), (30, 20, 1)), ((7, 10, 3), (20, 28, 3))],
)
def test_resize_shorter_shape(shape, expected):
  assert image_ops.resize_shorter(random_image(*shape), 20).shape == expected


def test_center_crop_exact_content():
  image = np.arange(6 * 7 * 1, dtype=np.uint8).reshape(6, 7, 1)
  np.testing.assert_array_equal(image_ops.center_crop(image, 2), image[2:4, 2:4])
  np.testing.assert_array_equal(image_ops.center_crop(image, 3), image[2:5, 2:5])  # round(1.5)=2
  np.testing.assert_array_equal(image_ops.center_crop(image, 6), image[:, 0:6])  # round(0.5)=0


def test_center_crop_pads_small_images():
  image = np.full((2, 5, 3), 9, np.uint8)
  out = image_ops.center_crop(image, 4)
  assert out.shape == (4, 4, 3)
  np.testing.assert_array_equal(out[:, :, 0].sum(axis=1) > 0, [False, True, True, False])


def test_eval_resize_center_crop():
  image = random_image(50, 80)
  out = image_ops.eval_resize_center_crop(image, resize=32, crop=28)
  assert out.shape == (28, 28, 3)
  resized = np.asarray(Image.fromarray(image).resize((51, 32), Image.Resampling.BILINEAR))
  np.testing.assert_array_equal(out, resized[2:30, 12:40])


# ------------------------------------------------------------------------ batches


def batch_images(n: int = 6) -> list[np.ndarray]:
  return [random_image(40 + 7 * i, 70 - 5 * i, seed=i) for i in range(n)]


def test_imagenet_train_batch_deterministic():
  images = batch_images()
  a = image_ops.imagenet_train_batch(images, np.arange(6), seed=3, size=24)
  assert a.shape == (6, 24, 24, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, image_ops.imagenet_train_batch(images, np.arange(6), 3, 24))
  assert not np.array_equal(a, image_ops.imagenet_train_batch(images, np.arange(6), 4, 24))


def test_imagenet_train_batch_independent_of_batching():
  images = batch_images()
  whole = image_ops.imagenet_train_batch(images, np.arange(6), seed=5, size=24)
  parts = np.concatenate(
    [
      image_ops.imagenet_train_batch(images[:3], np.arange(3), seed=5, size=24),
      image_ops.imagenet_train_batch(images[3:], np.arange(3, 6), seed=5, size=24),
    ]
  )
  np.testing.assert_array_equal(whole, parts)
  u = record_uniforms(5, np.array([4]), image_ops.IMAGENET_TRAIN_DRAWS)[0]
  np.testing.assert_array_equal(whole[4], image_ops.imagenet_train(images[4], u, 24))


def test_batch_validation():
  with pytest.raises(ValueError, match="positions"):
    image_ops.imagenet_train_batch(batch_images(3), np.arange(2), seed=0, size=8)
  with pytest.raises(ValueError, match="channel"):
    image_ops.imagenet_eval_batch([random_image(9, 9, 1), random_image(9, 9, 3)], 8, 8)
  with pytest.raises(ValueError, match="at least one"):
    image_ops.imagenet_eval_batch([], 8, 8)


def test_imagenet_eval_batch():
  out = image_ops.imagenet_eval_batch(batch_images(), resize=32, crop=28)
  assert out.shape == (6, 28, 28, 3) and out.dtype == np.uint8


# ----------------------------------------------------------------------- decoding


@pytest.mark.parametrize("channels", [1, 3])
def test_decode_png_round_trip(channels):
  image = random_image(13, 17, channels)
  out = image_ops.decode_image(encode(image, "PNG"), channels=channels)
  np.testing.assert_array_equal(out, image)
  assert out.flags.writeable


def test_decode_jpeg_close():
  image = smooth_image(48, 64)
  out = image_ops.decode_image(encode(image, "JPEG", quality=95))
  assert out.shape == (48, 64, 3) and out.dtype == np.uint8
  assert np.abs(out.astype(np.int16) - image).mean() < 2.0


def test_decode_converts_channels():
  image = smooth_image(8, 8)
  gray = image_ops.decode_image(encode(image, "PNG"), channels=1)
  expected = np.asarray(Image.fromarray(image).convert("L"))[:, :, None]
  np.testing.assert_array_equal(gray, expected)


def test_decode_corrupt_raises():
  with pytest.raises(ValueError, match="cannot decode image") as info:
    image_ops.decode_image(b"definitely not an image")
  assert info.value.__cause__ is not None
  truncated = encode(smooth_image(64, 64), "JPEG")[:200]
  with pytest.raises(ValueError, match="cannot decode image"):
    image_ops.decode_image(truncated)
  with pytest.raises(ValueError, match="channels"):
    image_ops.decode_image(encode(smooth_image(8, 8), "PNG"), channels=2)


@pytest.mark.parametrize("channels", [1, 3])
def test_decode_draft_keeps_shorter_side(channels):
  data = encode(smooth_image(600, 800), "JPEG")
  out = image_ops.decode_image(data, channels=channels, min_size=224)
  assert out.shape == (300, 400, channels)  # Scale 1/2: 1/4 would make the short side 150.
  assert image_ops.decode_image(data, min_size=100).shape == (150, 200, 3)
  assert image_ops.decode_image(data, min_size=1000).shape == (600, 800, 3)
  # Non-JPEG formats ignore min_size.
  assert image_ops.decode_image(encode(smooth_image(600, 800), "PNG"), min_size=64).shape == (
    600,
    800,
    3,
  )
