"""A generated JPEG tree + reference-format split lists, trained end to end."""

import os

import numpy as np
from helpers import load_config, set_num_classes, shrink_imagenet_config
from PIL import Image

from ltjax.train import experiment, loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def make_tree(root, rng):
  """ImageNet-LT-style lists over 4 classes (class id = dominant colour) + an open list."""
  colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]])
  lists = {"train": [12, 6, 3, 2], "val": [2] * 4, "test": [2] * 4}
  for split, counts in lists.items():
    lines = []
    for label, n in enumerate(counts):
      for i in range(n):
        rel = f"{split}/c{label}/{i}.jpg"
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        h, w = rng.integers(20, 40, 2)
        image = np.clip(colours[label] + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(root, rel), quality=90)
        lines.append(f"{rel} {label}")
    with open(os.path.join(root, f"ImageNet_LT_{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")
  os.makedirs(os.path.join(root, "open"), exist_ok=True)
  for i in range(3):
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(
      os.path.join(root, f"open/{i}.jpg")
    )
  with open(os.path.join(root, "ImageNet_LT_open.txt"), "w") as f:
    f.write("".join(f"open/{i}.jpg -1\n" for i in range(3)))


def test_imagenet_lt_config_trains_on_a_generated_tree(tmp_path, monkeypatch):

  make_tree(str(tmp_path / "data"), np.random.default_rng(0))
  set_num_classes(monkeypatch, "imagenet_lt", 4)
  config = load_config(os.path.join(REPO, "configs", "imagenet_lt", "joint_sqrt.py"))
  config.dataset.root = str(tmp_path / "data")
  config.dataset.open_set = True
  shrink_imagenet_config(config, num_epochs=2)
  summary = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert {"many", "medium", "few", "all", "open_f_measure", "open_auroc"} <= set(summary)
  exp, _ = experiment.setup(config)
  assert len(exp.splits.test) == 8 + 3 and (exp.splits.test.labels == -1).sum() == 3
  np.testing.assert_array_equal(exp.splits.train_counts, [12, 6, 3, 2])


def test_open_list_with_known_labels_is_a_clear_error(tmp_path, monkeypatch):
  import pytest

  from ltjax.data.datasets import build_splits

  root = tmp_path / "data"
  make_tree(str(root), np.random.default_rng(0))
  (root / "ImageNet_LT_open.txt").write_text("open/0.jpg -1\nopen/1.jpg 2\n")
  set_num_classes(monkeypatch, "imagenet_lt", 4)
  config = load_config(os.path.join(REPO, "configs", "imagenet_lt", "oltr_stage2.py"))
  config.dataset.root = str(root)
  with pytest.raises(ValueError, match=r"ImageNet_LT_open.txt has 1 record.*line 2, label 2"):
    build_splits(config.dataset, 0, config.data)
