"""Tests for ``ltjax.data.sources.tfds`` without TensorFlow and without downloads.

Two kinds of fake data are used:

* ``tfds.testing.mock_data(policy=MockPolicy.USE_CODE)`` for real catalogue datasets
  (cifar10, mnist, caltech101). It works with ``tfds.data_source`` without TensorFlow, with
  two limits in tfds 4.9.10 that ``TfdsSource`` works around (and that these tests cover):
  the mocked ``__getitems__`` is set as an unbound instance attribute of a MagicMock, so
  calling it raises ``TypeError: _getitems() missing ... 'record_keys'``; and any
  ``decoders=`` (e.g. ``SkipDecoding``) makes the mock encode fake images with TensorFlow.
  ``TfdsSource`` therefore reads mocked sources record by record with full decoding. The
  mock also ignores ``data_dir`` (its dataset directory does not exist), so the label cache
  is in memory there.
* A tiny real ArrayRecord dataset (``tiny_lt``, variable-size RGB images) prepared in a tmp
  dir with a ``GeneratorBasedBuilder(file_format="array_record")``. Preparing it needs no
  TensorFlow as long as images are given as ``PIL.Image`` objects (encoding NumPy arrays
  would call TF). The builder is defined under ``skip_registration()``, so
  ``tfds.data_source`` loads it from its files like a copied, prepared dataset. This covers
  what the mock cannot: batched ``__getitems__``, ``SkipDecoding`` label scans, the on-disk
  label cache, and pickling.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from ltjax.data.sources.tfds import TfdsSource

USE_CODE = tfds.testing.MockPolicy.USE_CODE
TINY_TRAIN = 23
TINY_TEST = 6

with tfds.core.registered.skip_registration():

  class TinyLt(tfds.core.GeneratorBasedBuilder):
    """Tiny 3-class dataset with images of varying size."""

    # A one-part module name makes tfds skip its `code_path` lookup, which for a module in
    # the namespace package `tests` needs the `importlib_resources` backport (not installed).
    __module__ = "tiny_lt_builder"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        disable_shuffling=True,  # Records stay in key order, so expected labels are known.
        features=tfds.features.FeaturesDict(
          {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(num_classes=3),
          }
        ),
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples(TINY_TRAIN), "test": self._generate_examples(6)}

    def _generate_examples(self, n):
      rng = np.random.default_rng(n)
      for i in range(n):
        size = (8 + i % 3, 8)  # (H, W): 8x8, 9x8 and 10x8 images.
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        yield i, {"image": Image.fromarray(image), "label": (i * 7) % 3}


def tiny_label(i: int) -> int:
  return (i * 7) % 3


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  TinyLt(data_dir=data_dir, file_format="array_record").download_and_prepare()
  return data_dir


def cache_files(data_dir):
  d = os.path.join(data_dir, "tiny_lt", "1.0.0")
  return sorted(f for f in os.listdir(d) if f.startswith("ltjax_labels"))


# --- tfds.testing.mock_data ------------------------------------------------------------


def test_mock_cifar10_labels_and_batch():
  with tfds.testing.mock_data(num_examples=37, policy=USE_CODE):
    src = TfdsSource("cifar10", "train", data_dir="/nonexistent/ignored/by/mock")
    assert src.num_classes == 10
    assert len(src) == 37
    assert src.labels.shape == (37,) and src.labels.dtype == np.int32
    assert src.labels.min() >= 0 and src.labels.max() < 10
    assert src.cache_path is None  # The mocked dataset dir does not exist: in memory.
    idx = np.array([3, 0, 36, 3])
    images, labels = src.get_batch(idx)
    assert images.dtype == np.uint8 and images.shape == (4, 32, 32, 3)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, src.labels[idx])
    np.testing.assert_array_equal(images[0], images[3])


def test_mock_mnist_grayscale_keeps_one_channel():
  with tfds.testing.mock_data(num_examples=5, policy=USE_CODE):
    src = TfdsSource("mnist", "test")
    images, labels = src.get_batch(np.arange(5))
  assert src.num_classes == 10
  assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, src.labels)


def test_mock_variable_sizes_need_image_size():
  with tfds.testing.mock_data(num_examples=4, policy=USE_CODE):
    src = TfdsSource("caltech101", "train")
    with pytest.raises(ValueError, match="set image_size"):
      src.get_batch(np.arange(4))
    resized = TfdsSource("caltech101", "train", image_size=24)
    images, _ = resized.get_batch(np.arange(4))
  assert src.num_classes == 102
  assert images.shape == (4, 24, 24, 3) and images.dtype == np.uint8


def test_mock_ids_come_with_the_labels():
  with tfds.testing.mock_data(num_examples=9, policy=USE_CODE):
    src = TfdsSource("cifar10", "train", id_key="id")
    plain = TfdsSource("cifar10", "train")
  assert src.ids.shape == (9,) and src.ids.dtype.kind == "S"
  assert src.ids_cache_path is None and plain.ids is None
  np.testing.assert_array_equal(src.labels, plain.labels)
  np.testing.assert_array_equal(src.id_index().find(src.ids[[4, 0]]), [4, 0])
  with pytest.raises(ValueError, match="has no id_key"):
    plain.id_index()


def test_mock_split_resized():
  with tfds.testing.mock_data(num_examples=6, policy=USE_CODE):
    test = TfdsSource("cifar10", "test", image_size=16)
    assert test.split == "test"
    images, _ = test.get_batch(np.array([1, 2]))
  assert images.shape == (2, 16, 16, 3)


def test_bad_arguments():
  with tfds.testing.mock_data(num_examples=2, policy=USE_CODE):
    with pytest.raises(ValueError, match="label_key='fine_label'.*Pass the right label_key"):
      TfdsSource("cifar10", "train", label_key="fine_label")
    with pytest.raises(ValueError, match="image_size must be a positive int"):
      TfdsSource("cifar10", "train", image_size=0)
    with pytest.raises(ValueError, match="id_key='file_name' is not a feature of cifar10"):
      TfdsSource("cifar10", "train", id_key="file_name")
    with pytest.raises(ValueError, match="id_key='label' of cifar10 is a ClassLabel, not a Text"):
      TfdsSource("cifar10", "train", id_key="label")
    src = TfdsSource("cifar10", "train")
    with pytest.raises(IndexError, match="index 2 is out of range"):
      src.get_batch(np.array([0, 2]))


# --- a real ArrayRecord dataset ---------------------------------------------------------


def test_real_arrayrecord_batches_and_resize(tiny_dir):
  src = TfdsSource("tiny_lt", "train", data_dir=tiny_dir)
  assert len(src) == TINY_TRAIN and src.num_classes == 3
  np.testing.assert_array_equal(src.labels, [tiny_label(i) for i in range(TINY_TRAIN)])
  images, labels = src.get_batch(np.array([0, 3, 6]))  # All 8x8.
  assert images.shape == (3, 8, 8, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, src.labels[[0, 3, 6]])
  with pytest.raises(ValueError, match="differ in size.*set image_size"):
    src.get_batch(np.array([0, 1]))
  resized = TfdsSource("tiny_lt", "train", data_dir=tiny_dir, image_size=8)
  images, _ = resized.get_batch(np.array([0, 1, 2]))
  assert images.shape == (3, 8, 8, 3)
  np.testing.assert_array_equal(images[0], src.get_batch(np.array([0]))[0][0])  # Not resized.


def test_label_cache_file_is_written_and_reused(tiny_dir, monkeypatch):
  first = TfdsSource("tiny_lt", "test", data_dir=tiny_dir)
  assert first.cache_path is not None and os.path.exists(first.cache_path)
  assert os.path.dirname(first.cache_path) == os.path.join(tiny_dir, "tiny_lt", "1.0.0")
  assert "tiny_lt-1.0.0-test-label" in os.path.basename(first.cache_path)
  np.testing.assert_array_equal(np.load(first.cache_path), first.labels)

  def no_scan(self):
    raise AssertionError("labels should come from the cache file")

  monkeypatch.setattr(TfdsSource, "_scan_records", no_scan)
  second = TfdsSource("tiny_lt", "test", data_dir=tiny_dir)
  np.testing.assert_array_equal(second.labels, [tiny_label(i) for i in range(TINY_TEST)])
  # A different split spec gets its own cache file, so it needs a scan.
  with pytest.raises(AssertionError, match="from the cache file"):
    TfdsSource("tiny_lt", "test[:3]", data_dir=tiny_dir)


def test_label_scan_skips_image_decoding_and_batches(tiny_dir, monkeypatch):
  from ltjax.data.sources import tfds as tfds_source

  def no_decode(self, example):
    raise AssertionError("the label scan decoded an image")

  monkeypatch.setattr(tfds.features.Image, "decode_example_np", no_decode)
  monkeypatch.setattr(tfds_source, "_CHUNK", 4)  # Several batched reads ...
  monkeypatch.setattr(tfds_source, "_PROGRESS_MIN", 5)  # ... under a progress bar.
  src = TfdsSource("tiny_lt", "train[2:13]", data_dir=tiny_dir)
  np.testing.assert_array_equal(src.labels, [tiny_label(i) for i in range(2, 13)])


def test_stale_label_cache_is_rebuilt(tiny_dir):
  src = TfdsSource("tiny_lt", "train[:12]", data_dir=tiny_dir)
  np.save(src.cache_path, (src.labels + 1) % 3)  # Same length, wrong contents.
  again = TfdsSource("tiny_lt", "train[:12]", data_dir=tiny_dir)
  np.testing.assert_array_equal(again.labels, [tiny_label(i) for i in range(12)])
  np.testing.assert_array_equal(np.load(src.cache_path), again.labels)


def test_read_only_dataset_dir(tiny_dir, monkeypatch):
  written = TfdsSource("tiny_lt", "test[1:]", data_dir=tiny_dir)  # While writable.
  n_files = len(cache_files(tiny_dir))
  monkeypatch.setattr(os, "access", lambda path, mode: False)
  # No cache yet: labels are scanned and kept in memory, nothing is written.
  src = TfdsSource("tiny_lt", "train[5:9]", data_dir=tiny_dir)
  assert src.cache_path is None
  np.testing.assert_array_equal(src.labels, [tiny_label(i) for i in range(5, 9)])
  assert len(cache_files(tiny_dir)) == n_files
  # An existing cache file is still read.
  monkeypatch.setattr(TfdsSource, "_scan_records", lambda self: 1 / 0)
  cached = TfdsSource("tiny_lt", "test[1:]", data_dir=tiny_dir)
  assert cached.cache_path == written.cache_path
  np.testing.assert_array_equal(cached.labels, written.labels)


def test_pickles_for_worker_processes(tiny_dir):
  src = TfdsSource("tiny_lt", "train", data_dir=tiny_dir, image_size=8)
  clone = pickle.loads(pickle.dumps(src))
  for a, b in zip(src.get_batch(np.array([4, 1])), clone.get_batch(np.array([4, 1])), strict=True):
    np.testing.assert_array_equal(a, b)


def test_bad_split_of_a_prepared_dataset_is_not_called_missing(tiny_dir):
  with pytest.raises(ValueError, match="Unknown split 'validation'"):
    TfdsSource("tiny_lt", "validation", data_dir=tiny_dir)


# --- missing datasets -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "tiny_lt"])
def test_missing_dataset_has_a_helpful_error(tmp_path, name):
  data_dir = str(tmp_path / "empty")
  os.makedirs(data_dir)
  with pytest.raises(ValueError) as info:
    TfdsSource(name, "train", data_dir=data_dir)
  msg = str(info.value)
  assert repr(name) in msg and data_dir in msg
  assert f"tfds build {name} --data_dir={data_dir} --file_format=array_record" in msg
  assert "copy" in msg
  assert info.value.__cause__ is not None
  assert len(msg) < 1000  # No list of all the TFDS datasets.
