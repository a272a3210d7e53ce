"""CIFAR-10/100-LT as the published numbers were obtained (``dataset.longtail='cao2019'``).

The published training set is the selection of Cao et al.'s ``IMBALANCECIFAR10/100``
(kaidic/LDAM-DRW, ``imbalance_cifar.py``), restated here in NumPy the way that code runs:
the legacy global RNG seeded once, then per class ``np.where`` + ``np.random.shuffle`` + the
first n_c. ltjax's selection must equal it on a label sequence shaped like CIFAR's, and
through a real (shuffled) TFDS ArrayRecord build of the catalogue ``cifar10`` builder.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers import CLOSED_SET_KEYS, TOP5_KEYS, load_config, run_ltjax
from PIL import Image

from ltjax.data import longtail
from ltjax.data.datasets import build_splits

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATIOS = (10, 50, 100)


def published_selection(targets: np.ndarray, cls_num: int, imb_factor: float) -> np.ndarray:
  """The published code's training positions (sorted), restated: rand_number=0."""
  np.random.seed(0)
  img_max = int(len(targets) / cls_num * 1.0)
  img_num_list = [int(img_max * (imb_factor ** (i / (cls_num - 1.0)))) for i in range(cls_num)]
  chosen = []
  for the_class, the_img_num in zip(np.unique(targets), img_num_list, strict=True):
    idx = np.where(targets == the_class)[0]
    np.random.shuffle(idx)
    chosen.append(idx[:the_img_num])
  return np.sort(np.concatenate(chosen))


def cifar_like_labels(num_classes: int, per_class: int, seed: int) -> np.ndarray:
  """A balanced label sequence in a random order (as CIFAR's files hold their classes)."""
  labels = np.repeat(np.arange(num_classes), per_class)
  return np.random.default_rng(seed).permutation(labels)


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("ratio", RATIOS)
def test_the_cut_equals_the_published_selection(num_classes, ratio):
  targets = cifar_like_labels(num_classes, 50_000 // num_classes, seed=ratio)
  expected = published_selection(targets, num_classes, 1 / ratio)
  np.testing.assert_array_equal(longtail.cao2019_indices(targets, num_classes, ratio), expected)
  counts = np.bincount(targets[expected], minlength=num_classes)
  head = 50_000 // num_classes
  assert counts[0] == head and counts[-1] == head // ratio  # 5000..50 / 500..5 at ratio 100.
  np.testing.assert_array_equal(counts, longtail.cao2019_counts(50_000, num_classes, ratio))
  # A global RNG used elsewhere does not move it.
  np.random.seed(123)
  np.testing.assert_array_equal(longtail.cao2019_indices(targets, num_classes, ratio), expected)


def test_published_counts_of_the_papers():
  """The counts the literature quotes: CIFAR-10 ratio 100 keeps 12,406 images, CIFAR-100
  10,847; ratio 10: 20,431 / 19,573; ratio 50: 13,996 / 12,608."""
  totals = {
    (10, 100): 12406,
    (100, 100): 10847,
    (10, 10): 20431,
    (100, 10): 19573,
    (10, 50): 13996,
    (100, 50): 12608,
  }
  for (k, ratio), total in totals.items():
    assert longtail.cao2019_counts(50_000, k, ratio).sum() == total, (k, ratio)


# --- through a real TFDS build ---------------------------------------------------------------

PER_CLASS, TEST_PER_CLASS = 200, 4
CatalogueCifar10 = tfds.builder_cls("cifar10")

with tfds.core.registered.skip_registration():

  class Cifar10(CatalogueCifar10):
    """The catalogue cifar10 (features, ids as its own `train_00000`) with fake records
    whose pixels encode their split and original position."""

    __module__ = "fake_cifar10_builder"  # One part: tfds skips its code_path lookup.
    TRAIN_LABELS = cifar_like_labels(10, PER_CLASS, seed=7)

    def _split_generators(self, dl_manager):
      del dl_manager
      test_labels = np.repeat(np.arange(10), TEST_PER_CLASS)
      return {
        "train": self._generate_examples("train_", self.TRAIN_LABELS),
        "test": self._generate_examples("test_", test_labels),
      }

    def _generate_examples(self, split_prefix, labels):
      for index, label in enumerate(labels):
        yield (
          index,
          {
            "id": f"{split_prefix}{index:05d}",
            "label": int(label),
            "image": mark(split_prefix, index),
          },
        )


def mark(split_prefix: str, index: int) -> io.BytesIO:
  """A 32x32x3 PNG whose first pixel holds (split, index)."""
  image = np.zeros((32, 32, 3), np.uint8)
  image[0, 0] = (1 if split_prefix == "train_" else 2, index // 256, index % 256)
  out = io.BytesIO()
  Image.fromarray(image).save(out, format="PNG")
  out.seek(0)
  return out


def read_marks(source, positions) -> list[tuple[int, int]]:
  images, _ = source.get_batch(np.asarray(positions))
  return [(int(im[0, 0, 0]), int(im[0, 0, 1]) * 256 + int(im[0, 0, 2])) for im in images]


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("cifar")
  Cifar10(data_dir=str(root), file_format="array_record").download_and_prepare()
  return str(root)


def cifar_config(data_dir, ratio, **dataset):
  config = load_config(os.path.join(REPO, "configs", "cifar10_lt", "joint.py"))
  config.dataset.data_dir = data_dir
  config.dataset.imbalance_ratio = float(ratio)
  config.dataset.update(dataset)
  return config


@pytest.mark.parametrize("ratio", RATIOS)
def test_tfds_cifar10_gives_the_published_images(cifar_dir, ratio):
  config = cifar_config(cifar_dir, ratio)
  assert config.dataset.longtail == "cao2019"
  splits = build_splits(config.dataset, seed=0)
  targets = Cifar10.TRAIN_LABELS
  expected = published_selection(targets, 10, 1 / ratio)
  # TFDS shuffled the records: the source's order is not the original one ...
  train_ids = [i for _, i in read_marks(splits.train.source, np.arange(len(targets)))]
  assert train_ids != sorted(train_ids)
  # ... yet the training images are exactly the published ones, labels included.
  marks = read_marks(splits.train, np.arange(len(splits.train)))
  assert {m[0] for m in marks} == {1}
  assert sorted(i for _, i in marks) == expected.tolist()
  np.testing.assert_array_equal(
    np.sort(splits.train.labels), np.sort(targets[expected]).astype(np.int32)
  )
  # Test: the whole test split, never in train or val.
  test_marks = read_marks(splits.test, np.arange(len(splits.test)))
  assert sorted(test_marks) == [(2, i) for i in range(10 * TEST_PER_CLASS)]
  # Val: 20 per class, off the training set except the head class's (kept whole by the cut).
  val_marks = read_marks(splits.val, np.arange(len(splits.val)))
  assert {m[0] for m in val_marks} == {1}
  np.testing.assert_array_equal(np.bincount(splits.val.labels, minlength=10), [20] * 10)
  val_ids = np.asarray([i for _, i in val_marks])
  in_train = np.isin(val_ids, expected)
  assert set(targets[val_ids[in_train]]) == {0}  # Only the head class's val is trained on.
  assert in_train.sum() == 20


def test_the_cut_ignores_the_seed_and_val_zero_is_the_papers_protocol(cifar_dir):
  a = build_splits(cifar_config(cifar_dir, 100).dataset, seed=0)
  b = build_splits(cifar_config(cifar_dir, 100).dataset, seed=5)
  np.testing.assert_array_equal(a.train.indices, b.train.indices)
  assert not np.array_equal(a.val.indices, b.val.indices)
  none = build_splits(cifar_config(cifar_dir, 100, val_per_class=0).dataset, seed=0)
  assert len(none.val) == 0
  np.testing.assert_array_equal(none.train.indices, a.train.indices)


def test_the_cut_refuses_what_it_cannot_mean(cifar_dir):
  with pytest.raises(ValueError, match="takes no n_max"):
    build_splits(cifar_config(cifar_dir, 100, n_max=100).dataset, seed=0)


@pytest.mark.parametrize("ratio", RATIOS)
def test_stats_prints_the_published_counts(cifar_dir, ratio, tmp_path):
  result = run_ltjax(
    "stats",
    "--config=cifar10_lt/joint.py",
    f"--config.dataset.data_dir={cifar_dir}",
    f"--config.dataset.imbalance_ratio={ratio}",
    cwd=tmp_path,
  )
  assert result.returncode == 0, result.stderr
  printed = [int(n) for n in re.findall(r"\d+: (\d+)", result.stdout)]
  expected = [int(PER_CLASS * (1 / ratio) ** (c / 9.0)) for c in range(10)]
  assert printed == expected
  assert "val: 200 images; test: 40 images" in result.stdout


def test_the_cifar_config_trains_on_the_published_cut(cifar_dir, tmp_path):
  from ltjax.train import experiment, loop

  config = cifar_config(cifar_dir, 10)
  config.batch_size = config.eval.batch_size = 64
  config.num_epochs = 1
  config.model.backbone = "cifar_resnet8"
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert set(summary) == CLOSED_SET_KEYS | TOP5_KEYS  # 10 classes: top-5 means something.
  exp, _ = experiment.setup(config)
  np.testing.assert_array_equal(
    exp.splits.train_counts, longtail.cao2019_counts(10 * PER_CLASS, 10, 10)
  )


def test_class_names_name_tfds_label_ids(cifar_dir, tmp_path):
  """dataset.class_names names a TFDS dataset's classes (what `ltjax clip-text` needs for
  CIFAR's LIFT config); the digests of a run without it are unchanged."""
  names = [f"class {k}" for k in range(10)]
  (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
  plain = build_splits(cifar_config(cifar_dir, 100).dataset, seed=0)
  assert plain.class_names is None
  named = build_splits(
    cifar_config(cifar_dir, 100, class_names=str(tmp_path / "names.txt")).dataset, seed=0
  )
  assert named.class_names == tuple(names)
  np.testing.assert_array_equal(named.train.indices, plain.train.indices)
  (tmp_path / "short.txt").write_text("a\nb\n")
  with pytest.raises(ValueError, match=r"names 2 classes, but the data has 10"):
    build_splits(cifar_config(cifar_dir, 100, class_names=str(tmp_path / "short.txt")).dataset, 0)
