"""Evaluation images are the references' Resize(256) + CenterCrop(224) of the full JPEG,
whatever data.decode_min_size does to the training images."""

import numpy as np
import pytest
from PIL import Image

from ltjax import config as config_lib
from ltjax.data import pipeline
from ltjax.data.datasets import build_splits
from ltjax.data.pp import augment

SIZES = [(600, 520), (1000, 700), (520, 1200), (300, 260)]  # (width, height)


def smooth_image(width, height, seed):
  """A photo-like image: smooth gradients and blobs, so resampling differences show."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width] / max(width, height)
  channels = [
    127 + 120 * np.sin(2 * np.pi * (rng.uniform(1, 6) * x + rng.uniform(1, 6) * y + rng.random()))
    for _ in range(3)
  ]
  return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def torchvision_eval(path):
  """transforms.Resize(256) + CenterCrop(224) on the PIL image, restated with Pillow."""
  img = Image.open(path).convert("RGB")
  w, h = img.size
  if w <= h:
    size = (256, int(256 * h / w))
  else:
    size = (int(256 * w / h), 256)
  img = img.resize(size, Image.Resampling.BILINEAR)
  w, h = img.size
  top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
  return np.asarray(img.crop((left, top, left + 224, top + 224)))


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("tree")
  for split in ("train", "val", "test"):  # The same pixels, other files: splits share none.
    lines = []
    for i, (w, h) in enumerate(SIZES):
      name = f"img{i}.jpg" if split == "test" else f"{split}{i}.jpg"
      Image.fromarray(smooth_image(w, h, i)).save(root / name, quality=90)
      lines.append(f"{name} {i % 2}")
    (root / f"ImageNet_LT_{split}.txt").write_text("\n".join(lines) + "\n")
  return root


def test_eval_images_are_resize_256_center_crop_224_of_the_full_decode(image_tree):
  c = config_lib.imagenet_lt(config_lib.base_config())
  c.dataset.root = str(image_tree)
  c.data.decode_min_size = 256  # The training speed option must not reach evaluation.
  splits = build_splits(c.dataset, 0, c.data)
  assert splits.train.min_size == 256 and splits.test.min_size is None
  batch = next(
    pipeline.eval_batches(splits.test, len(SIZES), transform=augment.eval_from_config(c.data))
  )
  for i in range(len(SIZES)):
    want = torchvision_eval(image_tree / f"img{i}.jpg")
    np.testing.assert_array_equal(batch["image"][i], want, err_msg=f"image {SIZES[i]}")
  # The training source decodes large JPEGs at a reduced scale: other pixels (the reason
  # evaluation does not use it).
  draft = splits.train.get_batch(np.array([1]))[0][0]
  assert draft.shape[:2] == (350, 500)
