"""The dataset table itself: what an entry (``Dataset``) holds, the table (``DATASETS``,
``register``, ``get``), what every builder returns (``DataSplits``) and the shape a run
needs of it (``DataSpec``), and what the entries share (the fields every dataset reads, the
per-split decoding options). The entries live beside their builders (``longtail_cut``,
``reference_lists``, ``user``) and import this module; it imports none of them, so the
table has no circle."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Mapping

import ml_collections
import numpy as np

from ltjax.config import components
from ltjax.data import identity
from ltjax.data.sources.base import Source
from ltjax.data.sources.list_layouts import ListLayout

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


def decode_size(split: str, min_size: int | None) -> int | None:
  """Draft decoding (``data.decode_min_size``) is for training images only: evaluation
  decodes in full, as the references' Resize(256) + CenterCrop(224) does."""
  return min_size if split == "train" else None


def skips_corrupt(split: str, skip_corrupt: bool) -> bool:
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


DATASETS: components.Registry = components.Registry("dataset", "dataset.name")
#: Adds ``entry`` to the table under ``entry.name``.
register = DATASETS.register
#: The table's entry ``name``; a ValueError listing the valid names otherwise.
get = DATASETS.lookup


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


def warn_unread(cfg: ml_collections.ConfigDict) -> None:
  """Logs a warning naming the ``unread_fields`` of ``cfg``, which change nothing."""
  unread = unread_fields(cfg)
  if unread:
    log.warning(
      "not read by dataset %s, so without effect: %s. Its fields: %s.",
      cfg.name,
      "; ".join(unread),
      ", ".join(get(cfg.name).fields) or "none beyond name, mean, std",
    )
