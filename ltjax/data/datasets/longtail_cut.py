"""Datasets made long-tailed by cutting a balanced one: the cut (an exponential profile
drawn by seed, or the published CIFAR-LT training set of Cao et al. 2019) and the two table
entries that use it, ``digits`` (scikit-learn's digits, embedded) and ``tfds`` (a prepared
TFDS dataset such as CIFAR-10/100)."""

from __future__ import annotations

import dataclasses
import logging

import ml_collections
import numpy as np

from ltjax.data import longtail
from ltjax.data.datasets.registry import Dataset, DataSplits, register
from ltjax.data.sources.base import ArraySource, Source, Subset

log = logging.getLogger(__name__)

_LONGTAIL_FIELDS = ("imbalance_ratio", "n_max", "longtail", "val_per_class", "open_classes")


def load_digits_source() -> ArraySource:
  """scikit-learn's handwritten digits (1,797 8x8 images, 10 classes; shipped with sklearn).

  Pixel values 0..16 are scaled to 0..255 uint8, one channel.
  """
  from sklearn.datasets import load_digits

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
  profile: str = "exponential",
  original_order: np.ndarray | None = None,
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
    profile: "exponential" cuts the train split to n_j = n_max * ratio^(-j/(K-1));
      "none" keeps every remaining image (the pool's own class distribution); "cao2019"
      the published CIFAR-LT training set (``build_cao2019_splits``).
    original_order: "cao2019" only: see ``build_cao2019_splits``.

  Returns:
    DataSplits with remapped labels 0..K'-1.
  """
  if profile == "cao2019":
    if test is None or open_classes or n_max:
      raise ValueError(
        "dataset.longtail='cao2019' is the published CIFAR-LT cut of a whole balanced "
        "training split, tested on the dataset's own test split: it takes no n_max "
        "(set --config.dataset.n_max=0) and no open_classes, and needs a dataset with a "
        "test split (dataset.name='tfds')."
      )
    return build_cao2019_splits(
      pool,
      test,
      original_order,
      seed=seed,
      imbalance_ratio=imbalance_ratio,
      val_per_class=val_per_class,
    )
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
  if profile == "none":
    train_idx = available
  else:
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


def build_cao2019_splits(
  pool: Source,
  test: Source,
  original_order: np.ndarray | None,
  *,
  seed: int,
  imbalance_ratio: float,
  val_per_class: int,
) -> DataSplits:
  """CIFAR-10/100-LT exactly as the published numbers were obtained (Cao et al., NeurIPS
  2019; ``ltjax.data.longtail.cao2019_indices``), with a validation split that never
  touches test.

  Train: the published selection (its own fixed seed 0, whatever ``seed`` is). Test: the
  dataset's test split, whole. Validation (the papers have none; they select on test):
  ``val_per_class`` images per class, by ``seed``, from the training-split images the cut
  leaves out, so they are never trained on; a class with fewer left out (the head class
  has none) takes the rest of its validation images from its training images, which it
  is then also trained on, and the log says so. ``val_per_class=0``: no validation.

  Args:
    pool: the balanced training split.
    test: the test split.
    original_order: ``(N,)`` positions in ``pool`` of the records in the dataset's original
      order (CIFAR's python batches), or None when ``pool`` is in that order already.
    seed: the validation draw.
    imbalance_ratio: n_max / n_min (100, 50, 10 in the papers).
    val_per_class: validation images per class.
  """
  k = pool.num_classes
  n = len(pool)
  order = np.arange(n) if original_order is None else np.asarray(original_order, np.int64)
  if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
    raise ValueError(f"original_order must be a permutation of the {n:,} pool positions.")
  labels = np.asarray(pool.labels)
  train_idx = np.sort(order[longtail.cao2019_indices(labels[order], k, imbalance_ratio)])
  left_out = np.setdiff1d(np.arange(n), train_idx)
  available = np.bincount(labels[left_out], minlength=k)
  from_left = np.minimum(val_per_class, available)
  val_idx = longtail.take_per_class(labels, from_left, seed, pool=left_out)
  short = np.flatnonzero(from_left < val_per_class)
  if val_per_class and short.size:
    train_counts = np.bincount(labels[train_idx], minlength=k)
    extra = np.zeros(k, np.int64)
    extra[short] = np.minimum(val_per_class - from_left[short], train_counts[short])
    seen = longtail.take_per_class(labels, extra, seed + 1, pool=train_idx)
    val_idx = np.sort(np.concatenate([val_idx, seen]))
    log.info(
      "cao2019: class(es) %s have only %s image(s) outside the published training set, so "
      "%s of their validation images are training images (trained on: their validation "
      "accuracy is optimistic).",
      ", ".join(map(str, short[:10])) + (", ..." if short.size > 10 else ""),
      "/".join(map(str, available[short][:10])),
      "/".join(map(str, extra[short][:10])),
    )
  log.info(
    "cao2019: the published CIFAR-LT training set (%d images, ratio %g, Cao et al. 2019); "
    "validation %d images (%d per class, seed %d); test: the whole test split (%d).",
    len(train_idx),
    imbalance_ratio,
    len(val_idx),
    val_per_class,
    seed,
    len(test),
  )
  return DataSplits(
    train=Subset(pool, train_idx),
    val=Subset(pool, val_idx),
    test=Subset(test, np.arange(len(test))),
    num_classes=k,
    shared=(("train", "val"),) if val_per_class and short.size else (),
  )


def _longtail_options(cfg, seed: int) -> dict:
  return dict(
    profile=cfg.longtail,
    seed=seed,
    imbalance_ratio=cfg.imbalance_ratio,
    n_max=cfg.n_max,
    val_per_class=cfg.val_per_class,
    open_classes=tuple(cfg.open_classes),
  )


def build_digits_splits(cfg: ml_collections.ConfigDict, seed: int, data_cfg=None) -> DataSplits:
  """digits-LT: scikit-learn's digits with balanced test and val sets carved out and the
  rest cut to an exponential long tail (``dataset.imbalance_ratio``, ``n_max``)."""
  del data_cfg
  return build_longtail_splits(
    load_digits_source(), None, test_per_class=cfg.test_per_class, **_longtail_options(cfg, seed)
  )


def build_tfds_splits(cfg: ml_collections.ConfigDict, seed: int, data_cfg=None) -> DataSplits:
  """A prepared TFDS dataset (``dataset.tfds_name``) whose training split is cut to an
  exponential long tail; its test split kept."""
  del data_cfg
  from ltjax.data.sources.tfds import TfdsSource

  kw = dict(data_dir=cfg.data_dir or None, image_size=cfg.image_size or None)
  original_order = None
  if cfg.longtail == "cao2019":
    pool = TfdsSource(cfg.tfds_name, cfg.train_split, id_key="id", **kw)
    original_order = tfds_original_order(pool)
  else:
    pool = TfdsSource(cfg.tfds_name, cfg.train_split, **kw)
  test = TfdsSource(cfg.tfds_name, cfg.test_split, **kw)
  splits = build_longtail_splits(
    pool, test, original_order=original_order, **_longtail_options(cfg, seed)
  )
  if not cfg.class_names:
    return splits
  # Imported here: the table lists this module's datasets before user's (its order).
  from ltjax.data.datasets.user import read_class_names

  # TFDS's label ids, named one a line (e.g. tfds's own ClassLabel names); the held-out
  # open classes dropped, as their ids are.
  names = read_class_names(cfg, pool.num_classes)
  label_map, _ = longtail.open_set_label_map(pool.num_classes, tuple(cfg.open_classes))
  known = tuple(names[c] for c in np.flatnonzero(label_map >= 0))
  return dataclasses.replace(splits, class_names=known)


def tfds_original_order(source) -> np.ndarray:
  """Positions of a TFDS CIFAR split's records in the order of CIFAR's own files.

  TFDS writes records shuffled; its CIFAR builders name each record by its position in
  the files they read (``id`` = ``train_00000`` ... , ``cifar.py``: data_batch_1.bin ..
  data_batch_5.bin, or train.bin, in order). Those are the binary version's files, which
  hold the same images in the same order as the python version's batches that torchvision
  (and the published code) reads.

  Raises:
    ValueError: the source's ids are not ``<split>_<index>`` for every index 0..N-1.
  """
  ids = source.ids
  n = len(source)
  index = np.full(n, -1, np.int64)
  for position, value in enumerate(ids):
    text = value.decode("utf-8", "replace")
    prefix, _, number = text.rpartition("_")
    if not prefix or not number.isdigit():
      index[:] = -1
      break
    index[position] = int(number)
  if (index < 0).any() or not np.array_equal(np.sort(index), np.arange(n)):
    example = ids[0].decode("utf-8", "replace") if n else ""
    raise ValueError(
      f"dataset.longtail='cao2019' needs the original order of {source.name} "
      f"{source.split}: record ids '<split>_<index>' for every index 0..{n - 1} (TFDS's "
      f"cifar10/cifar100 builders), got ids like {example!r}. Use a TFDS CIFAR build, or "
      "another dataset.longtail."
    )
  order = np.empty(n, np.int64)
  order[index] = np.arange(n)
  return order


register(
  Dataset(
    "digits",
    build_digits_splits,
    "scikit-learn's digits made long-tailed (embedded: no download)",
    fields=(*_LONGTAIL_FIELDS, "test_per_class"),
  )
)
register(
  Dataset(
    "tfds",
    build_tfds_splits,
    "a prepared TFDS dataset cut to a long tail (dataset.tfds_name; CIFAR-10/100-LT)",
    fields=(
      *_LONGTAIL_FIELDS,
      "tfds_name",
      "data_dir",
      "train_split",
      "test_split",
      "image_size",
      "class_names",
    ),
  )
)
