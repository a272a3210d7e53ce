"""The dataset table: each ``config.dataset.name`` is one entry (``DATASETS``) that says how
its train/val/test splits are built and holds its fixed facts (reference list files, class
count, reference training size, the TFDS builders that can stand in for its images). The
loop, ``ltjax prepare``, ``ltjax verify``, the command line and the memory plan read the
table; none of them asks which dataset it is. A new dataset is one ``register(Dataset(...))``
here, with a builder of its splits."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Mapping

import ml_collections
import numpy as np

from ltjax.data import identity, longtail
from ltjax.data.sources import list_layouts
from ltjax.data.sources.base import ArraySource, Concat, DecodeCache, Source, Subset
from ltjax.data.sources.list_layouts import ListLayout
from ltjax.data.sources.packed import PackedSource
from ltjax.data.sources.splitlist import UNREADABLE_FIX, SplitListSource
from ltjax.stop import STOP

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DataSplits:
  """The splits every stage uses.

  Attributes:
    train: long-tailed training set (known classes only).
    val: balanced validation set (known classes only), for model selection.
    test: balanced test set; open-set images, if any, carry label -1.
    num_classes: number of known classes K.
    class_names: the K class names, where the dataset has them.
  """

  train: Source
  val: Source
  test: Source
  num_classes: int
  class_names: tuple[str, ...] | None = None  # None: the class ids are their names.
  #: Pairs of splits that share records by the dataset's design, exempt from
  #: ``ltjax.data.identity.check_splits`` (its builder logs why).
  shared: tuple[tuple[str, str], ...] = ()

  @functools.cached_property
  def train_counts(self) -> np.ndarray:
    return np.bincount(self.train.labels, minlength=self.num_classes).astype(np.int64)

  def identity(self) -> dict[str, dict]:
    """``{"train", "val", "test": {"records", "digest"}}``: what each split is
    (``ltjax.data.identity.split_identity``; computed once per split)."""
    return {
      name: identity.split_identity(getattr(self, name), self.class_names)
      for name in ("train", "val", "test")
    }


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """The shape of a dataset, all that building a model and its steps needs.

  Attributes:
    num_classes: known classes K.
    num_train: training images N (an epoch).
    image_shape: (H, W, C) of the model's input.
    train_counts: training images per class, or None where only the shape is known
      (``reference_spec``: steps built for lowering or memory planning, never for training).
  """

  num_classes: int
  num_train: int
  image_shape: tuple[int, int, int]
  train_counts: tuple[int, ...] | None = None

  def class_counts(self) -> np.ndarray:
    """``train_counts`` as an array; uniform (N / K each) when unknown."""
    if self.train_counts is None:
      return np.full(self.num_classes, self.num_train / self.num_classes)
    return np.asarray(self.train_counts, np.float64)


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


def _decode_size(split: str, min_size: int | None) -> int | None:
  """Draft decoding (``data.decode_min_size``) is for training images only: evaluation
  decodes in full, as the references' Resize(256) + CenterCrop(224) does."""
  return min_size if split == "train" else None


def _skip(split: str, skip_corrupt: bool) -> bool:
  """``data.skip_corrupt`` replaces training images only: an evaluation split (val, test,
  open) is never altered, so every image of it is scored exactly once (an unreadable one
  stops the evaluation naming it; ``ltjax verify`` lists them all)."""
  return bool(skip_corrupt) and split == "train"


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One entry of the dataset table.

  Attributes:
    name: the ``config.dataset.name`` that selects it.
    build: ``(config.dataset, seed, config.data) -> DataSplits``.
    summary: what it is, in one line (``--help``, errors).
    lists: the reference split-list file of each split ("train", "val", "test" and, with an
      open set, "open"), for datasets defined by such lists; iNaturalist 2018 is evaluated on
      its val list, so its "test" is that file.
    num_classes: the class count, where fixed.
    train_size: the reference training list's size (the shape of a run without its data:
      ``reference_spec``).
    fields: the ``config.dataset`` fields it reads besides ``name``, ``mean`` and ``std``
      (``ltjax train --config=... --help`` marks the others as not read).
    tfds_layouts: TFDS builder -> where the lists' entries are in it: the prepared TFDS
      datasets that can stand in for the image tree (``dataset.tfds_name``).
  """

  name: str
  build: Callable[..., DataSplits]
  summary: str
  lists: Mapping[str, str] = dataclasses.field(default_factory=dict)
  num_classes: int | None = None
  train_size: int | None = None
  tfds_layouts: Mapping[str, ListLayout] = dataclasses.field(default_factory=dict)
  fields: tuple[str, ...] = ()

  def list_path(self, split: str, directory: str) -> str:
    """The path of the ``split`` list in ``directory``."""
    if split not in self.lists:
      valid = ", ".join(self.lists) or "none"
      raise ValueError(f"dataset {self.name!r} has no {split!r} list; its lists: {valid}.")
    return os.path.join(os.fspath(directory), self.lists[split])

  def packed_split(self, split: str) -> str:
    """The packed split (``ltjax prepare``) that holds ``split``: the first split of the
    same list (iNaturalist's "test" is packed, once, as "val")."""
    for name in ("train", "val", "test", "open"):
      if self.lists.get(name) == self.lists[split]:
        return name
    return split

  def tfds_layout(self, tfds_name: str) -> ListLayout:
    """The layout of TFDS ``tfds_name`` (config and version allowed: ``imagenet2012:5.1.0``).

    Raises:
      ValueError: no TFDS builder of that name is known to hold this dataset's images.
    """
    base = tfds_name.split(":")[0].split("/")[0].strip()
    if base not in self.tfds_layouts:
      others = [f"{k} ({d.name})" for d in DATASETS.values() for k in d.tfds_layouts]
      raise ValueError(
        f"TFDS dataset {tfds_name!r} cannot serve the split lists of {self.name}: no TFDS "
        f"image identifier is known to match the lists' paths. Valid: "
        f"{', '.join(self.tfds_layouts) or 'none'} (all: {', '.join(others)})."
      )
    return self.tfds_layouts[base]


DATASETS: dict[str, Dataset] = {}
_LONGTAIL_FIELDS = ("imbalance_ratio", "n_max", "longtail", "val_per_class", "open_classes")
_REFERENCE_LIST_FIELDS = ("root", "lists_dir", "open_set", "packed_dir", "tfds_name", "data_dir")
_USER_FIELDS = ("root", "num_classes", "class_names", "val_per_class", "open_set", "packed_dir")


def register(entry: Dataset) -> Dataset:
  """Adds ``entry`` to the table under ``entry.name``."""
  DATASETS[entry.name] = entry
  return entry


def get(name: str) -> Dataset:
  """The table's entry ``name``; a ValueError listing the valid names otherwise."""
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}.")
  return DATASETS[name]


def reference_spec(config) -> DataSpec:
  """The ``DataSpec`` of a reference split-list dataset config, without reading the lists:
  its classes, its training-list size and ``crop_size`` x ``crop_size`` x 3 inputs.

  Raises:
    ValueError: for another dataset (give its ``DataSpec`` explicitly).
  """
  entry = get(config.dataset.name)
  if not entry.train_size:
    raise ValueError(
      f"dataset {entry.name!r} has no known shape: pass a DataSpec(num_classes, num_train, "
      "image_shape) for it."
    )
  side = config.data.crop_size
  return DataSpec(entry.num_classes, entry.train_size, (side, side, 3))


def _check_lists_exist(entry: Dataset, cfg, lists_dir: str) -> None:
  """The first missing list of the run (train, val, test, open), named with the field that
  sets where the lists are read, before any of them is read."""
  splits = [s for s in ("train", "val", "test") if s in entry.lists]
  if cfg.open_set and "open" in entry.lists:
    splits.append("open")
  missing = [s for s in splits if not os.path.isfile(entry.list_path(s, lists_dir))]
  if not missing:
    return
  field = "--config.dataset.lists_dir" if cfg.lists_dir else "--config.dataset.root"
  names = ", ".join(entry.lists[s] for s in splits)
  raise ValueError(
    f"dataset {entry.name}: its {missing[0]} list {entry.list_path(missing[0], lists_dir)!r} "
    f"does not exist ({len(missing)} of its {len(splits)} lists are missing). The lists "
    f"({names}) are read from {lists_dir!r}: set --config.dataset.lists_dir to the directory "
    f"that holds them (now {field}={lists_dir!r})."
  )


def _file_sources(entry: Dataset, cfg, min_size: int | None, skip_corrupt: bool):
  """``source(split, allow_open)`` over the image tree (``root``) or the packed shards."""
  if cfg.packed_dir:

    def source(split: str, allow_open: bool = False) -> Source:
      return PackedSource(
        cfg.packed_dir,
        entry.packed_split(split),
        entry.num_classes,
        allow_open=allow_open,
        min_size=_decode_size(split, min_size),
        skip_corrupt=_skip(split, skip_corrupt),
      )

    return source
  if not cfg.root:
    raise ValueError(
      f"dataset {cfg.name}: set --config.dataset.root to the image directory (or "
      "--config.dataset.packed_dir to the output of 'ltjax prepare', or "
      "--config.dataset.tfds_name to a prepared TFDS dataset)."
    )
  lists_dir = cfg.lists_dir or cfg.root
  _check_lists_exist(entry, cfg, lists_dir)

  def source(split: str, allow_open: bool = False) -> Source:
    return SplitListSource(
      entry.list_path(split, lists_dir),
      cfg.root,
      entry.num_classes,
      allow_open=allow_open,
      min_size=_decode_size(split, min_size),
      skip_corrupt=_skip(split, skip_corrupt),
    )

  return source


def _tfds_sources(entry: Dataset, cfg, min_size: int | None, skip_corrupt: bool):
  """``source(split)`` reading a known-class list's images from TFDS ``cfg.tfds_name``."""
  # tensorflow_datasets takes seconds to import: only the TFDS-backed datasets pay for it.
  from ltjax.data.sources.tfds_lists import TfdsListSource

  layout = entry.tfds_layout(cfg.tfds_name)  # An unknown or mismatched name fails first.
  lists_dir = cfg.lists_dir or cfg.root
  if not lists_dir:
    raise ValueError(
      f"dataset {cfg.name} from TFDS {cfg.tfds_name!r}: set --config.dataset.lists_dir to "
      f"the directory of the reference split lists ({entry.lists['train']}, ...); TFDS does "
      "not ship them."
    )
  tfds_splits: dict = {}  # Shared: the lists of one dataset open each TFDS split once.
  by_file: dict = {}  # iNaturalist's val and test are one list.

  def source(split: str) -> Source:
    path = entry.list_path(split, lists_dir)
    if path not in by_file:
      by_file[path] = TfdsListSource(
        path,
        cfg.tfds_name,
        layout,
        split=split,
        data_dir=cfg.data_dir or None,
        num_classes=entry.num_classes,
        min_size=_decode_size(split, min_size),
        skip_corrupt=_skip(split, skip_corrupt),
        sources=tfds_splits,
      )
    return by_file[path]

  return source


def _check_open_set(entry: Dataset, cfg) -> None:
  """Fails before any list is read if ``cfg.open_set`` cannot be served."""
  if "open" not in entry.lists:
    raise ValueError(f"dataset {cfg.name} has no open-set list; unset dataset.open_set.")
  if cfg.tfds_name and not (cfg.root or cfg.packed_dir):
    raise ValueError(
      f"dataset {cfg.name} with dataset.open_set: the open-set images are in no TFDS "
      "dataset (ImageNet-LT's are ImageNet-2010 images absent from ILSVRC-2012, Places-LT's "
      "come from Places-Extra69), so TFDS cannot provide them. Set --config.dataset.root to "
      "the directory their list paths are relative to (holding the ImageNet_LT_open/ or "
      "Places_LT_open/ folder distributed with the lists), or pack them with 'ltjax prepare "
      "--splits=open' and set --config.dataset.packed_dir; or unset dataset.open_set. The "
      "other splits still come from TFDS."
    )


def _open_set_source(file_source) -> Source:
  """The open-set list, checked to hold only label -1."""
  open_source = file_source("open", allow_open=True)
  known = np.flatnonzero(open_source.labels != -1)
  if known.size:
    raise ValueError(
      f"open-set list {open_source.list_file} has {known.size} record(s) with a label "
      f"other than -1 (first: line {open_source.lines[known[0]]}, label "
      f"{open_source.labels[known[0]]}); open-set images must all be labelled -1."
    )
  return open_source


def build_split_list_splits(
  cfg: ml_collections.ConfigDict, seed: int = 0, data_cfg=None
) -> DataSplits:
  """The reference split lists (ImageNet_LT_train.txt, ...) over their images.

  The images of the train, val and test lists come, in this order of precedence, from the
  prepared TFDS dataset ``cfg.tfds_name`` (imagenet2012, places365_small,
  i_naturalist2018; see ``ltjax.data.sources.tfds_lists.TfdsListSource``), from the
  ArrayRecord shards ``ltjax prepare`` wrote to ``cfg.packed_dir``, or from the image tree
  ``cfg.root``: the same labels, and the same pixels for the same JPEG bytes. The lists
  are read from ``cfg.lists_dir`` (default ``cfg.root``; the packed shards hold their
  own). ``cfg.open_set`` appends the open-set list (label -1) to the test split; no TFDS
  dataset holds it, so with ``tfds_name`` it is read from ``packed_dir`` or ``root``.
  ``config.data`` gives the decoding options (``decode_min_size``, ``skip_corrupt``).
  """
  del seed  # The lists fix every split.
  entry = get(cfg.name)
  min_size = (data_cfg.decode_min_size if data_cfg else 0) or None
  skip_corrupt = bool(data_cfg.skip_corrupt) if data_cfg else False
  if cfg.open_set:
    _check_open_set(entry, cfg)
  if cfg.tfds_name:
    known = _tfds_sources(entry, cfg, min_size, skip_corrupt)
  else:
    known = _file_sources(entry, cfg, min_size, skip_corrupt)
  closed_test = test = known("test")  # First: the smallest scan; the open list is next.
  if cfg.open_set:
    test = Concat(test, _open_set_source(_file_sources(entry, cfg, min_size, skip_corrupt)))
  train, val = known("train"), known("val")
  if cfg.tfds_name:
    from ltjax.data.sources.tfds_lists import check_class_correspondence

    check_class_correspondence(train, val, closed_test)  # One class numbering in all lists.
  # iNaturalist 2018 is evaluated on its val list, as the references do: val is test.
  shared = (("val", "test"),) if entry.lists.get("val") == entry.lists.get("test") else ()
  return DataSplits(train=train, val=val, test=test, num_classes=entry.num_classes, shared=shared)


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
  return build_longtail_splits(
    pool, test, original_order=original_order, **_longtail_options(cfg, seed)
  )


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
    fields=(*_LONGTAIL_FIELDS, "tfds_name", "data_dir", "train_split", "test_split", "image_size"),
  )
)
_IMAGENET_LAYOUT = ListLayout(
  "imagenet_lt",
  "file_name",
  list_layouts.basename,
  "train/... entries in split 'train', val/... entries in split 'validation', by file name",
  split_by_top={"train": "train", "val": "validation"},
)
register(
  Dataset(
    "imagenet_lt",
    build_split_list_splits,
    "ImageNet-LT (Liu et al. 2019): the reference lists over ImageNet-2012 images",
    lists={
      "train": "ImageNet_LT_train.txt",
      "val": "ImageNet_LT_val.txt",
      "test": "ImageNet_LT_test.txt",
      "open": "ImageNet_LT_open.txt",
    },
    fields=_REFERENCE_LIST_FIELDS,
    num_classes=1000,
    train_size=115_846,
    # ImageNet-LT's train and val lists draw from ILSVRC-2012 train (``train/nXXXX/
    # nXXXX_123.JPEG``), its test list is ILSVRC-2012 val (``val/nXXXX/ILSVRC2012_val_*.JPEG``):
    # imagenet2012's ``file_name`` is that base name. TFDS's own imagenet_lt is built from the
    # same lists: LT val is its 'validation'.
    tfds_layouts={
      "imagenet2012": _IMAGENET_LAYOUT,
      "imagenet_lt": dataclasses.replace(
        _IMAGENET_LAYOUT,
        split_by_top=None,
        split_by_list={"train": "train", "val": "validation", "test": "test"},
        where="the train/val/test list in split train/validation/test, by file name",
      ),
    },
  )
)
register(
  Dataset(
    "places_lt",
    build_split_list_splits,
    "Places-LT (Liu et al. 2019): the reference lists over Places-365 images",
    lists={
      "train": "Places_LT_train.txt",
      "val": "Places_LT_val.txt",
      "test": "Places_LT_test.txt",
      "open": "Places_LT_open.txt",
    },
    fields=_REFERENCE_LIST_FIELDS,
    num_classes=365,
    train_size=62_500,
    # Places-LT's train and val lists draw from Places365-Standard train, its test list from
    # Places365 val.
    tfds_layouts={
      "places365_small": ListLayout(
        "places_lt",
        "filename",
        list_layouts.places_list_key,
        "train/<class>/<n>.jpg entries in split 'train' by class and number, "
        "val/... entries in split 'validation' by file name",
        split_by_top={"train": "train", "val": "validation"},
        tfds_key=list_layouts.places_tfds_key,
      )
    },
  )
)
register(
  Dataset(
    "inat2018",
    build_split_list_splits,
    "iNaturalist 2018: the official train and val lists (evaluated on val, as the references)",
    lists={
      "train": "iNaturalist18_train.txt",
      "val": "iNaturalist18_val.txt",
      "test": "iNaturalist18_val.txt",
    },
    fields=_REFERENCE_LIST_FIELDS,
    num_classes=8142,
    train_size=437_513,
    # The official train and val sets; ``id`` is the image's file name without extension.
    tfds_layouts={
      "i_naturalist2018": ListLayout(
        "inat2018",
        "id",
        list_layouts.stem,
        "the train list in split 'train', the val list in split 'validation', by file name "
        "without extension (the 'id' feature)",
        split_by_list={"train": "train", "val": "validation", "test": "validation"},
      )
    },
  )
)


# ------------------------------------------------------------------------ your own data


def _user_path(cfg, path: str) -> str:
  """A path of the dataset config: absolute, or relative to ``dataset.root``."""
  return path if os.path.isabs(path) or not cfg.root else os.path.join(cfg.root, path)


def user_list_files(cfg) -> dict[str, str]:
  """Split -> list file of dataset "lists" (train and test required, val and open
  optional), checked to exist before anything is read."""
  fields = {"train": cfg.train_list, "val": cfg.val_list, "test": cfg.test_list}
  if cfg.open_set:
    fields["open"] = cfg.open_list
  out = {}
  for split, path in fields.items():
    field = f"dataset.{split}_list"
    if not path:
      if split == "val":
        continue
      need = " (dataset.open_set is on)" if split == "open" else ""
      raise ValueError(
        f"dataset 'lists' needs --config.{field}{need}: a file of 'relative/path label' "
        "lines, relative to --config.dataset.root or absolute."
      )
    out[split] = _user_path(cfg, path)
    if not os.path.isfile(out[split]):
      raise ValueError(
        f"--config.{field}={path}: {out[split]} does not exist (list paths are relative to "
        f"--config.dataset.root={cfg.root!r} unless absolute)."
      )
  return out


def _class_names(cfg, num_classes: int, folder_names: list[str] | None) -> tuple[str, ...]:
  if folder_names is not None and not cfg.class_names:
    return tuple(folder_names)
  if not cfg.class_names:
    return tuple(str(k) for k in range(num_classes))
  path = _user_path(cfg, cfg.class_names)
  try:
    with open(path, encoding="utf-8") as f:
      names = [line.strip() for line in f if line.strip()]
  except OSError as e:
    raise ValueError(f"--config.dataset.class_names={cfg.class_names}: {e}") from e
  if len(names) != num_classes:
    raise ValueError(
      f"--config.dataset.class_names={cfg.class_names} names {len(names)} classes, but the "
      f"data has {num_classes}: one name per line, in class-id order."
    )
  return tuple(names)


def _num_classes(cfg, sources: dict[str, Source], fixed: int | None = None) -> int:
  """``fixed`` (the class folders), ``dataset.num_classes``, or the largest label + 1 of the
  lists; checked that no class is missing from every split (a label gap)."""
  largest = max(int(np.max(s.labels, initial=-1)) for s in sources.values())
  k = fixed or cfg.num_classes or largest + 1
  if largest >= k:
    raise ValueError(
      f"--config.dataset.num_classes={cfg.num_classes}, but the lists use class {largest}: "
      f"set it to {largest + 1} or 0 (from the data)."
    )
  seen = np.zeros(k, bool)
  for s in sources.values():
    labels = np.asarray(s.labels)
    seen[labels[labels >= 0]] = True
  missing = np.flatnonzero(~seen)
  if missing.size:
    raise ValueError(
      f"classes {missing[:10].tolist()} of 0..{k - 1} have no image in any split (a gap in "
      "the labels, or dataset.num_classes too large): number the classes 0..K-1 without gaps."
    )
  return k


def _check_training_coverage(sources: dict[str, Source], k: int, names) -> None:
  """Every class needs training images: a class only in val/test can never be learnt."""
  counts = np.bincount(np.asarray(sources["train"].labels), minlength=k)
  empty = np.flatnonzero(counts == 0)
  if empty.size:
    shown = ", ".join(f"{int(c)} ({names[c]})" for c in empty[:10])
    where = [s for s in ("val", "test") if s in sources and np.isin(sources[s].labels, empty).any()]
    raise ValueError(
      f"class(es) {shown} have no training images but appear in {'/'.join(where) or 'no split'}: "
      "add training images for them, or remove them from the other splits."
    )


def _with_val(cfg, seed: int, sources: dict[str, Source], k: int) -> dict[str, Source]:
  """``sources`` with a val split: the given one, or ``dataset.val_per_class`` images per
  class carved from train by seed (at most n_j - 1, so every class keeps a training image;
  never from test), logged."""
  if "val" in sources:
    return sources
  train = sources["train"]
  counts = np.bincount(np.asarray(train.labels), minlength=k)
  per_class = np.minimum(int(cfg.val_per_class), np.maximum(counts - 1, 0))
  if not per_class.any():
    log.warning(
      "no validation split (dataset.val_list / val/ folder) and dataset.val_per_class=%d: "
      "nothing is selected on validation (NCM, tau-norm, eval.select=best_val cannot run); "
      "set --config.dataset.val_per_class to carve one from train.",
      cfg.val_per_class,
    )
    return sources | {"val": Subset(train, np.zeros(0, np.int64))}
  single = np.flatnonzero(counts == 1)
  if single.size and cfg.val_per_class:
    log.warning(
      "class(es) %s have a single training image: none is carved out as validation (it "
      "stays for training), so validation does not measure them.",
      ", ".join(map(str, single[:10])) + (", ..." if single.size > 10 else ""),
    )
  val_idx = longtail.take_per_class(train.labels, per_class, seed)
  rest = np.setdiff1d(np.arange(len(train)), val_idx)
  log.info(
    "no validation split given: carved %d images (up to %d per class, seed %d) out of the "
    "training split as validation; %d remain for training.",
    len(val_idx),
    int(cfg.val_per_class),
    seed,
    len(rest),
  )
  return sources | {"val": Subset(train, val_idx), "train": Subset(train, rest)}


def _user_splits(cfg, seed: int, sources: dict[str, Source], folder_names=None) -> DataSplits:
  names = folder_names or None
  known = {s: v for s, v in sources.items() if s != "open"}
  if names is not None:
    _check_training_coverage(sources, len(names), names)  # An empty class folder first.
  k = _num_classes(cfg, known, len(names) if names else None)
  names = _class_names(cfg, k, folder_names)
  _check_training_coverage(sources, k, names)
  sources = _with_val(cfg, seed, sources, k)
  test = sources["test"]
  if "open" in sources:
    test = Concat(test, sources["open"])
  return DataSplits(
    train=sources["train"], val=sources["val"], test=test, num_classes=k, class_names=names
  )


def build_user_lists(cfg: ml_collections.ConfigDict, seed: int, data_cfg=None) -> DataSplits:
  """Dataset "lists": your own 'path label' list files (``dataset.train_list``, ...) over
  the images under ``dataset.root`` (or the shards of ``ltjax prepare --config``)."""
  min_size = (data_cfg.decode_min_size if data_cfg else 0) or None
  skip_corrupt = bool(data_cfg.skip_corrupt) if data_cfg else False
  if cfg.packed_dir:
    return _user_splits(cfg, seed, _packed_user_sources(cfg, min_size, skip_corrupt))
  if cfg.root:
    _check_root(cfg.root)
  files = user_list_files(cfg)
  if not cfg.root:
    raise ValueError("dataset 'lists': set --config.dataset.root to the image directory.")
  sources = {}
  for split, path in files.items():
    kw = dict(
      allow_open=split == "open",
      min_size=_decode_size(split, min_size),
      skip_corrupt=_skip(split, skip_corrupt),
    )
    sources[split] = SplitListSource(path, cfg.root, None, **kw)
  _check_open_only(sources)
  return _user_splits(cfg, seed, sources)


def _packed_user_sources(cfg, min_size, skip_corrupt) -> dict[str, Source]:
  """The splits ``ltjax prepare --config`` packed into ``dataset.packed_dir`` (train and
  test; val and, with ``dataset.open_set``, open where packed)."""
  from ltjax.data.sources import packed

  wanted = ["train", "val", "test", *(["open"] if cfg.open_set else [])]
  sources = {}
  for split in wanted:
    if split == "val" and not os.path.exists(packed.manifest_path(cfg.packed_dir, split)):
      continue
    sources[split] = PackedSource(
      cfg.packed_dir,
      split,
      None,
      allow_open=split == "open",
      min_size=_decode_size(split, min_size),
      skip_corrupt=_skip(split, skip_corrupt),
    )
  _check_open_only(sources)
  return sources


def _check_open_only(sources: dict[str, Source]) -> None:
  if "open" in sources and (np.asarray(sources["open"].labels) != -1).any():
    raise ValueError(
      f"the open-set split {getattr(sources['open'], 'list_file', '')} holds labels other "
      "than -1: open-set images must all be labelled -1."
    )


def _check_root(root: str, split: str = "") -> None:
  """Raises a ValueError naming ``--config.dataset.root`` if ``root`` (or its ``split``
  folder) does not exist: a moved dataset is fixed by the flag, not by the folder scan."""
  directory = os.path.abspath(os.path.join(root, split))
  if not os.path.isdir(directory):
    layout = f" (dataset 'folder' reads its {split}/ folder)" if split else ""
    raise ValueError(
      f"dataset.root={root}: {directory} does not exist{layout}; if the dataset moved, pass "
      "--config.dataset.root=NEW_DIR."
    )


def build_image_folder(cfg: ml_collections.ConfigDict, seed: int, data_cfg=None) -> DataSplits:
  """Dataset "folder": an image-folder tree ``dataset.root/<split>/<class>/<image>`` (train/
  and test/ required, val/ optional, open/ with ``dataset.open_set``), classes in sorted
  order as torchvision's ``ImageFolder``."""
  min_size = (data_cfg.decode_min_size if data_cfg else 0) or None
  skip_corrupt = bool(data_cfg.skip_corrupt) if data_cfg else False
  if cfg.packed_dir:  # Packed by `ltjax prepare --config`, with the class names.
    from ltjax import files

    names = files.read_json(os.path.join(cfg.packed_dir, "classes.json"), "re-run ltjax prepare")
    sources = _packed_user_sources(cfg, min_size, skip_corrupt)
    return _user_splits(cfg, seed, sources, folder_names=list(names))
  if not cfg.root:
    raise ValueError(
      "dataset 'folder': set --config.dataset.root to the directory holding train/, test/ "
      "(and val/) with one folder per class in each."
    )
  from ltjax.data.sources.splitlist import folder_classes

  for split in ("", "train", "test", *(["open"] if cfg.open_set else [])):
    _check_root(cfg.root, split)
  classes = folder_classes(os.path.join(cfg.root, "train"))
  if not classes:
    raise ValueError(f"{os.path.join(cfg.root, 'train')} has no class folders.")
  if cfg.num_classes and cfg.num_classes != len(classes):
    raise ValueError(
      f"--config.dataset.num_classes={cfg.num_classes}, but {cfg.root}/train has "
      f"{len(classes)} class folders: set it to {len(classes)} or 0 (from the folders)."
    )
  splits = ["train", "test"] + (["val"] if os.path.isdir(os.path.join(cfg.root, "val")) else [])
  sources = {
    s: SplitListSource.from_folder(
      cfg.root,
      s,
      classes,
      min_size=_decode_size(s, min_size),
      skip_corrupt=_skip(s, skip_corrupt),
    )
    for s in splits
  }
  if cfg.open_set:
    sources["open"] = SplitListSource.from_folder(cfg.root, "open", None, allow_open=True)
  return _user_splits(cfg, seed, sources, folder_names=classes)


register(
  Dataset(
    "lists",
    build_user_lists,
    "your own data: 'path label' list files (dataset.train_list, test_list, val_list) over "
    "dataset.root, any number of classes, the natural imbalance kept",
    fields=(*_USER_FIELDS, "train_list", "val_list", "test_list", "open_list"),
  )
)
register(
  Dataset(
    "folder",
    build_image_folder,
    "your own data: an image-folder tree dataset.root/<split>/<class>/ (train, test, val), "
    "the natural imbalance kept",
    fields=_USER_FIELDS,
  )
)


#: Fields every dataset reads.
COMMON_FIELDS = ("name", "mean", "std", "allow_train_duplicates")
#: Where a field a dataset does not read has a counterpart that it does.
_INSTEAD = {"image_size": "data.crop_size sets the image side the model sees"}


def unread_fields(cfg: ml_collections.ConfigDict) -> list[str]:
  """The ``config.dataset`` fields set away from their defaults that ``cfg.name``'s dataset
  does not read, each as ``field=value``, with the field that acts where there is one."""
  from ltjax import config as config_lib

  entry = get(cfg.name)
  defaults = config_lib.base_config().dataset
  out = []
  for key in sorted(cfg):
    if key in COMMON_FIELDS or key in entry.fields or key not in defaults:
      continue
    value, default = cfg[key], defaults[key]
    if (tuple(value) if isinstance(value, list) else value) != default:
      hint = f" ({_INSTEAD[key]})" if key in _INSTEAD else ""
      out.append(f"dataset.{key}={value!r}{hint}")
  return out


def build_splits(cfg: ml_collections.ConfigDict, seed: int, data_cfg=None) -> DataSplits:
  """Builds the splits described by ``config.dataset`` (``config.data`` for decoding),
  checked to share no record and to repeat none (``ltjax.data.identity.check_splits``)."""
  splits = get(cfg.name).build(cfg, seed, data_cfg)
  identity.check_splits(splits, allow_train_duplicates=bool(cfg.allow_train_duplicates))
  budget = int(getattr(data_cfg, "decode_cache_mb", 0) or 0) if data_cfg else 0
  if budget:
    use_decode_cache(splits, DecodeCache(budget * 2**20))
  return splits


def _leaves(source):
  """The sources that decode records under ``source`` (through subsets and concatenations)."""
  if isinstance(source, Subset):
    yield from _leaves(source.source)
  elif isinstance(source, Concat):
    for part in source.sources:
      yield from _leaves(part)
  else:
    yield source


def use_decode_cache(splits: DataSplits, cache: DecodeCache) -> None:
  """The train and val splits (read every epoch) keep their decoded images in ``cache``'s
  budget (``data.decode_cache_mb``); test, read once, does not."""
  for split in (splits.train, splits.val):
    for leaf in _leaves(split):
      if hasattr(leaf, "use_cache") and leaf._decoded is None:
        leaf.use_cache(cache)


def verify_splits(
  splits: DataSplits, names=("train", "val", "test"), threads: int = 8, progress: bool = True
) -> dict[str, list[str]]:
  """Decodes every record of the named splits (``ltjax verify``).

  Args:
    splits: the splits, built without ``data.skip_corrupt`` (which would hide bad images).
    names: which of train, val and test.
    threads: decoding threads.
    progress: a tqdm bar per split.

  Returns:
    ``{split: [message, ...]}``: every unreadable record (missing or corrupt file, naming it
    and its list line), in order; empty lists when all decode.

  Raises:
    ValueError: an unknown split name.
  """
  import concurrent.futures

  import tqdm

  unknown = [n for n in names if n not in ("train", "val", "test")]
  if unknown:
    raise ValueError(f"unknown split(s) {unknown}; valid: train, val, test.")
  out = {}
  for name in names:
    source = getattr(splits, name)

    def check(i, source=source):
      try:
        source.get_batch(np.array([i]))
      except ValueError as e:  # The per-image advice would point back to this command.
        return str(e).removesuffix(f" {UNREADABLE_FIX}")
      return None

    results = []
    with concurrent.futures.ThreadPoolExecutor(max(int(threads), 1)) as pool:
      futures = [pool.submit(check, i) for i in range(len(source))]
      try:
        for future in tqdm.tqdm(
          futures, desc=f"verify {name}", unit="img", disable=not progress, mininterval=1
        ):
          STOP.check()
          results.append(future.result())
      except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    out[name] = [r for r in results if r]
  return out
