"""What data a number was computed on (ltjax.data.identity): split identities and split
hygiene, on real files that are moved, relabelled, repeated or corrupted."""

import logging
import os
import shutil

import numpy as np
import pytest
from helpers import own_data_config as folder_config

from ltjax.data import datasets, identity
from ltjax.data.pp import augment
from ltjax.data.sources import ArraySource, Subset

SHARED_SPLITS = os.path.join(
  os.path.dirname(__file__), "..", "..", "..", "shared", "data", "splits"
)


def lists_config(root, **dataset):
  c = folder_config(root, name="lists", train_list="train.txt", val_list="val.txt")
  c.dataset.test_list = "test.txt"
  c.dataset.update(dataset)
  return c


def build(c, seed=0):
  return datasets.build_splits(c.dataset, seed, c.data)


def test_a_moved_root_keeps_the_identity_a_moved_image_changes_it(mine, tmp_path):
  before = build(folder_config(mine)).identity()
  moved = tmp_path / "elsewhere"
  shutil.copytree(mine, moved)
  assert build(folder_config(moved)).identity() == before  # Paths relative to the root.
  # One test image moved from one class folder to another: counts of the split unchanged.
  test_dir = moved / "test"
  a, b = sorted(p.name for p in test_dir.iterdir())[:2]
  image = sorted((test_dir / a).iterdir())[0]
  shutil.move(str(image), str(test_dir / b / f"moved-{image.name}"))
  after = build(folder_config(moved)).identity()
  assert after["test"]["records"] == before["test"]["records"]
  assert after["test"]["digest"] != before["test"]["digest"]
  assert after["train"] == before["train"] and after["val"] == before["val"]


def test_identity_is_order_independent_and_sees_labels_and_class_names():
  images = np.arange(4 * 2 * 2, dtype=np.uint8).reshape(4, 2, 2, 1)
  source = ArraySource(images, np.array([0, 1, 0, 1]), 2)
  base = identity.split_identity(Subset(source, [0, 1, 2, 3]), ("a", "b"))
  assert identity.split_identity(Subset(source, [3, 1, 2, 0]), ("a", "b")) == base
  assert identity.split_identity(Subset(source, [0, 1, 2]), ("a", "b")) != base
  assert identity.split_identity(Subset(source, [0, 1, 2, 3]), ("a", "c")) != base
  relabelled = Subset(source, [0, 1, 2, 3], np.array([1, 0]), 2)
  assert identity.split_identity(relabelled, ("a", "b")) != base


def test_the_list_and_folder_forms_and_the_packed_shards_have_one_identity(mine, tmp_path):
  from ltjax.data import prepare

  folder = build(folder_config(mine)).identity()
  assert build(lists_config(mine, class_names="classes.txt")).identity() == folder
  assert build(lists_config(mine)).identity() != folder  # Class names "0".."4": other names.
  out = tmp_path / "packed"
  prepare.prepare_config(folder_config(mine).dataset, str(out), note=lambda line: None)
  packed = folder_config(mine, packed_dir=str(out))
  assert build(packed).identity() == folder


def write_lists(root, train, test, val=None):
  (root / "train.txt").write_text("".join(f"{p} {k}\n" for p, k in train))
  (root / "test.txt").write_text("".join(f"{p} {k}\n" for p, k in test))
  if val is not None:
    (root / "val.txt").write_text("".join(f"{p} {k}\n" for p, k in val))


def entries(root, split):
  lines = (root / f"{split}.txt").read_text().splitlines()
  return [(line.rsplit(None, 1)[0], int(line.rsplit(None, 1)[1])) for line in lines]


def test_an_image_in_train_and_test_is_refused_naming_both_lines(mine, tmp_path):
  root = tmp_path / "leak"
  shutil.copytree(mine, root)
  train, test = entries(root, "train"), entries(root, "test")
  write_lists(root, train, [*test, train[5]])
  with pytest.raises(ValueError, match="in both the train and the test split") as e:
    build(lists_config(root, val_list=""))
  assert f"{root / 'train.txt'}, line 6" in str(e.value)
  assert f"test.txt, line {len(test) + 1}" in str(e.value)
  # val and test alike.
  val = entries(root, "val")
  write_lists(root, train, [*test, val[0]])
  with pytest.raises(ValueError, match="in both the val and the test split"):
    build(lists_config(root))


def test_a_repeated_line_is_refused_in_train_unless_allowed(mine, tmp_path):
  root = tmp_path / "twice"
  shutil.copytree(mine, root)
  train = entries(root, "train")
  write_lists(root, [*train, train[0]], entries(root, "test"))
  with pytest.raises(ValueError, match="the train split lists 1 image") as e:
    build(lists_config(root))
  assert "line 1" in str(e.value) and f"line {len(train) + 1}" in str(e.value)
  assert "allow_train_duplicates=True" in str(e.value)
  splits = build(lists_config(root, allow_train_duplicates=True))
  assert len(splits.train) == len(train) + 1
  test = entries(root, "test")
  write_lists(root, train, [*test, test[0]])
  with pytest.raises(ValueError, match="the test split lists 1 image"):
    build(lists_config(root, allow_train_duplicates=True))


def test_hidden_folders_and_other_files_are_never_classes_and_are_counted(mine, tmp_path, caplog):
  root = tmp_path / "hidden"
  shutil.copytree(mine, root)
  clean = build(folder_config(root))
  thumbs = root / "train" / ".thumbnails"
  thumbs.mkdir()
  shutil.copy(next((root / "train" / "0-zero").iterdir()), thumbs / "x.jpg")
  (root / "train" / "README.txt").write_text("my data")
  (root / "train" / "0-zero" / "notes.txt").write_text("n")
  (root / "train" / "1-one" / ".DS_Store").write_bytes(b"\0")
  with caplog.at_level(logging.INFO, logger="ltjax"):
    splits = build(folder_config(root))
  assert splits.class_names == clean.class_names  # No ".thumbnails" class, no index shift.
  np.testing.assert_array_equal(splits.train.labels, clean.train.labels)
  assert splits.identity() == clean.identity()
  line = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
  assert len(line) == 1 and "2 hidden file(s) or folder(s)" in line[0]
  assert "2 non-image file(s) (README.txt, 0-zero/notes.txt)" in line[0]


def test_a_class_without_test_images_is_said(mine, tmp_path, caplog):
  root = tmp_path / "untested"
  shutil.copytree(mine, root)
  for image in (root / "test" / "3-three").iterdir():
    image.unlink()
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    build(folder_config(root))
  assert "1 class(es) have no test images: 3 (3-three)" in caplog.text


def test_carving_val_from_a_one_image_class_is_said(mine, tmp_path, caplog):
  root = tmp_path / "single"
  shutil.copytree(mine, root)
  train = entries(root, "train")
  last = [e for e in train if e[1] == 4]
  write_lists(root, [e for e in train if e[1] != 4] + last[:1], entries(root, "test"))
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    splits = build(lists_config(root, val_list="", val_per_class=3))
  assert "class(es) 4 have a single training image" in caplog.text
  assert splits.train_counts[4] == 1 and not (splits.val.labels == 4).any()


def test_skip_corrupt_never_alters_an_evaluation_split(mine, tmp_path):
  from ltjax.data import pipeline

  root = tmp_path / "corrupt"
  shutil.copytree(mine, root)
  bad = sorted((root / "test" / "1-one").iterdir())[0]
  bad.write_bytes(b"not a jpeg at all")
  c = folder_config(root)
  c.data.skip_corrupt = True
  splits = build(c)
  assert splits.train.skip_corrupt and not splits.test.skip_corrupt
  with pytest.raises(ValueError, match="evaluation split") as e:
    for _ in pipeline.eval_batches(splits.test, 64, transform=augment.ResizeCenterCrop(32)):
      pass
  assert str(bad) in str(e.value) and "fix the image or remove its line" in str(e.value)


def test_the_reference_lists_pass_the_hygiene_checks():
  """The real ImageNet-LT val/test, Places-LT train/val/test and iNaturalist 2018 val lists
  share no record and repeat none (the checks would refuse real data otherwise)."""
  if not os.path.isdir(SHARED_SPLITS):
    pytest.skip("the reference split lists (../shared/data/splits) are not here")
  from ltjax.data.datasets import DataSplits
  from ltjax.data.sources.splitlist import SplitListSource

  def source(name, k):
    return SplitListSource(os.path.join(SHARED_SPLITS, name), "/nowhere", k)

  places = DataSplits(
    train=source("Places_LT_train.txt", 365),
    val=source("Places_LT_val.txt", 365),
    test=source("Places_LT_test.txt", 365),
    num_classes=365,
  )
  identity.check_splits(places)
  imagenet_val = source("ImageNet_LT_val.txt", 1000)
  imagenet = DataSplits(
    train=imagenet_val,
    val=imagenet_val,
    test=source("ImageNet_LT_test.txt", 1000),
    num_classes=1000,
    shared=(("train", "val"),),
  )
  identity.check_splits(imagenet)
  inat = source("iNaturalist18_val.txt", 8142)
  identity.check_splits(
    DataSplits(
      train=inat,
      val=inat,
      test=inat,
      num_classes=8142,
      shared=(("train", "val"), ("val", "test"), ("train", "test")),
    )
  )
  with pytest.raises(ValueError, match="in both the val and the test split"):
    identity.check_splits(DataSplits(train=places.train, val=inat, test=inat, num_classes=8142))
