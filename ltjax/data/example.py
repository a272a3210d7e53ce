"""A tiny long-tailed image dataset on disk, in both forms ltjax reads your own data in:
what ``ltjax example-data`` writes for the README's "Your own data" walk-through.

Five classes of scikit-learn's handwritten digits (0 to 4, shipped with scikit-learn, so no
download), upscaled to 32x32 RGB JPEGs, with a natural long tail in training (imbalance
20: 100, 47, 22, 10 and 5 images), a balanced validation (10 per class) and test set (30
per class), and an open set (digits 8 and 9, 30 images). Written as an image-folder tree
``OUT/{train,val,test}/<class>/<n>.jpg`` and ``OUT/open/<n>.jpg`` (dataset "folder") and as
list files ``OUT/{train,val,test,open}.txt`` over the same images (dataset "lists").
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ltjax import files

# Sorted as torchvision's ImageFolder sorts class folders: the same class ids in both forms.
CLASS_NAMES = ("0-zero", "1-one", "2-two", "3-three", "4-four")
TRAIN_COUNTS = (100, 47, 22, 10, 5)
VAL_PER_CLASS, TEST_PER_CLASS, OPEN_IMAGES = 10, 30, 30
OPEN_DIGITS = (8, 9)


def _image(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
  """An 8x8 digit (0..16) as a 32x32 RGB image with a random tint."""
  grey = Image.fromarray(np.round(pixels * (255 / 16)).astype(np.uint8)).resize(
    (32, 32), Image.Resampling.BILINEAR
  )
  tint = rng.uniform(0.6, 1.0, 3)
  rgb = np.asarray(grey, np.float32)[..., None] * tint
  return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def write_example_dataset(out: str, seed: int = 0) -> dict[str, int]:
  """Writes the dataset to ``out`` (see the module docstring); returns images per split."""
  from sklearn.datasets import load_digits

  digits = load_digits()
  rng = np.random.default_rng(seed)
  lists: dict[str, list[str]] = {"train": [], "val": [], "test": [], "open": []}
  for label, name in enumerate(CLASS_NAMES):
    index = rng.permutation(np.flatnonzero(digits.target == label))
    taken = {"val": VAL_PER_CLASS, "test": TEST_PER_CLASS, "train": TRAIN_COUNTS[label]}
    start = 0
    for split, n in taken.items():
      for k, i in enumerate(index[start : start + n]):
        rel = os.path.join(split, name, f"{k:03d}.jpg")
        _save(out, rel, _image(digits.images[i], rng))
        lists[split].append(f"{rel} {label}")
      start += n
  unknown = rng.permutation(np.flatnonzero(np.isin(digits.target, OPEN_DIGITS)))[:OPEN_IMAGES]
  for k, i in enumerate(unknown):
    rel = os.path.join("open", f"{k:03d}.jpg")
    _save(out, rel, _image(digits.images[i], rng))
    lists["open"].append(f"{rel} -1")
  for split, lines in lists.items():
    files.write_text(os.path.join(out, f"{split}.txt"), "\n".join(lines) + "\n")
  files.write_text(os.path.join(out, "classes.txt"), "\n".join(CLASS_NAMES) + "\n")
  return {split: len(lines) for split, lines in lists.items()}


def _save(out: str, rel: str, image: Image.Image) -> None:
  path = os.path.join(out, rel)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, quality=95)
