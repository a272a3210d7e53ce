"""Dataset builders: a named source turned into long-tailed train/val/test splits."""

from __future__ import annotations

import dataclasses
import functools
import os

import ml_collections
import numpy as np

from ltjax.data import longtail
from ltjax.data.sources.base import ArraySource, Concat, Source, Subset
from ltjax.data.sources.packed import PackedSource, packed_split_name
from ltjax.data.sources.splitlist import DATASET_LISTS, UNREADABLE_FIX, SplitListSource


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


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """The shape of a dataset, all that building a model and its steps needs.

  Attributes:
    num_classes: known classes K.
    num_train: training images N (an epoch).
    image_shape: (H, W, C) of the model's input.
  """

  num_classes: int
  num_train: int
  image_shape: tuple[int, int, int]


#: Training images of the reference split lists (ImageNet_LT_train.txt: 115,846;
#: Places_LT_train.txt: 62,500; iNaturalist18_train.txt: 437,513).
REFERENCE_TRAIN_SIZES = {"imagenet_lt": 115_846, "places_lt": 62_500, "inat2018": 437_513}


def reference_spec(config) -> DataSpec:
  """The ``DataSpec`` of a reference split-list dataset config, without reading the lists:
  its classes, its training-list size and ``crop_size`` x ``crop_size`` x 3 inputs.

  Raises:
    ValueError: for another dataset (give its ``DataSpec`` explicitly).
  """
  name = config.dataset.name
  if name not in REFERENCE_TRAIN_SIZES:
    raise ValueError(
      f"dataset {name!r} has no known shape: pass a DataSpec(num_classes, num_train, "
      "image_shape) for it."
    )
  side = config.data.crop_size
  return DataSpec(DATASET_LISTS[name]["num_classes"], REFERENCE_TRAIN_SIZES[name], (side, side, 3))


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


def _decode_size(split: str, min_size: int | None) -> int | None:
  """Draft decoding (``data.decode_min_size``) is for training images only: evaluation
  decodes in full, as the references' Resize(256) + CenterCrop(224) does."""
  return min_size if split == "train" else None


def _file_sources(cfg: ml_collections.ConfigDict, min_size: int | None, skip_corrupt: bool):
  """``source(split, allow_open)`` over the image tree (``root``) or the packed shards."""
  spec = DATASET_LISTS[cfg.name]
  if cfg.packed_dir:

    def source(split: str, allow_open: bool = False) -> Source:
      return PackedSource(
        cfg.packed_dir,
        packed_split_name(cfg.name, split),
        spec["num_classes"],
        allow_open=allow_open,
        min_size=_decode_size(split, min_size),
        skip_corrupt=skip_corrupt,
      )

    return source
  if not cfg.root:
    raise ValueError(
      f"dataset {cfg.name}: set --config.dataset.root to the image directory (or "
      "--config.dataset.packed_dir to the output of 'ltjax prepare', or "
      "--config.dataset.tfds_name to a prepared TFDS dataset)."
    )
  lists_dir = cfg.lists_dir or cfg.root

  def source(split: str, allow_open: bool = False) -> Source:
    return SplitListSource(
      os.path.join(lists_dir, spec[split]),
      cfg.root,
      spec["num_classes"],
      allow_open=allow_open,
      min_size=_decode_size(split, min_size),
      skip_corrupt=skip_corrupt,
    )

  return source


def _tfds_sources(cfg: ml_collections.ConfigDict, min_size: int | None, skip_corrupt: bool):
  """``source(split)`` reading a known-class list's images from TFDS ``cfg.tfds_name``."""
  # tensorflow_datasets takes seconds to import: only the TFDS-backed datasets pay for it.
  from ltjax.data.sources.tfds_lists import TfdsListSource, list_layout

  list_layout(cfg.tfds_name, cfg.name)  # An unknown or mismatched name fails first.
  spec = DATASET_LISTS[cfg.name]
  lists_dir = cfg.lists_dir or cfg.root
  if not lists_dir:
    raise ValueError(
      f"dataset {cfg.name} from TFDS {cfg.tfds_name!r}: set --config.dataset.lists_dir to "
      f"the directory of the reference split lists ({spec['train']}, ...); TFDS does not "
      "ship them."
    )
  tfds_splits: dict = {}  # Shared: the lists of one dataset open each TFDS split once.
  by_file: dict = {}  # iNaturalist's val and test are one list.

  def source(split: str) -> Source:
    path = os.path.join(lists_dir, spec[split])
    if path not in by_file:
      by_file[path] = TfdsListSource(
        path,
        cfg.tfds_name,
        split=split,
        data_dir=cfg.data_dir or None,
        num_classes=spec["num_classes"],
        dataset=cfg.name,
        min_size=_decode_size(split, min_size),
        skip_corrupt=skip_corrupt,
        sources=tfds_splits,
      )
    return by_file[path]

  return source


def _check_open_set(cfg: ml_collections.ConfigDict) -> None:
  """Fails before any list is read if ``cfg.open_set`` cannot be served."""
  if "open" not in DATASET_LISTS[cfg.name]:
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
  cfg: ml_collections.ConfigDict, decode_min_size: int = 0, skip_corrupt: bool = False
) -> DataSplits:
  """The reference split lists (ImageNet_LT_train.txt, ...) over their images.

  The images of the train, val and test lists come, in this order of precedence, from the
  prepared TFDS dataset ``cfg.tfds_name`` (imagenet2012, places365_small,
  i_naturalist2018; see ``ltjax.data.sources.tfds_lists.TfdsListSource``), from the ArrayRecord
  shards ``ltjax prepare`` wrote to ``cfg.packed_dir``, or from the image tree
  ``cfg.root``: the same labels, and the same pixels for the same JPEG bytes. The lists
  are read from ``cfg.lists_dir`` (default ``cfg.root``; the packed shards hold their
  own). ``cfg.open_set`` appends the open-set list (label -1) to the test split; no TFDS
  dataset holds it, so with ``tfds_name`` it is read from ``packed_dir`` or ``root``.
  """
  min_size = decode_min_size or None
  if cfg.open_set:
    _check_open_set(cfg)
  if cfg.tfds_name:
    known = _tfds_sources(cfg, min_size, skip_corrupt)
  else:
    known = _file_sources(cfg, min_size, skip_corrupt)
  closed_test = test = known("test")  # First: the smallest scan; the open list is next.
  if cfg.open_set:
    test = Concat(test, _open_set_source(_file_sources(cfg, min_size, skip_corrupt)))
  train, val = known("train"), known("val")
  if cfg.tfds_name:
    from ltjax.data.sources.tfds_lists import check_class_correspondence

    check_class_correspondence(train, val, closed_test)  # One class numbering in all lists.
  return DataSplits(
    train=train, val=val, test=test, num_classes=DATASET_LISTS[cfg.name]["num_classes"]
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
    from ltjax.data.sources.tfds import TfdsSource

    kw = dict(data_dir=cfg.data_dir or None, image_size=cfg.image_size or None)
    pool = TfdsSource(cfg.tfds_name, cfg.train_split, **kw)
    test = TfdsSource(cfg.tfds_name, cfg.test_split, **kw)
    return build_longtail_splits(pool, test, **common)
  raise ValueError(f"unknown dataset {cfg.name!r}; valid: {', '.join(DATASETS)}.")


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

    with concurrent.futures.ThreadPoolExecutor(max(int(threads), 1)) as pool:
      results = list(
        tqdm.tqdm(
          pool.map(check, range(len(source))),
          total=len(source),
          desc=f"verify {name}",
          unit="img",
          disable=not progress,
        )
      )
    out[name] = [r for r in results if r]
  return out
