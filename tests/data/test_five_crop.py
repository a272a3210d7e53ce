"""``data.eval_transform=five_crop``: LIFT's test-time ensemble (shijxcs/LIFT, tte_mode
"fivecrop"): Resize(crop_size + tte_expand) + FiveCrop(crop_size) on the host."""

import numpy as np
import pytest
from PIL import Image

from ltjax.data.pp import augment, image_ops

# (height, width, channels), crop, expand: landscape, portrait grey, square, an image smaller
# than crop + expand (upsampled), a large one downsampled, and LIFT's 224 + 24.
CASES = [
  ((37, 53, 3), 16, 6),
  ((60, 41, 1), 16, 6),
  ((40, 40, 3), 20, 4),
  ((12, 15, 3), 16, 8),
  ((90, 70, 3), 14, 0),
  ((300, 260, 3), 224, 24),
]


def smooth_image(shape, seed):
  """Gradients and blobs plus noise: resampling differences show."""
  rng = np.random.default_rng(seed)
  h, w, c = shape
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  chans = [
    127
    + 100 * np.sin(2 * np.pi * (rng.uniform(1, 4) * x + rng.uniform(1, 4) * y))
    + rng.normal(0, 20, (h, w))
    for _ in range(c)
  ]
  return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def transforms():
  pytest.importorskip("torch")
  from ltjax.interop import torch_extras

  try:  # torch_extras: torchvision's import where its compiled operators cannot load.
    return torch_extras.import_torchvision().transforms
  except ImportError:
    pytest.skip("torchvision is not installed (the torch extra)")


@pytest.mark.parametrize("shape, crop, expand", CASES)
def test_crops_are_torchvision_resize_then_fivecrop(transforms, shape, crop, expand):
  image = smooth_image(shape, seed=sum(shape))
  pil = Image.fromarray(image[:, :, 0] if shape[2] == 1 else image)
  reference = transforms.Compose([transforms.Resize(crop + expand), transforms.FiveCrop(crop)])
  want = np.stack([np.asarray(c).reshape(crop, crop, shape[2]) for c in reference(pil)])
  out = augment.eval_transform([image], kind="five_crop", size=crop, tte_expand=expand)
  assert out.shape == (1, 5, crop, crop, shape[2]) and out.dtype == np.uint8
  # Pillow's bilinear resize (antialiased), as torchvision on PIL images: the same pixels.
  np.testing.assert_array_equal(out[0], want)


def test_crop_geometry_is_the_four_corners_then_the_centre():
  # Shorter side already crop + expand: no resize, so the crops are plain slices.
  image = np.arange(20 * 27, dtype=np.int64).reshape(20, 27, 1).astype(np.uint8)
  out = image_ops.eval_resize_five_crop(image, resize=20, crop=12)
  assert image_ops.FIVE_CROPS == ("top_left", "top_right", "bottom_left", "bottom_right", "center")
  want = [image[:12, :12], image[:12, 15:], image[8:, :12], image[8:, 15:], image[4:16, 8:20]]
  np.testing.assert_array_equal(out, np.stack(want))  # Centre: round(8 / 2), round(15 / 2).


def test_image_ops_refuse_crops_that_do_not_fit():
  with pytest.raises(ValueError, match="the 9x9 crops do not fit in a 8x12 image"):
    image_ops.five_crop(np.zeros((8, 12, 3), np.uint8), 9)
  with pytest.raises(ValueError, match="crop 9 is larger than the resized shorter side 8"):
    image_ops.eval_resize_five_crop(np.zeros((8, 12, 3), np.uint8), 8, 9)
  with pytest.raises(ValueError, match="tte_expand must be an integer >= 0"):
    augment.eval_transform([np.zeros((8, 8, 3), np.uint8)], kind="five_crop", size=4, tte_expand=-1)
