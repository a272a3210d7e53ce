"""Where the entries of a reference split list are found in a TFDS dataset.

A ``ListLayout`` says, for one TFDS builder that can stand in for the image tree of a
split-list dataset, in which TFDS split each list entry is and under which identifier
(``ltjax.data.sources.tfds_lists.TfdsListSource`` matches them). The layouts themselves are
facts of the datasets: each entry of the dataset table (``ltjax.data.datasets.DATASETS``)
lists the TFDS builders that can serve it. Plain data and module-level functions, so a
layout pickles with the source that holds it (grain's reader workers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping


def _parts(path: str) -> list[str]:
  return path.replace("\\", "/").strip("/").split("/")


def top(path: str) -> str:
  """The first directory of a list path (``train`` of ``train/n0144/x.JPEG``)."""
  return _parts(path)[0]


def basename(path: str) -> str:
  return _parts(path)[-1]


def stem(path: str) -> str:
  """``os.path.basename(path).split(".")[0]``, the ``id`` of i_naturalist2018."""
  return basename(path).split(".")[0]


def places_list_key(path: str) -> str:
  """``train/apartment_building-outdoor/00000794.jpg`` -> ``apartment_building-outdoor/
  00000794.jpg`` (train images are numbered per class); ``val/<class>/Places365_val_*.jpg``
  -> the file name, unique in the validation set."""
  parts = _parts(path)
  return "/".join(parts[1:]) if parts[0] == "train" else parts[-1]


def places_tfds_key(filename: str) -> str:
  """places365_small's ``filename`` (the tar member) in the form of `places_list_key`:
  ``data_256/a/apartment_building/outdoor/00000794.jpg`` -> ``apartment_building-outdoor/
  00000794.jpg`` (Places-LT writes a two-level class with "-"); ``val_256/X.jpg`` -> X.jpg."""
  parts = _parts(filename)
  if parts[0] == "data_256" and len(parts) >= 4:
    return "-".join(parts[2:-1]) + "/" + parts[-1]
  return parts[-1]


@dataclasses.dataclass(frozen=True)
class ListLayout:
  """Where the entries of a reference split list are in one TFDS dataset.

  Attributes:
    dataset: the split-list dataset (a name of ``ltjax.data.datasets.DATASETS``).
    id_key: the ``Text`` feature naming each TFDS record.
    split_by_top: list path's first directory -> TFDS split (ImageNet: ``train/...`` entries
      in ``train``, ``val/...`` in ``validation``), or None to place by ``split_by_list``.
    split_by_list: which list it is ("train", "val", "test") -> TFDS split.
    list_key: list path -> match key.
    tfds_key: ``id_key`` value -> match key; ``None`` if the value is the key already.
    where: how entries are placed, for error messages.
  """

  dataset: str
  id_key: str
  list_key: Callable[[str], str]
  where: str
  split_by_top: Mapping[str, str] | None = None
  split_by_list: Mapping[str, str] | None = None
  tfds_key: Callable[[str], str] | None = None

  def tfds_split(self, path: str, split: str) -> str | None:
    """The TFDS split of the entry ``path`` of list ``split`` (None: cannot be placed)."""
    if self.split_by_top is not None:
      return self.split_by_top.get(top(path))
    return (self.split_by_list or {}).get(split)
