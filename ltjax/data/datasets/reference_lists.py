"""The reference split-list datasets (ImageNet-LT, Places-LT, iNaturalist 2018): their
entries (list files, class count, reference size, the TFDS builders that hold their images)
and the one builder they share, which reads the lists' images from TFDS, from the packed
shards of ``ltjax prepare`` or from the image tree, and appends the open set."""

from __future__ import annotations

import dataclasses
import os

import ml_collections
import numpy as np

from ltjax.data.datasets.registry import (
  Dataset,
  DataSplits,
  decode_size,
  get,
  register,
  skips_corrupt,
)
from ltjax.data.datasets.user import read_class_names
from ltjax.data.sources import list_layouts
from ltjax.data.sources.base import Concat, Source
from ltjax.data.sources.list_layouts import ListLayout
from ltjax.data.sources.packed import PackedSource
from ltjax.data.sources.splitlist import SplitListSource

_REFERENCE_LIST_FIELDS = (
  "root",
  "lists_dir",
  "open_set",
  "packed_dir",
  "tfds_name",
  "data_dir",
  "class_names",
)


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
        min_size=decode_size(split, min_size),
        skip_corrupt=skips_corrupt(split, skip_corrupt),
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
      min_size=decode_size(split, min_size),
      skip_corrupt=skips_corrupt(split, skip_corrupt),
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
        min_size=decode_size(split, min_size),
        skip_corrupt=skips_corrupt(split, skip_corrupt),
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
  # The lists number the classes without naming them: names only from dataset.class_names
  # (CLIP's text features need them; ImageNet's: open_clip.IMAGENET_CLASSNAMES, in order).
  names = read_class_names(cfg, entry.num_classes) if cfg.class_names else None
  return DataSplits(
    train=train,
    val=val,
    test=test,
    num_classes=entry.num_classes,
    shared=shared,
    class_names=names,
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
