"""Dataset builders: a named source turned into long-tailed train/val/test splits."""

from __future__ import annotations

import dataclasses
import functools
import os

import ml_collections
import numpy as np

from ltjax.data import longtail
from ltjax.data.sources import ArraySource, Concat, Source, Subset


@dataclasses.dataclass
class DataSplits:
  """The splits every stage uses.

  Attributes:
    train: long-tailed training set (known classes only).
    val: balanced validation set (known classes only), for model selection.
    test: balanced test set; open-set images, if any, carry label -1.
    num_classes: number of known classes K.
  """

  train: Source
  val: Source
  test: Source
  num_classes: int

  @functools.cached_property
  def train_counts(self) -> np.ndarray:
    return np.bincount(self.train.labels, minlength=self.num_classes).astype(np.int64)


def load_digits_source() -> ArraySource:
  """scikit-learn's handwritten digits (1,797 8x8 images, 10 classes; shipped with sklearn).

  Pixel values 0..16 are scaled to 0..255 uint8, one channel.
  """
  from sklearn.datasets import load_digits  # noqa: PLC0415 (slow import, only here)

  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  return ArraySource(images[..., None], digits.target.astype(np.int32), 10)


def build_longtail_splits(
  pool: Source,
  test: Source | None,
  *,
  seed: int,
  imbalance_ratio: float,
  n_max: int = 0,
  val_per_class: int = 0,
  test_per_class: int = 0,
  open_classes: tuple[int, ...] = (),
) -> DataSplits:
  """Carves balanced test/val sets and an exponentially long-tailed train set.

  Args:
    pool: source of training images (all classes, balanced or not).
    test: separate test source, or None to carve ``test_per_class`` images per class
      (open classes included) out of ``pool`` first.
    seed: the split is a pure function of the seed.
    imbalance_ratio: n_max / n_min of the train profile.
    n_max: head-class size; 0 takes the most the pool allows.
    val_per_class: balanced validation images per known class, from the pool.
    test_per_class: used only when ``test`` is None.
    open_classes: original class ids held out of train/val; their test images get -1.

  Returns:
    DataSplits with remapped labels 0..K'-1.
  """
  k = pool.num_classes
  label_map, num_known = longtail.open_set_label_map(k, open_classes)
  known = np.flatnonzero(label_map >= 0)
  rng_seeds = np.random.SeedSequence(seed).generate_state(3)
  available = np.arange(len(pool))
  if test is None:
    test_idx = longtail.take_per_class(pool.labels, [test_per_class] * k, int(rng_seeds[0]))
    test = Subset(pool, test_idx, label_map, num_known)
    available = np.setdiff1d(available, test_idx)
  else:
    test = Subset(test, np.arange(len(test)), label_map, num_known)
  available = available[label_map[pool.labels[available]] >= 0]
  val_counts = np.zeros(k, np.int64)
  val_counts[known] = val_per_class
  val_idx = longtail.take_per_class(pool.labels, val_counts, int(rng_seeds[1]), pool=available)
  available = np.setdiff1d(available, val_idx)
  if n_max <= 0:
    n_max = int(np.bincount(pool.labels[available], minlength=k)[known].min())
  counts = np.zeros(k, np.int64)
  counts[known] = longtail.exponential_counts(num_known, n_max, imbalance_ratio)
  train_idx = longtail.take_per_class(pool.labels, counts, int(rng_seeds[2]), pool=available)
  return DataSplits(
    train=Subset(pool, train_idx, label_map, num_known),
    val=Subset(pool, val_idx, label_map, num_known),
    test=test,
    num_classes=num_known,
  )


SPLIT_LIST_DATASETS = ("imagenet_lt", "places_lt", "inat2018")
DATASETS = ("digits", "tfds", *SPLIT_LIST_DATASETS)


def build_split_list_splits(
  cfg: ml_collections.ConfigDict, decode_min_size: int = 0, skip_corrupt: bool = False
) -> DataSplits:
  """The reference split lists (ImageNet_LT_train.txt, ...) over an image root.

  ``cfg.lists_dir`` holds the list files (default: ``cfg.root``); ``cfg.open_set``
  appends the open-set list (label -1) to the test split. With ``cfg.packed_dir`` every
  split is read from the ArrayRecord shards written by ``ltjax prepare`` instead (same
  labels and pixels; ``root`` and ``lists_dir`` are then not needed).
  """
  from ltjax.data.splitlist import DATASET_LISTS, SplitListSource  # noqa: PLC0415

  spec = DATASET_LISTS[cfg.name]
  min_size = decode_min_size or None
  if cfg.packed_dir:
    from ltjax.data.packed import PackedSource, packed_split_name  # noqa: PLC0415

    def source(split: str, allow_open: bool = False) -> Source:
      return PackedSource(
        cfg.packed_dir,
        packed_split_name(cfg.name, split),
        spec["num_classes"],
        allow_open=allow_open,
        min_size=min_size,
        skip_corrupt=skip_corrupt,
      )

  else:
    if not cfg.root:
      raise ValueError(
        f"dataset {cfg.name}: set --config.dataset.root to the image directory (or "
        "--config.dataset.packed_dir to the output of 'ltjax prepare')."
      )
    lists_dir = cfg.lists_dir or cfg.root

    def source(split: str, allow_open: bool = False) -> Source:
      return SplitListSource(
        os.path.join(lists_dir, spec[split]),
        cfg.root,
        spec["num_classes"],
        allow_open=allow_open,
        min_size=min_size,
        skip_corrupt=skip_corrupt,
      )

  test = source("test")
  if cfg.open_set:
    if "open" not in spec:
      raise ValueError(f"dataset {cfg.name} has no open-set list; unset dataset.open_set.")
    open_source = source("open", allow_open=True)
    known = np.flatnonzero(open_source.labels != -1)
    if known.size:
      raise ValueError(
        f"open-set list {open_source.list_file} has {known.size} record(s) with a label "
        f"other than -1 (first: line {open_source.lines[known[0]]}, label "
        f"{open_source.labels[known[0]]}); open-set images must all be labelled -1."
      )
    test = Concat(test, open_source)
  return DataSplits(
    train=source("train"), val=source("val"), test=test, num_classes=spec["num_classes"]
  )


def build_splits(cfg: ml_collections.ConfigDict, seed: int, data_cfg=None) -> DataSplits:
  """Builds the splits described by ``config.dataset`` (``config.data`` for decoding)."""
  if cfg.name in SPLIT_LIST_DATASETS:
    return build_split_list_splits(
      cfg,
      data_cfg.decode_min_size if data_cfg else 0,
      bool(data_cfg.skip_corrupt) if data_cfg else False,
    )
  common = dict(
    seed=seed,
    imbalance_ratio=cfg.imbalance_ratio,
    n_max=cfg.n_max,
    val_per_class=cfg.val_per_class,
    open_classes=tuple(cfg.open_classes),
  )
  if cfg.name == "digits":
    return build_longtail_splits(
      load_digits_source(), None, test_per_class=cfg.test_per_class, **common
    )
  if cfg.name == "tfds":
    from ltjax.data.tfds_source import TfdsSource  # noqa: PLC0415

    kw = dict(data_dir=cfg.data_dir or None, image_size=cfg.image_size or None)
    pool = TfdsSource(cfg.tfds_name, cfg.train_split, **kw)
    test = TfdsSource(cfg.tfds_name, cfg.test_split, **kw)
    return build_longtail_splits(pool, test, **common)
  raise ValueError(f"unknown dataset {cfg.name!r}; valid: {', '.join(DATASETS)}.")
