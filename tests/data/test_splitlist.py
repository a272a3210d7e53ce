"""Tests for ltjax.data.sources.splitlist."""

import logging
import os
import pickle
import time

import numpy as np
import pytest
from PIL import Image

from ltjax.data import datasets
from ltjax.data.longtail import format_statistics, split_statistics
from ltjax.data.pp import image_ops
from ltjax.data.sources.splitlist import SplitListSource, parse_split_file

# The reference split lists live next to the repository, never inside it.
SPLITS_DIR = os.path.normpath(
  os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "splits")
)


def real_split(name: str) -> str:
  path = os.path.join(SPLITS_DIR, name)
  if not os.path.exists(path):
    pytest.skip(f"reference split list {path} is not available")
  return path


def write(path, text: str) -> str:
  path = str(path)
  with open(path, "w") as f:
    f.write(text)
  return path


def pattern(h: int, w: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth(h: int, w: int, value: int) -> np.ndarray:
  """A gradient that JPEG reproduces closely."""
  y, x = np.mgrid[0:h, 0:w]
  return np.stack([255 * x / w, 255 * y / h, value + 0 * x], axis=-1).astype(np.uint8)


# ------------------------------------------------------------------ reference split lists


def test_places_lt_train():
  path = real_split("Places_LT_train.txt")
  start = time.perf_counter()
  paths, labels = parse_split_file(path, num_classes=365)
  assert time.perf_counter() - start < 1.0
  assert len(paths) == 62_500 and labels.shape == (62_500,) and labels.dtype == np.int32
  assert paths[0] == "train/airfield/00004851.jpg" and labels[0] == 0
  stats = split_statistics(labels)
  assert stats["num_images"] == 62_500 and stats["num_open"] == 0
  assert stats["num_classes"] == 365 and stats["num_empty"] == 0
  assert stats["counts"].sum() == 62_500
  assert stats["largest"] == 4980 and stats["smallest"] == 5
  assert stats["imbalance"] == pytest.approx(996.0)
  # Computed from the file with the shot-group convention (many > 100, few < 20).
  assert (stats["many"], stats["medium"], stats["few"]) == (131, 163, 71)
  assert stats["many"] + stats["medium"] + stats["few"] == 365
  text = format_statistics(stats, "Places_LT_train.txt")
  assert "62,500" in text and "4,980" in text and "131 classes" in text


@pytest.mark.parametrize(
  "name, num_images, num_classes, per_class",
  [
    ("ImageNet_LT_val.txt", 20_000, 1000, 20),
    ("ImageNet_LT_test.txt", 50_000, 1000, 50),
    ("iNaturalist18_val.txt", 24_426, 8142, 3),
    ("Places_LT_val.txt", 7_300, 365, 20),
    ("Places_LT_test.txt", 36_500, 365, 100),
  ],
)
def test_balanced_reference_lists(name, num_images, num_classes, per_class):
  paths, labels = parse_split_file(real_split(name))
  assert len(paths) == num_images == len(labels)
  assert len(set(paths)) == num_images  # No duplicate images.
  stats = split_statistics(labels)
  assert stats["num_classes"] == num_classes and stats["num_empty"] == 0
  assert stats["largest"] == stats["smallest"] == per_class
  assert np.all(stats["counts"] == per_class)
  assert stats["many"] + stats["medium"] + stats["few"] == num_classes


def test_reference_source_labels_without_images():
  path = real_split("ImageNet_LT_val.txt")
  source = SplitListSource(path, "/nonexistent-root", num_classes=1000)
  assert len(source) == 20_000 and source.num_classes == 1000
  assert source.labels.dtype == np.int32 and source.labels[0] == 0
  missing = source.verify(progress=False)
  assert len(missing) == 20_000
  assert missing[0] == os.path.join("/nonexistent-root", "train/n01440764/n01440764_762.JPEG")


def test_the_dataset_table_holds_the_reference_lists():
  get = datasets.get
  assert get("imagenet_lt").num_classes == 1000
  assert get("places_lt").num_classes == 365
  assert get("inat2018").num_classes == 8142
  assert get("inat2018").lists["test"] == get("inat2018").lists["val"]
  assert get("inat2018").packed_split("test") == "val"
  assert get("places_lt").lists["open"] == "Places_LT_open.txt"
  for name in ("imagenet_lt", "places_lt", "inat2018"):
    for split in ("train", "val", "test"):
      assert get(name).lists[split].endswith(".txt")
  assert get("places_lt").list_path("train", "/d") == "/d/Places_LT_train.txt"
  with pytest.raises(ValueError, match="has no 'open' list"):
    get("inat2018").list_path("open", "/d")
  with pytest.raises(ValueError, match="name='cifar': unknown dataset; valid: 'digits', 'tfds'"):
    get("cifar")


# --------------------------------------------------------------------------- parsing


def test_parse_blank_lines_spaces_and_open(tmp_path):
  path = write(
    tmp_path / "list.txt",
    "\ufeffa/x.jpg 0\n\n   \nb/with space.jpg\t2\r\n  c/z.png   1  \nopen/o.jpg -1\n",
  )
  paths, labels = parse_split_file(path, num_classes=3, allow_open=True)
  assert paths == ["a/x.jpg", "b/with space.jpg", "c/z.png", "open/o.jpg"]
  np.testing.assert_array_equal(labels, [0, 2, 1, -1])
  assert labels.dtype == np.int32
  stats = split_statistics(labels, num_classes=3)
  assert stats["num_images"] == 4 and stats["num_open"] == 1
  np.testing.assert_array_equal(stats["counts"], [1, 1, 1])


@pytest.mark.parametrize(
  "text, kwargs, line, match",
  [
    ("a.jpg 0\nb.jpg\n", {}, 2, "expected 'relative/path label'.*'b.jpg'"),
    ("a.jpg 0\n\n7\n", {}, 3, "expected 'relative/path label'"),
    ("a.jpg 0\nb.jpg one\n", {}, 2, "label 'one' is not an integer.*'b.jpg one'"),
    ("a.jpg 0\nb.jpg 1.5\n", {}, 2, "label '1.5' is not an integer"),
    ("a.jpg 0\nb.jpg 3\nc.jpg 5\n", {"num_classes": 3}, 2, "label 3 is out of range.*'b.jpg 3'"),
    ("a.jpg 0\nb.jpg -1\n", {}, 2, "allowed only in the open-set list"),
    ("a.jpg -2\n", {"allow_open": True}, 1, "label -2 is out of range"),
  ],
)
def test_parse_errors(tmp_path, text, kwargs, line, match):
  path = write(tmp_path / "bad.txt", text)
  with pytest.raises(ValueError, match=match) as info:
    parse_split_file(path, **kwargs)
  assert f"{path}, line {line}:" in str(info.value)


def test_parse_missing_and_empty_files(tmp_path):
  missing = str(tmp_path / "ImageNet_LT_nope.txt")
  with pytest.raises(ValueError, match="does not exist") as info:
    parse_split_file(missing)
  assert missing in str(info.value)
  with pytest.raises(ValueError, match="holds no records"):
    parse_split_file(write(tmp_path / "empty.txt", "\n  \n"))
  with pytest.raises(ValueError, match="num_classes"):
    parse_split_file(write(tmp_path / "ok.txt", "a.jpg 0\n"), num_classes=0)


def test_split_statistics_groups_and_empty_classes():
  labels = np.repeat([0, 1, 3], [150, 20, 4])  # Class 2 is empty.
  stats = split_statistics(labels, num_classes=5)
  assert stats["num_classes"] == 5 and stats["num_empty"] == 2
  assert stats["largest"] == 150 and stats["smallest"] == 4
  assert stats["imbalance"] == pytest.approx(37.5)
  assert (stats["many"], stats["medium"], stats["few"]) == (1, 1, 3)
  assert split_statistics(labels)["num_classes"] == 4
  with pytest.raises(ValueError, match="num_classes=3"):
    split_statistics(labels, num_classes=3)
  with pytest.raises(ValueError, match="few_threshold"):
    split_statistics(labels, many_threshold=10, few_threshold=20)


# ------------------------------------------------------------------------ image tree


@pytest.fixture
def tree(tmp_path):
  """A small image folder: PNGs (exact pixels) and JPEGs of different sizes."""
  root = tmp_path / "root"
  images = {
    "cls0/a.png": (pattern(12, 17, 0), 0),
    "cls0/b.jpg": (smooth(40, 30, 10), 0),
    "cls1/c.png": (pattern(9, 9, 1), 1),
    "cls1/sub dir/d.jpg": (smooth(64, 80, 200), 1),
    "cls2/e.png": (pattern(30, 5, 2), 2),
  }
  lines = []
  for rel, (image, label) in images.items():
    (root / os.path.dirname(rel)).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / rel, quality=95)
    lines.append(f"{rel} {label}")
  list_file = write(tmp_path / "train.txt", "\n".join(lines) + "\n")
  return list_file, str(root), images


def test_source_labels_shapes_and_pixels(tree):
  list_file, root, images = tree
  source = SplitListSource(list_file, root)
  assert len(source) == 5 and source.num_classes == 3
  np.testing.assert_array_equal(source.labels, [0, 0, 1, 1, 2])
  assert source.verify() == []

  batch, labels = source.get_batch(np.array([4, 0, 3, 1, 2]))
  np.testing.assert_array_equal(labels, [2, 0, 1, 0, 1])
  expected = [images[k][0] for k in ("cls2/e.png", "cls0/a.png", "cls1/sub dir/d.jpg")]
  expected += [images["cls0/b.jpg"][0], images["cls1/c.png"][0]]
  assert [im.shape for im in batch] == [im.shape for im in expected]
  assert all(image.dtype == np.uint8 for image in batch)
  np.testing.assert_array_equal(batch[0], expected[0])  # PNG: exact.
  np.testing.assert_array_equal(batch[1], expected[1])
  np.testing.assert_array_equal(batch[4], expected[4])
  for jpeg, want in ((batch[2], expected[2]), (batch[3], expected[3])):  # JPEG: close.
    assert np.abs(jpeg.astype(int) - want).mean() < 3

  out = image_ops.imagenet_eval_batch(batch, resize=16, crop=14)
  assert out.shape == (5, 14, 14, 3) and out.dtype == np.uint8

  empty, empty_labels = source.get_batch(np.array([], np.int64))
  assert empty == [] and empty_labels.shape == (0,)
  with pytest.raises(ValueError, match=r"\[0, 5\)"):
    source.get_batch(np.array([5]))


def test_source_min_size_and_pickle(tree):
  list_file, root, _ = tree
  source = SplitListSource(list_file, root, num_classes=10, min_size=16)
  assert source.num_classes == 10
  (jpeg,), _ = source.get_batch(np.array([3]))
  assert min(jpeg.shape[:2]) >= 16 and jpeg.shape[:2] == (16, 20)  # Draft: 1/4 scale.
  clone = pickle.loads(pickle.dumps(source))
  np.testing.assert_array_equal(clone.get_batch(np.array([0]))[0][0], source.get_batch([0])[0][0])


def test_source_open_list_needs_num_classes(tmp_path):
  list_file = write(tmp_path / "open.txt", "a.jpg -1\nb.jpg -1\n")
  with pytest.raises(ValueError, match="pass num_classes"):
    SplitListSource(list_file, str(tmp_path), allow_open=True)
  source = SplitListSource(list_file, str(tmp_path), num_classes=4, allow_open=True)
  np.testing.assert_array_equal(source.labels, [-1, -1])


def test_source_missing_image(tree):
  list_file, root, _ = tree
  os.remove(os.path.join(root, "cls1", "c.png"))
  source = SplitListSource(list_file, root)
  assert source.verify() == [os.path.join(root, "cls1/c.png")]
  with pytest.raises(ValueError, match="image not found") as info:
    source.get_batch(np.array([0, 2]))
  message = str(info.value)
  assert os.path.join(root, "cls1/c.png") in message
  assert f"{list_file}, line 3" in message


def test_source_corrupt_jpeg(tree):
  list_file, root, _ = tree
  path = os.path.join(root, "cls0", "b.jpg")
  with open(path, "r+b") as f:
    f.truncate(40)  # A JPEG header and nothing else.
  source = SplitListSource(list_file, root)
  with pytest.raises(ValueError, match="corrupt image") as info:
    source.get_batch(np.array([1]))
  message = str(info.value)
  assert path in message and f"{list_file}, line 2" in message
  assert "cannot decode image" in message and "skip_corrupt=True" in message


def test_skip_corrupt_replaces_within_class(tree, caplog):
  list_file, root, images = tree
  with open(os.path.join(root, "cls0", "b.jpg"), "wb") as f:
    f.write(b"not a jpeg at all")
  os.remove(os.path.join(root, "cls1", "c.png"))
  source = SplitListSource(list_file, root, skip_corrupt=True)
  with caplog.at_level(logging.WARNING, logger="ltjax.data.sources.splitlist"):
    batch, labels = source.get_batch(np.array([1, 2, 0]))
  np.testing.assert_array_equal(labels, [0, 1, 0])
  # Record 1 (class 0) wraps around to record 0; record 2 (class 1) moves on to record 3.
  np.testing.assert_array_equal(batch[0], images["cls0/a.png"][0])
  assert batch[1].shape == images["cls1/sub dir/d.jpg"][0].shape
  np.testing.assert_array_equal(batch[2], images["cls0/a.png"][0])
  assert source.num_skipped == 2 and source.bad_records == {1, 2}
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 2
  assert "b.jpg" in warnings[0] and "a.png" in warnings[0]
  assert "c.png" in warnings[1] and "d.jpg" in warnings[1]

  source.get_batch(np.array([1]))  # Known bad: replaced again, and counted again.
  assert source.num_skipped == 3

  # A class whose only image is unreadable cannot be replaced.
  os.remove(os.path.join(root, "cls2", "e.png"))
  with pytest.raises(ValueError, match="no readable image of class 2"):
    source.get_batch(np.array([4]))


def test_skip_corrupt_warns_only_ten_times(tmp_path, caplog):
  root = tmp_path / "root"
  root.mkdir()
  Image.fromarray(pattern(4, 4, 0)).save(root / "good.png")
  lines = ["good.png 0"] + [f"missing{i}.jpg 0" for i in range(15)]
  source = SplitListSource(
    write(tmp_path / "l.txt", "\n".join(lines)), str(root), skip_corrupt=True
  )
  with caplog.at_level(logging.WARNING, logger="ltjax.data.sources.splitlist"):
    batch, _ = source.get_batch(np.arange(16))
  assert all(image.shape == (4, 4, 3) for image in batch)
  assert source.num_skipped == 15
  assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 10
