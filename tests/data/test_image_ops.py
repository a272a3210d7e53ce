"""Tests for ltjax.data.pp.image_ops."""

import io

import numpy as np
import pytest
from PIL import Image

from ltjax.data.pp import image_ops
from ltjax.data.pp.rng import record_uniforms
from ltjax.data.sources import decode


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
def test_random_resized_crop_is_the_box_resized_by_pillow(shape):
  image, u = random_image(*shape), uniforms(40)
  out = image_ops.random_resized_crop(image, u, 32)
  top, left, h, w = image_ops.random_resized_crop_params(shape[0], shape[1], u)
  crop = Image.fromarray(image[top : top + h, left : left + w].squeeze(-1 if shape[2] == 1 else ()))
  expected = np.asarray(crop.resize((32, 32), Image.Resampling.BILINEAR)).reshape(32, 32, -1)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, expected)


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
def test_resize_shorter_is_pillow_bilinear_to_torchvision_size(shape, expected):
  image = random_image(*shape)
  out = image_ops.resize_shorter(image, 20)
  pil = Image.fromarray(image.squeeze(-1) if shape[2] == 1 else image)
  resized = pil.resize((expected[1], expected[0]), Image.Resampling.BILINEAR)
  np.testing.assert_array_equal(out, np.asarray(resized).reshape(expected))


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
  out = decode.decode_image(encode(image, "PNG"), channels=channels)
  np.testing.assert_array_equal(out, image)
  assert out.flags.writeable


def test_decode_jpeg_close():
  image = smooth_image(48, 64)
  out = decode.decode_image(encode(image, "JPEG", quality=95))
  assert out.shape == (48, 64, 3) and out.dtype == np.uint8
  assert np.abs(out.astype(np.int16) - image).mean() < 2.0


def test_decode_converts_channels():
  image = smooth_image(8, 8)
  gray = decode.decode_image(encode(image, "PNG"), channels=1)
  expected = np.asarray(Image.fromarray(image).convert("L"))[:, :, None]
  np.testing.assert_array_equal(gray, expected)


def test_decode_corrupt_raises():
  with pytest.raises(ValueError, match="cannot decode image") as info:
    decode.decode_image(b"definitely not an image")
  assert info.value.__cause__ is not None
  truncated = encode(smooth_image(64, 64), "JPEG")[:200]
  with pytest.raises(ValueError, match="cannot decode image"):
    decode.decode_image(truncated)
  with pytest.raises(ValueError, match="channels"):
    decode.decode_image(encode(smooth_image(8, 8), "PNG"), channels=2)


@pytest.mark.parametrize("channels", [1, 3])
def test_decode_draft_keeps_shorter_side(channels):
  data = encode(smooth_image(600, 800), "JPEG")
  out = decode.decode_image(data, channels=channels, min_size=224)
  assert out.shape == (300, 400, channels)  # Scale 1/2: 1/4 would make the short side 150.
  assert decode.decode_image(data, min_size=100).shape == (150, 200, 3)
  assert decode.decode_image(data, min_size=1000).shape == (600, 800, 3)
  # Non-JPEG formats ignore min_size.
  assert decode.decode_image(encode(smooth_image(600, 800), "PNG"), min_size=64).shape == (
    600,
    800,
    3,
  )


# ------------------------------------------- references: torchvision's formulas, in numpy


def torchvision_pil_jitter(image: np.ndarray, u: np.ndarray, strengths=(0.4, 0.4, 0.4)):
  """torchvision's ColorJitter on a PIL image: ImageEnhance, in the order sorted(u[3:6])."""
  from PIL import ImageEnhance

  img = Image.fromarray(image)
  enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
  for op in np.argsort(u[3:6], kind="stable"):
    s = strengths[op]
    if s:
      factor = max(0.0, 1.0 - s) + (1.0 + s - max(0.0, 1.0 - s)) * u[op]
      img = enhancers[op](img).enhance(factor)
  return np.asarray(img)


def tensor_jitter_reference(image: np.ndarray, u: np.ndarray, s: float = 0.4) -> np.ndarray:
  """torchvision's tensor ColorJitter formulas on uint8, in numpy: each adjustment blends
  with a degenerate image (black, the grey mean, the grey image), clamps to [0, 255] and
  truncates to uint8; grey = 0.2989 R + 0.587 G + 0.114 B, truncated."""
  x = image.astype(np.float64)

  def gray(x):
    return np.floor(x @ np.array([0.2989, 0.587, 0.114]))[..., None]

  for op in np.argsort(u[3:6], kind="stable"):
    f = 1.0 - s + 2.0 * s * u[op]
    degenerate = (0.0, gray(x).mean(), gray(x))[op]
    x = np.floor(np.clip(f * x + (1.0 - f) * degenerate, 0.0, 255.0))
  return x.astype(np.uint8)


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) weights of an antialiased bilinear resize (a triangle filter widened by
  the downscale factor, pixel centres at i + 0.5), as PIL and torchvision's antialias."""
  scale = n_in / n_out
  support = max(scale, 1.0)
  centres = (np.arange(n_out) + 0.5) * scale
  w = np.maximum(0.0, 1.0 - np.abs((np.arange(n_in)[None, :] + 0.5 - centres[:, None]) / support))
  return w / w.sum(axis=1, keepdims=True)


def resize_reference(image: np.ndarray, height: int, width: int) -> np.ndarray:
  wy, wx = bilinear_matrix(image.shape[0], height), bilinear_matrix(image.shape[1], width)
  return np.einsum("ij,jkc,lk->ilc", wy, image.astype(np.float64), wx)


@pytest.mark.parametrize("seed", range(8))
def test_color_jitter_is_torchvision_on_pil_images(seed):
  # The references jitter PIL images, so torchvision runs ImageEnhance: same pixels exactly.
  image = random_image(23, 31, seed=seed)
  u = uniforms(6, seed)
  np.testing.assert_array_equal(image_ops.color_jitter(image, u), torchvision_pil_jitter(image, u))


@pytest.mark.parametrize("seed", range(8))
def test_color_jitter_within_two_levels_of_the_tensor_formulas(seed):
  image = np.clip(smooth_image(32, 40).astype(int) + random_image(32, 40, seed=seed) // 4, 0, 255)
  image = image.astype(np.uint8)
  u = uniforms(6, seed)
  diff = image_ops.color_jitter(image, u).astype(int) - tensor_jitter_reference(image, u)
  # torchvision's two backends differ in the grey (rounded 0.299 R + ... in PIL, truncated
  # 0.2989 R + ... for tensors) and the contrast mean (rounded in PIL): about one level
  # per adjustment, which later factors (up to 1.4) can stretch to three.
  assert np.abs(diff).max() <= 3 and np.abs(diff).mean() < 0.5


@pytest.mark.parametrize("shape, size", [((60, 90, 3), 24), ((20, 30, 3), 48), ((50, 40, 1), 32)])
def test_resize_is_antialiased_bilinear(shape, size):
  image = smooth_image(*shape[:2])[:, :, : shape[2]]
  image = np.ascontiguousarray(image) + random_image(*shape, seed=1) // 8
  out = image_ops.random_resized_crop(image, uniforms(40), size, scale=(1, 1), ratio=(1, 1))
  box = image_ops.random_resized_crop_params(*shape[:2], uniforms(40), (1, 1), (1, 1))
  top, left, h, w = box
  expected = resize_reference(image[top : top + h, left : left + w], size, size)
  assert np.abs(out - expected).max() <= 1.0 + 1e-9  # PIL rounds fixed-point sums.


def test_random_resized_crop_box_distribution():
  # Area fraction uniform in scale, log aspect ratio uniform in log([3/4, 4/3]). With areas
  # up to 3/4 of a square image every first attempt fits (3/4 * 4/3 = 1), so the boxes
  # follow the first draw's distribution; larger boxes are sometimes redrawn, as in
  # torchvision.
  boxes = np.array(
    [
      image_ops.random_resized_crop_params(1000, 1000, uniforms(40, s), scale=(0.08, 0.75))
      for s in range(2000)
    ]
  )
  area = boxes[:, 2] * boxes[:, 3] / 1e6
  log_ratio = np.log(boxes[:, 3] / boxes[:, 2])
  assert abs(area.mean() - 0.415) < 0.015 and area.min() > 0.079 and area.max() < 0.76
  assert abs(np.mean(area < 0.08 + 0.67 / 2) - 0.5) < 0.04
  assert abs(log_ratio.mean()) < 0.02 and np.abs(log_ratio).max() <= np.log(4 / 3) + 0.01
  assert abs(np.mean(np.abs(log_ratio)) - np.log(4 / 3) / 2) < 0.02  # Uniform, not peaked.
  # The offsets are uniform over the valid positions: centres spread over the image.
  centre = boxes[:, 1] + boxes[:, 3] / 2
  assert abs(centre.mean() - 500) < 15


@pytest.mark.parametrize("seed", range(4))
def test_imagenet_train_is_crop_then_flip_then_jitter(seed):
  image = random_image(45, 70, seed=seed)
  u = uniforms(image_ops.IMAGENET_TRAIN_DRAWS, seed)
  expected = image_ops.random_resized_crop(image, u[:40], 24)
  expected = image_ops.horizontal_flip(expected, u[40])
  expected = image_ops.color_jitter(expected, u[41:])
  np.testing.assert_array_equal(image_ops.imagenet_train(image, u, 24), expected)
  gray = random_image(45, 70, 1, seed=seed)
  out = image_ops.imagenet_train(gray, u, 24)
  assert out.shape == (24, 24, 1)
  np.testing.assert_array_equal(
    out,
    image_ops.color_jitter(
      image_ops.horizontal_flip(image_ops.random_resized_crop(gray, u[:40], 24), u[40]), u[41:]
    ),
  )


def test_imagenet_train_accepts_non_contiguous_images():
  image = random_image(50, 60)
  u = uniforms(image_ops.IMAGENET_TRAIN_DRAWS)
  view = image[:, ::-1]
  np.testing.assert_array_equal(
    image_ops.imagenet_train(view, u, 16), image_ops.imagenet_train(view.copy(), u, 16)
  )


# ------------------------------------------------------------------- the JPEG decoder


def photo_jpeg(**options) -> bytes:
  from sklearn.datasets import load_sample_images

  return encode(load_sample_images().images[0][:200, :300], "JPEG", quality=90, **options)


def pil_decode(data: bytes, mode: str = "RGB", draft=None) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as img:
    if draft:
      img.draft(mode, draft)
    return np.asarray(img.convert(mode))


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"subsampling": 0}])
def test_decode_jpeg_equals_pillow(options):
  data = photo_jpeg(**options)
  np.testing.assert_array_equal(decode.decode_image(data), pil_decode(data))
  np.testing.assert_array_equal(decode.decode_image(memoryview(data)), pil_decode(data))
  out = decode.decode_image(data, min_size=90)  # 200 x 300 at 1/2.
  np.testing.assert_array_equal(out, pil_decode(data, draft=(90, 90)))
  assert out.shape == (100, 150, 3) and out.flags.writeable


def test_jpeg_scale_is_pillow_draft():
  for h, w in [(1, 1), (7, 300), (375, 500), (600, 800), (2000, 90)]:
    for m in (1, 3, 64, 224, 256, 1000):
      data = encode(np.zeros((h, w, 3), np.uint8), "JPEG")
      s = decode.jpeg_scale(h, w, m)
      assert pil_decode(data, draft=(m, m)).shape[:2] == (-(-h // s), -(-w // s)), (h, w, m)
  assert decode.jpeg_scale(600, 800, None) == 1


def test_decode_grayscale_jpeg_is_luma():
  data = photo_jpeg()
  gray = decode.decode_image(data, channels=1)
  assert gray.shape == (200, 300, 1)
  assert np.abs(gray[:, :, 0].astype(int) - pil_decode(data, "L")).max() <= 12
  assert np.abs(gray[:, :, 0].astype(int) - pil_decode(data, "L")).mean() < 0.5
  one_channel = encode(smooth_image(40, 30)[:, :, :1], "JPEG")
  assert decode.decode_image(one_channel).shape == (40, 30, 3)


def test_decode_cmyk_jpeg():
  rgb = Image.open(io.BytesIO(photo_jpeg()))
  buf = io.BytesIO()
  rgb.convert("CMYK").save(buf, "JPEG", quality=95)
  out = decode.decode_image(buf.getvalue())
  assert np.abs(out.astype(int) - pil_decode(buf.getvalue())).max() <= 1


def test_decode_jpeg_with_libjpeg_warning_falls_back_to_pillow():
  # Extraneous bytes before the end marker: libjpeg warns, strict libjpeg-turbo refuses,
  # Pillow (as torchvision's loader) decodes it, so ltjax does too.
  data = photo_jpeg()
  assert data.endswith(b"\xff\xd9")
  warned = data[:-2] + b"\x00" * 16 + b"\xff\xd9"
  np.testing.assert_array_equal(decode.decode_image(warned), pil_decode(warned))


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.98])
def test_decode_truncated_jpeg_raises(keep):
  data = photo_jpeg()
  with pytest.raises(ValueError, match="cannot decode image") as info:
    decode.decode_image(data[: int(len(data) * keep)])
  assert info.value.__cause__ is not None


def test_imagenet_train_without_jitter_is_crop_then_flip():
  """jitter=0 (the references' iNaturalist recipe): no ColorJitter at all."""
  image, u = random_image(60, 80), uniforms(image_ops.IMAGENET_TRAIN_DRAWS)
  crop = image_ops.random_resized_crop(image, u[: image_ops.RRC_DRAWS], 32)
  expected = image_ops.horizontal_flip(crop, u[image_ops.RRC_DRAWS])
  np.testing.assert_array_equal(image_ops.imagenet_train(image, u, 32, jitter=0.0), expected)
  assert not np.array_equal(image_ops.imagenet_train(image, u, 32), expected)  # 0.4 jitters.
