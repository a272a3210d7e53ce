"""The real reference split lists against the TFDS catalogue's metadata.

Reads the lists in /work/shared/data/splits (LTJAX_SPLITS_DIR overrides it); every test
skips when its list is absent. No images are needed: the checks are that TFDS records
would carry exactly the lists' labels (class order of the TFDS ClassLabel, ILSVRC-2012
validation labels), and that every entry is placed in one TFDS split under a unique key,
including a full-size matching run of Places-LT against places365_small's file names.
"""

from __future__ import annotations

import collections
import hashlib
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ltjax.data import datasets
from ltjax.data.sources import splitlist
from ltjax.data.sources.tfds_lists import TfdsListSource, check_class_correspondence

SPLITS_DIR = os.environ.get("LTJAX_SPLITS_DIR", "/work/shared/data/splits")
USE_CODE = tfds.testing.MockPolicy.USE_CODE


def read_list(name):
  path = os.path.join(SPLITS_DIR, name)
  if not os.path.exists(path):
    pytest.skip(f"{path} is absent")
  return splitlist.parse_split_file(path)


def class_names(tfds_name):
  """The ClassLabel names of a catalogue builder, as its records' labels index them."""
  with tfds.testing.mock_data(policy=USE_CODE):
    return tfds.builder(tfds_name).info.features["label"].names


def placed_keys(tfds_name, dataset, split, paths):
  """``{TFDS split: [match key, ...]}`` of a list's entries."""
  layout = datasets.get(dataset).tfds_layout(tfds_name)
  out = collections.defaultdict(list)
  for p in paths:
    out[layout.tfds_split(p, split)].append(layout.list_key(p))
  return dict(out)


# --- ImageNet-LT ------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "name, split", [("ImageNet_LT_val.txt", "val"), ("ImageNet_LT_test.txt", "test")]
)
def test_imagenet_lt_labels_are_the_tfds_class_ids(name, split):
  paths, labels = read_list(name)
  names = class_names("imagenet2012")
  assert len(names) == 1000 and names == sorted(names)  # ILSVRC ids = sorted synsets.
  synsets = [p.split("/")[1] for p in paths]
  np.testing.assert_array_equal(labels, [names.index(s) for s in synsets])
  keys = placed_keys("imagenet2012", "imagenet_lt", split, paths)
  assert set(keys) == {"train" if split == "val" else "validation"}
  (found,) = keys.values()
  assert len(set(found)) == len(found) == len(paths)
  if split == "val":  # Drawn from ILSVRC train: the file name starts with its synset.
    assert all(os.path.basename(p).startswith(s + "_") for p, s in zip(paths, synsets, strict=True))


def test_imagenet_lt_test_labels_match_tfds_validation_labels():
  """TFDS labels ILSVRC val images from validation_labels.txt (in sorted file-name order):
  the imagenet2012 'validation' records carry exactly the test list's labels."""
  paths, labels = read_list("ImageNet_LT_test.txt")
  names = class_names("imagenet2012")
  with open(tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")) as f:
    synsets = f.read().split()
  assert len(synsets) == 50_000
  by_file = {f"ILSVRC2012_val_{k + 1:08d}.JPEG": s for k, s in enumerate(synsets)}
  tfds_labels = [names.index(by_file[os.path.basename(p)]) for p in paths]
  np.testing.assert_array_equal(labels, tfds_labels)
  assert len(paths) == 50_000  # The whole ILSVRC-2012 val set.


def test_imagenet_lt_val_list_is_the_one_tfds_imagenet_lt_uses():
  read_list("ImageNet_LT_val.txt")
  with open(os.path.join(SPLITS_DIR, "ImageNet_LT_val.txt"), "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  with open(tfds.core.tfds_path("datasets/imagenet_lt/checksums.tsv")) as f:
    assert digest in f.read()


# --- Places-LT --------------------------------------------------------------------------------


def places_class(path):
  return path.split("/")[1].replace("-", "/")  # Places-LT writes "a/b" classes as "a-b".


#: Places-LT numbers these classes in another order than Places365 (and places365_small):
#: list label -> Places365 class.
PLACES_LT_RENUMBERED = {
  116: "desert_road",  # Places365: 118.
  117: "desert/sand",  # 116.
  118: "desert/vegetation",  # 117.
  141: "field_road",  # 142.
  142: "field/wild",  # 141.
}


@pytest.mark.parametrize("name", ["Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"])
def test_places_lt_labels_are_the_tfds_class_ids_but_five(name):
  paths, labels = read_list(name)
  names = class_names("places365_small")
  assert len(names) == 365
  tfds_labels = np.asarray([names.index(places_class(p)) for p in paths])
  moved = labels != tfds_labels
  assert {int(k): names[t] for k, t in zip(labels[moved], tfds_labels[moved], strict=True)} == (
    PLACES_LT_RENUMBERED
  )
  # Still one to one, so TfdsListSource accepts it and keeps the list's labels.
  assert len(set(zip(labels.tolist(), tfds_labels.tolist(), strict=True))) == 365


def test_places_lt_keys_are_unique_and_val_is_not_train():
  split_paths = {s: read_list(f"Places_LT_{s}.txt")[0] for s in ("train", "val", "test")}
  keys = {s: placed_keys("places365_small", "places_lt", s, p) for s, p in split_paths.items()}
  assert set(keys["train"]) == set(keys["val"]) == {"train"}
  assert set(keys["test"]) == {"validation"}
  for s, by_split in keys.items():
    (found,) = by_split.values()
    assert len(set(found)) == len(found) == len(split_paths[s]), s
  assert not set(keys["train"]["train"]) & set(keys["val"]["train"])


class Records:
  """A places365_small split as tfds.data_source returns it: file names and labels
  (the image bytes are a constant, never decoded by the matching)."""

  def __init__(self, info, records):
    self.dataset_info, self.data_source, self._records = info, "fake", records

  def __len__(self):
    return len(self._records)

  def __getitem__(self, k):
    name, label = self._records[k]
    return {"image": b"", "label": label, "filename": name}

  def __getitems__(self, keys):
    return [self[k] for k in keys]


def test_places_lt_full_size_matching_against_tfds_file_names():
  """The real lists against places365_small's naming (``data_256/a/apartment_building/
  outdoor/00000794.jpg``, ``val_256/Places365_val_00003597.jpg``) and class ids, records
  shuffled, plus images in no list: every entry finds its record, in list order."""
  split_paths = {s: read_list(f"Places_LT_{s}.txt") for s in ("train", "val", "test")}
  names = class_names("places365_small")
  expected = {}
  for s, (paths, _) in split_paths.items():
    expected[s] = [
      f"val_256/{os.path.basename(p)}"
      if s == "test"
      else f"data_256/{places_class(p)[0]}/{places_class(p)}/{os.path.basename(p)}"
      for p in paths
    ]
  label_of = lambda name: names.index("/".join(name.split("/")[2:-1]))
  train = [(n.encode(), label_of(n)) for n in expected["train"] + expected["val"]]
  train += [(f"data_256/a/airfield/{k:08d}.jpg".encode(), 0) for k in range(6000, 6100)]
  val = [
    (n.encode(), names.index(places_class(p)))
    for n, p in zip(expected["test"], split_paths["test"][0], strict=True)
  ]
  rng = np.random.default_rng(0)
  tables = {"train": [train[i] for i in rng.permutation(len(train))], "validation": val[::-1]}

  def as_data_source(builder, split, decoders=None, **kwargs):
    return Records(builder.info, tables[split])

  sources, lists = {}, []
  with tfds.testing.mock_data(policy=USE_CODE, as_data_source_fn=as_data_source):
    for s, (_, labels) in split_paths.items():
      src = TfdsListSource(
        os.path.join(SPLITS_DIR, f"Places_LT_{s}.txt"),
        "places365_small",
        datasets.get("places_lt").tfds_layout("places365_small"),
        split=s,
        num_classes=365,
        sources=sources,
      )
      lists.append(src)
      np.testing.assert_array_equal(src.labels, labels)
      source = src._sources[0]
      assert [tables[source.split][k][0].decode() for k in src.record_index] == expected[s]
  assert sorted(sources) == ["train", "validation"]
  check_class_correspondence(*lists)


# --- iNaturalist 2018 -------------------------------------------------------------------------


def test_inat2018_val_list_is_placed_and_labelled_by_category_id():
  paths, labels = read_list("iNaturalist18_val.txt")
  assert len(class_names("i_naturalist2018")) == 8142
  np.testing.assert_array_equal(labels, [int(p.split("/")[2]) for p in paths])
  keys = placed_keys("i_naturalist2018", "inat2018", "val", paths)
  assert set(keys) == {"validation"}
  assert len(set(keys["validation"])) == len(paths) == 24_426
