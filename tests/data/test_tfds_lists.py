"""Reference split lists over TFDS datasets (``TfdsListSource``), without downloads.

Two kinds of fake TFDS data:

* ``tfds.testing.mock_data(policy=USE_CODE, as_data_source_fn=...)``: the real catalogue
  builders (imagenet2012, places365_small, i_naturalist2018: their real features and class
  names), with records whose file names, labels and images the test chooses. The fake
  split honours ``decoders`` like a real one (``SkipDecoding`` gives the encoded bytes) and
  has batched ``__getitems__``, so ``TfdsSource`` takes its real code path.
* A real ArrayRecord ``imagenet2012`` prepared in a tmp dir by a subclass of the catalogue
  builder: covers what the mock cannot (the on-disk id cache, stale caches, pickling).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers import load_config, set_num_classes, shrink_imagenet_config
from PIL import Image

from ltjax.data import datasets
from ltjax.data.datasets import build_splits
from ltjax.data.sources import Concat, splitlist
from ltjax.data.sources import tfds as tfds_source
from ltjax.data.sources.tfds import KeyIndex, TfdsSource
from ltjax.data.sources.tfds_lists import TfdsListSource
from ltjax.train import experiment


def list_layout(tfds_name, dataset="imagenet_lt"):
  return datasets.get(dataset).tfds_layout(tfds_name)


IMAGENET = list_layout("imagenet2012")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
USE_CODE = tfds.testing.MockPolicy.USE_CODE
ID_KEYS = {"imagenet2012": "file_name", "places365_small": "filename", "i_naturalist2018": "id"}
SYNSETS = ["n01440764", "n01443537", "n01484850", "n01491361"]  # Classes 0-3 of ILSVRC-2012.
COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]])


def png(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")  # Lossless: decoded pixels are exact.
  return buf.getvalue()


def make_image(label: int, rng: np.random.Generator) -> np.ndarray:
  h, w = rng.integers(16, 24, 2)
  noise = rng.normal(0, 20, (h, w, 3))
  return np.clip(COLOURS[label % 4] + noise, 0, 255).astype(np.uint8)


class FakeSplit:
  """One TFDS split as ``tfds.data_source`` returns it, holding chosen records."""

  def __init__(self, info, id_key, records, decoders):
    self.dataset_info = info
    self.data_source = "fake"  # Not a Mock: TfdsSource reads it as a real source.
    self._id_key = id_key
    self._records = records  # [(id, label, image)]
    self._encoded = bool(decoders)  # SkipDecoding of the image: the bytes.
    self.reads = 0

  def __len__(self):
    return len(self._records)

  def __getitem__(self, k):
    name, label, image = self._records[k]
    self.reads += 1
    return {
      "image": png(image) if self._encoded else image,
      "label": label,
      self._id_key: name.encode(),
    }

  def __getitems__(self, keys):
    return [self[k] for k in keys]


@contextlib.contextmanager
def fake_tfds(tables):
  """Mocks ``tfds.data_source``: ``tables[(builder name, split)]`` = [(id, label, image)]."""

  def as_data_source(builder, split, decoders=None, **kwargs):
    del kwargs
    records = tables.get((builder.name, split))
    if records is None:
      raise ValueError(f"Unknown split {split!r}")
    return FakeSplit(builder.info, ID_KEYS[builder.name], records, decoders)

  with tfds.testing.mock_data(policy=USE_CODE, as_data_source_fn=as_data_source):
    yield


def write_list(path, entries):
  with open(path, "w") as f:
    f.write("".join(f"{p} {label}\n" for p, label in entries))


def fake_imagenet(root, seed=0, train=(12, 6, 3, 2), val=2, test=2, extra=3):
  """A 4-class ImageNet-LT: TFDS imagenet2012 tables (records shuffled, plus images in no
  list) and the four reference lists under ``root`` (shuffled, with an open list)."""
  rng = np.random.default_rng(seed)
  os.makedirs(root, exist_ok=True)
  train_recs, val_recs, lists = [], [], {"train": [], "val": [], "test": []}
  for c, syn in enumerate(SYNSETS):
    names = [f"{syn}_{k * 7 + 1}.JPEG" for k in range(train[c] + val + extra)]
    train_recs += [(n, c, make_image(c, rng)) for n in names]
    lists["train"] += [(f"train/{syn}/{n}", c) for n in names[: train[c]]]
    lists["val"] += [(f"train/{syn}/{n}", c) for n in names[train[c] : train[c] + val]]
  for k in range(4 * (test + extra)):
    c, name = k % 4, f"ILSVRC2012_val_{k + 1:08d}.JPEG"
    val_recs.append((name, c, make_image(c, rng)))
    if k < 4 * test:
      lists["test"].append((f"val/{SYNSETS[c]}/{name}", c))
  for split, entries in lists.items():
    order = rng.permutation(len(entries))
    write_list(os.path.join(root, f"ImageNet_LT_{split}.txt"), [entries[i] for i in order])
  os.makedirs(os.path.join(root, "ImageNet_LT_open"), exist_ok=True)
  for i in range(3):
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
      os.path.join(root, f"ImageNet_LT_open/{i}.jpg")
    )
  write_list(
    os.path.join(root, "ImageNet_LT_open.txt"),
    [(f"ImageNet_LT_open/{i}.jpg", -1) for i in range(3)],
  )
  train_recs = [train_recs[i] for i in rng.permutation(len(train_recs))]
  val_recs = [val_recs[i] for i in rng.permutation(len(val_recs))]
  return {("imagenet2012", "train"): train_recs, ("imagenet2012", "validation"): val_recs}


def images_by_name(tables):
  return {name: image for recs in tables.values() for name, _, image in recs}


@pytest.fixture
def four_classes(monkeypatch):
  for name in ("imagenet_lt", "places_lt", "inat2018"):
    set_num_classes(monkeypatch, name, 4)


def imagenet_config(lists_dir, **dataset):
  config = load_config(os.path.join(REPO, "configs", "imagenet_lt", "joint_sqrt.py"))
  config.dataset.tfds_name = "imagenet2012"
  config.dataset.lists_dir = str(lists_dir)
  for k, v in dataset.items():
    config.dataset[k] = v
  return config


# --- matching -----------------------------------------------------------------------------


def test_key_index_finds_every_wanted_key():
  available = np.array([b"c", b"a", b"d", b"b"])
  find = lambda wanted, available: KeyIndex(available).find(wanted)
  np.testing.assert_array_equal(find([b"b", b"x", b"c", b"b"], available), [3, -1, 0, 3])
  np.testing.assert_array_equal(find([b"a"], np.zeros(0, "S1")), [-1])
  with pytest.raises(ValueError, match=r"1 key\(s\) occur more than once.*'a'"):
    find([b"a"], np.array([b"a", b"b", b"a"]))
  find([b"b"], np.array([b"a", b"b", b"a"]))  # A duplicate nobody asks for is fine.


def test_layouts_place_the_reference_paths():
  imagenet = list_layout("imagenet2012:5.1.0", "imagenet_lt")
  assert imagenet.tfds_split("train/n01440764/n01440764_762.JPEG", "val") == "train"
  assert imagenet.tfds_split("val/n01440764/ILSVRC2012_val_00029930.JPEG", "test") == "validation"
  assert imagenet.tfds_split("ImageNet_LT_open/n01_1.JPEG", "open") is None
  assert imagenet.list_key("val/n01440764/ILSVRC2012_val_00029930.JPEG") == (
    "ILSVRC2012_val_00029930.JPEG"
  )
  places = list_layout("places365_small", "places_lt")
  key = places.list_key("train/apartment_building-outdoor/00000794.jpg")
  assert key == places.tfds_key("data_256/a/apartment_building/outdoor/00000794.jpg")
  assert key == "apartment_building-outdoor/00000794.jpg"
  assert places.list_key("val/airfield/Places365_val_00003597.jpg") == places.tfds_key(
    "val_256/Places365_val_00003597.jpg"
  )
  inat = list_layout("i_naturalist2018", "inat2018")
  assert inat.list_key("train_val2018/Plantae/7291/9f8ecb39e5f767e39e9b28e34488f179.jpg") == (
    "9f8ecb39e5f767e39e9b28e34488f179"
  )
  assert inat.tfds_split("train_val2018/Plantae/7291/x.jpg", "test") == "validation"
  assert list_layout("imagenet_lt", "imagenet_lt").tfds_split("train/n0/n0_1.JPEG", "val") == (
    "validation"
  )


def test_unknown_or_mismatched_tfds_name():
  with pytest.raises(ValueError, match=r"'cifar10' cannot serve.*Valid: imagenet2012"):
    list_layout("cifar10")
  with pytest.raises(ValueError, match=r"'places365_small' cannot serve.*Valid: imagenet2012"):
    list_layout("places365_small", "imagenet_lt")


# --- mocked TFDS ------------------------------------------------------------------------------


def test_list_gives_exactly_its_images_and_labels_in_order(tmp_path):
  tables = fake_imagenet(tmp_path)
  expected = images_by_name(tables)
  with fake_tfds(tables):
    for split, tfds_split in (("train", "train"), ("val", "train"), ("test", "validation")):
      list_file = tmp_path / f"ImageNet_LT_{split}.txt"
      paths, labels = splitlist.parse_split_file(list_file)
      src = TfdsListSource(list_file, "imagenet2012", IMAGENET, split=split, num_classes=4)
      assert src.tfds_splits == (tfds_split,)
      assert src.paths == paths and len(src) == len(paths)
      np.testing.assert_array_equal(src.labels, labels)
      source = src._sources[0]
      np.testing.assert_array_equal(
        source.ids[src.record_index], [os.path.basename(p).encode() for p in paths]
      )
      order = np.arange(len(src))[::-1]  # Any order of indices.
      images, batch_labels = src.get_batch(order)
      np.testing.assert_array_equal(batch_labels, labels[order])
      for i, image in zip(order, images, strict=True):
        np.testing.assert_array_equal(image, expected[os.path.basename(paths[i])])


def test_build_splits_from_tfds_shares_the_scans(tmp_path, four_classes, monkeypatch):
  tables = fake_imagenet(tmp_path)
  opened = []
  original = TfdsSource.__init__

  def counting_init(self, name, split, *args, **kwargs):
    opened.append(split)
    original(self, name, split, *args, **kwargs)

  monkeypatch.setattr(TfdsSource, "__init__", counting_init)
  config = imagenet_config(tmp_path)
  config.data.decode_min_size = 256
  with fake_tfds(tables):
    splits = build_splits(config.dataset, 0, config.data)
  assert sorted(opened) == ["train", "validation"]  # ILSVRC train serves two lists.
  np.testing.assert_array_equal(splits.train_counts, [12, 6, 3, 2])
  assert len(splits.val) == 8 and len(splits.test) == 8
  assert splits.train._sources[0] is splits.val._sources[0]
  # Draft decoding (data.decode_min_size) for training images only, never evaluation.
  assert splits.train.min_size == 256 and splits.val.min_size is None


def test_open_set_comes_from_root_or_is_a_clear_error(tmp_path, four_classes):
  tables = fake_imagenet(tmp_path)
  config = imagenet_config(tmp_path, open_set=True)
  with fake_tfds(tables):
    with pytest.raises(ValueError, match=r"open-set images are in no TFDS dataset.*ImageNet-2010"):
      build_splits(config.dataset, 0, config.data)
    config.dataset.root = str(tmp_path)
    splits = build_splits(config.dataset, 0, config.data)
  assert isinstance(splits.test, Concat) and len(splits.test) == 8 + 3
  assert (splits.test.labels == -1).sum() == 3
  images, labels = splits.test.get_batch(np.array([0, 9]))
  assert labels[1] == -1 and images[1].shape == (20, 20, 3)


def test_missing_entries_are_counted_and_listed(tmp_path):
  tables = fake_imagenet(tmp_path)
  entries = [(f"train/{SYNSETS[0]}/{SYNSETS[0]}_{k}.JPEG", 0) for k in (1, 2, 3, 4, 5, 6, 8, 9)]
  write_list(tmp_path / "bad.txt", entries)  # _1 and _8 exist (k * 7 + 1), six do not.
  with fake_tfds(tables):
    with pytest.raises(ValueError) as info:
      TfdsListSource(tmp_path / "bad.txt", "imagenet2012", IMAGENET, split="train", num_classes=4)
  msg = str(info.value)
  assert "6 of the 8 entries" in msg and "split 'train'" in msg
  assert "line 2 'train/n01440764/n01440764_2.JPEG'" in msg and ", ..." in msg
  assert "line 9" not in msg  # The first five only.


def test_classes_must_correspond_one_to_one(tmp_path):
  tables = fake_imagenet(tmp_path)
  write_list(
    tmp_path / "bad.txt",
    [
      (f"train/{SYNSETS[0]}/{SYNSETS[0]}_1.JPEG", 0),
      (f"train/{SYNSETS[0]}/{SYNSETS[0]}_8.JPEG", 2),
    ],
  )
  with fake_tfds(tables):
    with pytest.raises(ValueError) as info:
      TfdsListSource(tmp_path / "bad.txt", "imagenet2012", IMAGENET, split="train", num_classes=4)
  msg = str(info.value)
  assert "do not correspond one to one: TFDS class 0 is two classes" in msg
  assert "bad.txt, line 1 'train/n01440764/n01440764_1.JPEG': list label 0, TFDS label 0 " in msg
  assert (
    "line 2 'train/n01440764/n01440764_8.JPEG': list label 2, TFDS label 0 ('n01440764')" in msg
  )


def test_a_consistent_renumbering_keeps_the_list_labels(tmp_path, four_classes, caplog):
  """Like Places-LT, whose lists number 5 classes in another order than places365_small."""
  tables = fake_imagenet(tmp_path)
  original = {}
  for split in ("train", "val", "test"):
    path = tmp_path / f"ImageNet_LT_{split}.txt"
    original[split] = path.read_text()
    swap = {"0": "1", "1": "0"}  # Classes 0 and 1 swapped in every list.
    entries = (line.split() for line in original[split].splitlines())
    path.write_text("".join(f"{p} {swap.get(c, c)}\n" for p, c in entries))
  config = imagenet_config(tmp_path)
  with fake_tfds(tables):
    with caplog.at_level("INFO"):
      splits = build_splits(config.dataset, 0, config.data)
    np.testing.assert_array_equal(splits.train_counts, [6, 12, 3, 2])
    assert "numbers 2 of its classes differently from TFDS imagenet2012 (list 0 = TFDS 1" in (
      caplog.text
    )
    (tmp_path / "ImageNet_LT_val.txt").write_text(original["val"])  # Lists that disagree.
    with pytest.raises(ValueError, match=r"list class 0 is two classes.*ImageNet_LT_(train|val)"):
      build_splits(config.dataset, 0, config.data)


def test_entries_outside_the_tfds_splits_are_an_error(tmp_path):
  tables = fake_imagenet(tmp_path)
  write_list(tmp_path / "open.txt", [("ImageNet_LT_open/n01440764_1.JPEG", 3)])
  with fake_tfds(tables):
    with pytest.raises(ValueError, match=r"1 entries .* cannot be placed .*line 1 'ImageNet_LT"):
      TfdsListSource(tmp_path / "open.txt", "imagenet2012", IMAGENET, split="test", num_classes=4)


def test_config_errors(tmp_path, four_classes):
  config = imagenet_config(tmp_path)
  config.dataset.tfds_name = "places365_small"
  with pytest.raises(ValueError, match="cannot serve the split lists of imagenet_lt"):
    build_splits(config.dataset, 0, config.data)
  config.dataset.tfds_name, config.dataset.lists_dir = "imagenet2012", ""
  with pytest.raises(ValueError, match="set --config.dataset.lists_dir"):
    build_splits(config.dataset, 0, config.data)


def test_places_lt_matches_by_class_and_number(tmp_path, four_classes):
  rng = np.random.default_rng(1)
  classes = ["airfield", "apartment_building/outdoor", "arena/hockey", "alley"]  # Ids 0, 8, ...
  ids = [0, 1, 2, 3]  # Relabelled 0-3 for a 4-class test (the list says the same).
  train = [
    (f"data_256/{c[0]}/{c}/{n:08d}.jpg", i, make_image(i, rng))
    for i, c in zip(ids, classes, strict=True)
    for n in (1, 2, 3)  # The same numbers in every class: only class + number is unique.
  ]
  val = [
    (f"val_256/Places365_val_{k:08d}.jpg", k % 4, make_image(k % 4, rng)) for k in (1, 2, 3, 4)
  ]
  tables = {("places365_small", "train"): train[::-1], ("places365_small", "validation"): val}
  flat = [c.replace("/", "-") for c in classes]
  write_list(
    tmp_path / "Places_LT_train.txt",
    [(f"train/{flat[i]}/{n:08d}.jpg", i) for i in ids for n in (1, 2)],
  )
  write_list(tmp_path / "Places_LT_val.txt", [(f"train/{flat[i]}/00000003.jpg", i) for i in ids])
  write_list(
    tmp_path / "Places_LT_test.txt",
    [(f"val/{flat[k % 4]}/Places365_val_{k:08d}.jpg", k % 4) for k in (3, 1)],
  )
  config = load_config(os.path.join(REPO, "configs", "places_lt", "joint.py"))
  config.dataset.tfds_name, config.dataset.lists_dir = "places365_small", str(tmp_path)
  with fake_tfds(tables):
    splits = build_splits(config.dataset, 0, config.data)
    images, labels = splits.train.get_batch(np.array([2]))
  expected = {name: image for name, _, image in train}
  np.testing.assert_array_equal(
    images[0], expected["data_256/a/apartment_building/outdoor/00000001.jpg"]
  )
  assert labels[0] == 1
  np.testing.assert_array_equal(splits.test.labels, [3, 1])
  assert splits.test.tfds_splits == ("validation",) and splits.val.tfds_splits == ("train",)


def test_inat2018_matches_by_id_and_val_is_test(tmp_path, four_classes):
  rng = np.random.default_rng(2)
  hashes = [f"{k:032x}" for k in range(12)]
  records = [(h, k % 4, make_image(k % 4, rng)) for k, h in enumerate(hashes)]
  tables = {
    ("i_naturalist2018", "train"): records[:8],
    ("i_naturalist2018", "validation"): records[8:],
  }
  lines = lambda recs: [(f"train_val2018/Plantae/{c}/{h}.jpg", c) for h, c, _ in recs]
  write_list(tmp_path / "iNaturalist18_train.txt", lines(records[:8]))
  write_list(tmp_path / "iNaturalist18_val.txt", lines(records[8:][::-1]))
  config = load_config(os.path.join(REPO, "configs", "inat2018", "joint.py"))
  config.dataset.tfds_name, config.dataset.lists_dir = "i_naturalist2018", str(tmp_path)
  with fake_tfds(tables):
    splits = build_splits(config.dataset, 0, config.data)
    images, _ = splits.test.get_batch(np.array([0]))
  assert splits.val is splits.test and splits.test.tfds_splits == ("validation",)
  np.testing.assert_array_equal(images[0], records[11][2])
  np.testing.assert_array_equal(splits.train_counts, [2, 2, 2, 2])


# --- a real ArrayRecord imagenet2012 ---------------------------------------------------------

# Looked up outside skip_registration: the lookup imports tfds's legacy dataset modules,
# which must register (i_naturalist2018 is one).
CatalogueImagenet2012 = tfds.builder_cls("imagenet2012")

with tfds.core.registered.skip_registration():

  class Imagenet2012(CatalogueImagenet2012):
    """The catalogue imagenet2012 (features, 1,000 class names) with a few fake records."""

    # A one-part module name makes tfds skip its code_path lookup (see test_tfds_source.py).
    __module__ = "fake_imagenet2012_builder"
    TABLES: dict = {}

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(split) for _, split in self.TABLES}

    def _generate_examples(self, split):
      for name, label, image in self.TABLES[("imagenet2012", split)]:
        yield name, {"image": io.BytesIO(png(image)), "label": label, "file_name": name}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(data_dir, lists_dir, tables): a prepared ArrayRecord imagenet2012 and its lists."""
  root = tmp_path_factory.mktemp("prepared")
  tables = fake_imagenet(str(root / "lists"), seed=3)
  Imagenet2012.TABLES = tables
  Imagenet2012(data_dir=str(root / "tfds"), file_format="array_record").download_and_prepare()
  return str(root / "tfds"), str(root / "lists"), tables


def test_real_arrayrecord_ids_are_cached_and_images_never_decoded_by_tfds(prepared, monkeypatch):
  data_dir, lists_dir, tables = prepared
  expected = images_by_name(tables)

  def no_decode(self, example):
    raise AssertionError("tfds decoded an image; ltjax should read the encoded bytes")

  monkeypatch.setattr(tfds.features.Image, "decode_example_np", no_decode)
  list_file = os.path.join(lists_dir, "ImageNet_LT_val.txt")
  src = TfdsListSource(
    list_file, "imagenet2012", IMAGENET, split="val", data_dir=data_dir, num_classes=4
  )
  source = src._sources[0]
  assert source.ids_cache_path and os.path.exists(source.ids_cache_path)
  assert os.path.dirname(source.ids_cache_path) == os.path.join(data_dir, "imagenet2012", "5.1.0")
  assert "ltjax_ids-imagenet2012-5.1.0-train-file_name" in source.ids_cache_path
  np.testing.assert_array_equal(np.load(source.ids_cache_path), source.ids)
  assert os.path.exists(source.cache_path)  # The labels came with the same pass.

  monkeypatch.setattr(TfdsSource, "_scan_records", lambda self: 1 / 0)  # Cached from now on.
  again = TfdsListSource(
    list_file, "imagenet2012", IMAGENET, split="val", data_dir=data_dir, num_classes=4
  )
  np.testing.assert_array_equal(again.record_index, src.record_index)
  images, _ = again.get_batch(np.arange(len(again)))
  for path, image in zip(again.paths, images, strict=True):
    np.testing.assert_array_equal(image, expected[os.path.basename(path)])
  clone = pickle.loads(pickle.dumps(again))
  np.testing.assert_array_equal(clone.get_batch(np.array([3]))[0][0], images[3])


def test_stale_id_cache_is_detected(prepared, monkeypatch):
  data_dir, lists_dir, _ = prepared
  list_file = os.path.join(lists_dir, "ImageNet_LT_test.txt")
  src = TfdsListSource(
    list_file, "imagenet2012", IMAGENET, split="test", data_dir=data_dir, num_classes=4
  )
  path = src._sources[0].ids_cache_path
  ids = np.load(path)
  # A cache that a spot check catches is rebuilt.
  np.save(path, ids[::-1])
  TfdsListSource(
    list_file, "imagenet2012", IMAGENET, split="test", data_dir=data_dir, num_classes=4
  )
  np.testing.assert_array_equal(np.load(path), ids)
  # One that slips through the spot check (only record 0 checked here) fails on reading.
  monkeypatch.setattr(tfds_source, "_SPOT_CHECKS", 1)
  swapped = ids.copy()
  swapped[[1, 2]] = ids[[2, 1]]
  np.save(path, swapped)
  stale = TfdsListSource(
    list_file, "imagenet2012", IMAGENET, split="test", data_dir=data_dir, num_classes=4
  )
  row = int(np.flatnonzero(np.isin(stale.record_index, [1, 2]))[0])
  with pytest.raises(ValueError, match=r"the dataset changed since the cache was written"):
    stale.get_batch(np.array([row]))
  np.save(path, ids)


# --- end to end -------------------------------------------------------------------------------


def test_imagenet_lt_config_trains_from_mocked_tfds(tmp_path, four_classes):
  from ltjax.train import loop

  tables = fake_imagenet(tmp_path / "lists")
  config = shrink_imagenet_config(
    imagenet_config(tmp_path / "lists", open_set=True, root=str(tmp_path / "lists"))
  )
  with fake_tfds(tables):
    summary = loop.train_and_evaluate(config, str(tmp_path / "run"))
    exp, _ = experiment.setup(config)
  assert {"many", "medium", "few", "all", "open_f_measure", "open_auroc"} <= set(summary)
  # The reference config's protocol: its best validation epoch tested, and said so.
  assert summary["selection"] == "best_val" and summary["val_accuracy"] is not None
  assert os.path.isdir(tmp_path / "run" / "best")
  assert isinstance(exp.splits.train, TfdsListSource)
  assert len(exp.splits.test) == 8 + 3 and (exp.splits.test.labels == -1).sum() == 3
  np.testing.assert_array_equal(exp.splits.train_counts, [12, 6, 3, 2])
