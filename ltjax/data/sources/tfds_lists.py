"""Reference split lists (ImageNet-LT, Places-LT, iNaturalist 2018) over TFDS records.

``TfdsListSource`` serves a split list from the TFDS records whose identifier matches
the list's entries, in list order and with the list's labels; a
``ltjax.data.sources.list_layouts.ListLayout`` (a fact of the dataset table) says in which
TFDS split and under which name each list entry is found. A record
read for a list is checked to carry the expected identifier, so a stale id cache cannot
silently give other images. The identifiers are read and cached by
``ltjax.data.sources.tfds.TfdsSource`` (``id_key``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from ltjax.data.sources.base import DecodedRecords
from ltjax.data.sources.decode import decode_image
from ltjax.data.sources.list_layouts import ListLayout
from ltjax.data.sources.splitlist import read_split_list
from ltjax.data.sources.tfds import TfdsSource, as_bytes


def check_class_correspondence(*lists: TfdsListSource) -> None:
  """Checks that list labels and TFDS labels correspond one to one over ``lists``.

  A list may number the classes differently from TFDS (Places-LT does, for 5 of 365
  classes), but each list class must be a single TFDS class and vice versa, in every list
  of a dataset: otherwise entries matched the wrong images, or the lists and the TFDS
  dataset do not belong together.

  Raises:
    ValueError: naming two entries that break the correspondence.
  """
  starts = np.cumsum([0] + [len(src) for src in lists])
  ours = np.concatenate([src.labels for src in lists])
  theirs = np.concatenate([src.tfds_labels for src in lists])
  for a, b, kind in ((ours, theirs, "list class"), (theirs, ours, "TFDS class")):
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    keys, counts = np.unique(pairs[:, 0], return_counts=True)
    if not (counts > 1).any():
      continue
    key = keys[counts > 1][0]
    first, second = pairs[pairs[:, 0] == key][:2, 1]
    shown = []
    for other in (first, second):
      row = int(np.flatnonzero((a == key) & (b == other))[0])
      which = int(np.searchsorted(starts, row, side="right")) - 1
      src, i = lists[which], row - int(starts[which])
      shown.append(
        f"{src.list_file}, line {int(src.lines[i])} {src.paths[i]!r}: list label "
        f"{int(src.labels[i])}, TFDS label {int(src.tfds_labels[i])} "
        f"({src.class_name(src.tfds_labels[i])!r})"
      )
    raise ValueError(
      f"the split list labels and the TFDS {lists[0].tfds_name} labels do not correspond "
      f"one to one: {kind} {int(key)} is two classes on the other side ({'; '.join(shown)}). "
      "Each list class must be one TFDS class (ImageNet-LT numbers its classes as "
      "ILSVRC-2012, by sorted synset); check that the lists and the TFDS dataset belong "
      "together."
    )


class TfdsListSource(DecodedRecords):
  """A reference split list whose images are read from a prepared TFDS dataset.

  The records are the TFDS records whose identifier (imagenet2012 ``file_name``,
  places365_small ``filename``, i_naturalist2018 ``id``; see its ``layout``) matches the
  list's entries, in list order, with the list's labels. These must correspond one to one
  to the TFDS labels (`check_class_correspondence`); they are equal for ImageNet-LT,
  while Places-LT numbers 5 classes in another order than places365_small.
  Images are read undecoded and decoded here with ``decode_image``, as `SplitListSource`
  decodes the files: the same pixels for the same JPEG bytes (imagenet2012 re-encodes its
  22 CMYK and 1 PNG training images as RGB JPEGs), and ``min_size`` reduced-scale
  JPEG decoding.

  The first use of a TFDS split reads every record once (labels and identifiers, images
  skipped but still read from disk: one pass over ImageNet's 1.28M training records) and
  caches both next to the dataset (see `TfdsSource`); later uses read the cache files.

  Args:
    list_file: the split list (``relative/path label`` lines; no open-set entries).
    tfds_name: the TFDS dataset, optionally with a version (``imagenet2012:5.1.0``).
    layout: where the list's entries are in ``tfds_name`` (the dataset table's).
    split: which reference list this is ("train", "val" or "test"); places entries whose
      path does not say it (iNaturalist, TFDS's imagenet_lt).
    data_dir: the TFDS data directory (``None``: the TFDS default).
    num_classes: K; every list label must be below it.
    min_size: passed to `decode_image` (see `SplitListSource`).
    skip_corrupt: replace an undecodable image by the next decodable record of its class.
    sources: a dict shared by the lists of one dataset (TFDS split -> `TfdsSource`), so
      that e.g. ImageNet-LT's train and val lists open ILSVRC train once.

  Attributes:
    paths, labels, lines: as `SplitListSource`.
    tfds_splits: the TFDS splits the records come from.
    record_split: ``(N,)`` index into ``tfds_splits`` of each record.
    record_index: ``(N,)`` position of each record in its TFDS split.
    tfds_labels: ``(N,)`` the TFDS label of each record.

  Raises:
    ValueError: on a bad list, an unknown TFDS name, entries that cannot be placed or are
      missing from TFDS (count and the first few), or list classes that are not one TFDS
      class each.
  """

  def __init__(
    self,
    list_file: str | os.PathLike,
    tfds_name: str,
    layout: ListLayout,
    *,
    split: str,
    data_dir: str | None = None,
    num_classes: int | None = None,
    min_size: int | None = None,
    skip_corrupt: bool = False,
    sources: dict[str, TfdsSource] | None = None,
  ):
    self.list_file = os.fspath(list_file)
    self.tfds_name = tfds_name
    self.layout = layout
    self.paths, labels, self.lines = read_split_list(self.list_file, num_classes, False)
    self.labels = labels
    self.num_classes = int(num_classes) if num_classes else int(labels.max()) + 1
    self._name = f"{self.list_file} (TFDS {tfds_name})"
    self._init_records(min_size, skip_corrupt)
    wanted = [self.layout.tfds_split(p, split) for p in self.paths]
    self._check_placed(wanted)
    self.tfds_splits = tuple(sorted(set(wanted)))
    self.record_split = np.asarray([self.tfds_splits.index(w) for w in wanted], np.int8)
    self.record_index = np.full(len(self.paths), -1, np.int64)
    sources = {} if sources is None else sources
    self._sources = []
    for s, tfds_split in enumerate(self.tfds_splits):
      if tfds_split not in sources:
        sources[tfds_split] = TfdsSource(
          tfds_name, tfds_split, data_dir=data_dir, id_key=self.layout.id_key
        )
      self._sources.append(sources[tfds_split])
      self._match(s)
    self._check_labels()

  def record_keys(self) -> list[str]:
    """The list's paths, as `SplitListSource`'s: the same list gives the same keys whether
    its images come from TFDS or from the image tree."""
    return [os.path.normpath(p) for p in self.paths]

  def _check_placed(self, wanted: list[str | None]) -> None:
    bad = [i for i, w in enumerate(wanted) if w is None]
    if bad:
      raise ValueError(
        f"{len(bad)} entries of {self.list_file} cannot be placed in a split of TFDS "
        f"{self.tfds_name} ({self.layout.where}); first: {self._entries(bad)}. Is this "
        f"list one of {self.layout.dataset}'s reference lists? (An open-set list is never "
        "in TFDS.)"
      )

  def _entries(self, rows: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(f"line {int(self.lines[i])} {self.paths[i]!r}" for i in rows[:limit])
    return shown + (", ..." if len(rows) > limit else "")

  def _match(self, s: int) -> None:
    """Fills ``record_index`` for the entries of TFDS split ``tfds_splits[s]``."""
    source = self._sources[s]
    rows = np.flatnonzero(self.record_split == s)
    layout = self.layout
    wanted = np.asarray([layout.list_key(self.paths[i]).encode() for i in rows], dtype=bytes)
    try:
      found = source.id_index(layout.tfds_key).find(wanted)
    except ValueError as e:
      raise ValueError(f"TFDS {self.tfds_name} split {source.split!r}: {e}") from None
    missing = rows[found < 0]
    if missing.size:
      raise ValueError(
        f"{missing.size} of the {rows.size} entries of {self.list_file} that belong to TFDS "
        f"{self.tfds_name} split {source.split!r} ({len(source)} records) are not in it; "
        f"first: {self._entries(missing)}. Check that data_dir holds the complete dataset "
        f"and that the list is {layout.dataset}'s ({layout.where})."
      )
    self.record_index[rows] = found

  def _check_labels(self) -> None:
    """Fills ``tfds_labels``; list and TFDS classes must correspond one to one."""
    self.tfds_labels = np.empty_like(self.labels)
    for s, source in enumerate(self._sources):
      rows = self.record_split == s
      self.tfds_labels[rows] = source.labels[self.record_index[rows]]
    check_class_correspondence(self)
    pairs = np.unique(np.stack([self.labels, self.tfds_labels], axis=1), axis=0)
    moved = pairs[pairs[:, 0] != pairs[:, 1]]
    if len(moved):
      logging.info(
        "%s numbers %d of its classes differently from TFDS %s (list %s); the list's labels "
        "are used.",
        self.list_file,
        len(moved),
        self.tfds_name,
        ", ".join(f"{a} = TFDS {b} {self.class_name(b)!r}" for a, b in moved[:5])
        + (", ..." if len(moved) > 5 else ""),
      )

  def class_name(self, tfds_label: int) -> str:
    """The TFDS class name of a TFDS label."""
    source = self._sources[0]
    return source.info.features[source.label_key].int2str(int(tfds_label))

  def _describe(self, index: int) -> str:
    source = self._sources[self.record_split[index]]
    return (
      f"TFDS {self.tfds_name} {source.split!r} record {int(self.record_index[index])} "
      f"({self.paths[index]}, listed in {self.list_file}, line {int(self.lines[index])})"
    )

  def _decode(self, index: int, record: dict[str, Any]) -> np.ndarray:
    """The RGB image of a record read with `TfdsSource.read_encoded`."""
    image = record[self._sources[self.record_split[index]].image_key]
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
      return (
        np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
      )  # A source that decoded it already.
    try:
      return decode_image(as_bytes(image), channels=3, min_size=self.min_size)
    except ValueError as e:
      raise ValueError(
        f"corrupt image ({self._describe(index)}): {e}. Run `ltjax verify --config=...` to "
        "list every unreadable image, or set --config.data.skip_corrupt=True to replace it "
        "by another image of the same class."
      ) from e

  def _fetch(self, indices: np.ndarray) -> list[dict[str, Any]]:
    """The records of list entries ``indices``, one batched read per TFDS split, checked
    to be the named images (a stale id cache would give other images silently)."""
    records: list = [None] * len(indices)
    for s in np.unique(self.record_split[indices]):
      sel = np.flatnonzero(self.record_split[indices] == s)
      source = self._sources[s]
      keys = self.record_index[indices[sel]]
      for j, k, record in zip(sel, keys, source.read_encoded(keys), strict=True):
        if as_bytes(record[source.id_key]) != source.ids[k]:
          raise ValueError(
            f"TFDS {self.tfds_name} {source.split!r} record {int(k)} is "
            f"{as_bytes(record[source.id_key])!r}, but the id cache "
            f"{source.ids_cache_path or '(in memory)'} says {source.ids[k]!r}: the dataset "
            "changed since the cache was written. Delete the ltjax_ids-*.npy and "
            "ltjax_labels-*.npy files in the dataset directory and retry."
          )
        records[j] = record
    return records

  def _read(self, index: int) -> np.ndarray:
    return self._decode(index, self._fetch(np.asarray([index]))[0])

  def get_batch(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Reads and decodes the list entries at ``indices``.

    Returns:
      (images, labels): a list of B (H_i, W_i, 3) uint8 arrays, and (B,) int32 labels.
    """
    indices = self._check_indices(indices)
    missing = np.asarray([i for i in indices if self.cached(int(i)) is None], np.int64)
    records = dict(zip(missing.tolist(), self._fetch(missing) if missing.size else [], strict=True))
    images = [self._load(int(i), lambda i=int(i): self._decode(i, records[i])) for i in indices]
    return images, self.labels[indices]
