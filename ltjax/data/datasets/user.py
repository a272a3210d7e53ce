"""Your own data: the ``lists`` entry ('path label' list files over ``dataset.root``) and
the ``folder`` entry (an image-folder tree), either also from the shards of ``ltjax prepare
--config``, with what they share: paths relative to the root, class count and names, the
checks that every class can be learnt, and a validation split carved from train when none
is given."""

from __future__ import annotations

import logging
import os

import ml_collections
import numpy as np

from ltjax.data import longtail
from ltjax.data.datasets.registry import Dataset, DataSplits, decode_size, register, skips_corrupt
from ltjax.data.sources.base import Concat, Source, Subset
from ltjax.data.sources.packed import PackedSource
from ltjax.data.sources.splitlist import SplitListSource

log = logging.getLogger(__name__)

_USER_FIELDS = ("root", "num_classes", "class_names", "val_per_class", "open_set", "packed_dir")


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
  return read_class_names(cfg, num_classes)


def read_class_names(cfg, num_classes: int) -> tuple[str, ...]:
  """The names of ``dataset.class_names`` (one a line, in class-id order; relative to
  ``dataset.root`` unless absolute), checked to be ``num_classes``."""
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
      min_size=decode_size(split, min_size),
      skip_corrupt=skips_corrupt(split, skip_corrupt),
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
      min_size=decode_size(split, min_size),
      skip_corrupt=skips_corrupt(split, skip_corrupt),
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
      min_size=decode_size(s, min_size),
      skip_corrupt=skips_corrupt(s, skip_corrupt),
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
