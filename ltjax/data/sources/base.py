"""Random-access data sources: the protocol, in-memory and composed sources, and the
record-by-record decoding that the file-backed sources share.

A source is anything with ``labels`` (an ``(N,)`` int array, read without decoding
images), ``num_classes``, ``__len__`` and ``get_batch(indices) -> (images, labels)``
returning ``uint8`` images of shape ``(B, H, W, C)`` — or, for sources of images of
varying sizes (JPEG folders), a list of ``(H, W, C)`` arrays that the ``imagenet``
augmentation / ``resize_center_crop`` evaluation transform bring to one size.
Samplers and long-tail builders only ever look at ``labels``; the pipeline calls
``get_batch``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)

_MAX_WARNINGS = 10  # Unreadable images logged one by one before the log goes quiet.


class Source(Protocol):
  labels: np.ndarray
  num_classes: int

  def __len__(self) -> int: ...

  def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

  def record_keys(self) -> list[str]:
    """What identifies each record (``ltjax.data.identity``): its path relative to the
    dataset root, its record id, ... ; equal keys are the same image."""
    ...


def check_labels(
  labels: np.ndarray, num_classes: int, *, allow_open: bool = False, what: str = "labels"
) -> np.ndarray:
  """Returns ``labels`` as int32 after checking they lie in [0, num_classes).

  Args:
    labels: integer class ids.
    num_classes: K.
    allow_open: also accept -1, the open-set label.
    what: name used in the error message.

  Raises:
    ValueError: naming the first bad label and its position.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"{what} must be 1-D, got shape {labels.shape}.")
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{what} must be integers, got dtype {labels.dtype}.")
  low = -1 if allow_open else 0
  bad = np.flatnonzero((labels < low) | (labels >= num_classes))
  if bad.size:
    i = int(bad[0])
    extra = " or -1 (open set)" if allow_open else ""
    raise ValueError(
      f"{what}[{i}] = {int(labels[i])} is outside [0, {num_classes}){extra}; "
      f"{bad.size} bad label(s) in all. Check num_classes or the label file."
    )
  return labels.astype(np.int32)


class ArraySource:
  """In-memory images ``(N, H, W, C)`` uint8 and labels ``(N,)``."""

  def __init__(
    self, images: np.ndarray, labels: np.ndarray, num_classes: int, *, allow_open: bool = False
  ):
    images = np.asarray(images)
    if images.ndim == 3:
      images = images[..., None]
    if images.ndim != 4:
      raise ValueError(f"images must be (N, H, W, C) or (N, H, W), got {images.shape}.")
    if images.dtype != np.uint8:
      raise ValueError(f"images must be uint8, got {images.dtype}.")
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    self.images = images
    self.labels = check_labels(labels, num_classes, allow_open=allow_open)
    self.num_classes = int(num_classes)

  def __len__(self) -> int:
    return len(self.labels)

  def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    indices = np.asarray(indices)
    return self.images[indices], self.labels[indices]

  def record_keys(self) -> list[str]:
    """``index:pixel digest`` of every image: the same array gives the same keys (computed
    once; the subsets of one array share them)."""
    if getattr(self, "_keys", None) is None:
      digest = lambda x: hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=8)  # noqa: E731
      self._keys = [f"{i}:{digest(image).hexdigest()}" for i, image in enumerate(self.images)]
    return self._keys


class Subset:
  """A view of ``source`` restricted to ``indices``, with labels optionally remapped.

  Args:
    source: the underlying source.
    indices: positions in ``source`` to keep, in order.
    label_map: optional ``(source.num_classes,)`` int array mapping old ids to new ids
      (-1 marks an open-set class).
    num_classes: the number of classes after remapping.
  """

  def __init__(
    self,
    source: Source,
    indices: Sequence[int] | np.ndarray,
    label_map: np.ndarray | None = None,
    num_classes: int | None = None,
  ):
    self.source = source
    self.indices = np.asarray(indices, dtype=np.int64)
    self.label_map = None if label_map is None else np.asarray(label_map, np.int32)
    labels = np.asarray(source.labels)[self.indices]
    if self.label_map is not None:
      labels = self.label_map[labels]
    self.num_classes = int(num_classes if num_classes is not None else source.num_classes)
    self.labels = check_labels(labels, self.num_classes, allow_open=self.label_map is not None)

  def __len__(self) -> int:
    return len(self.indices)

  def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    indices = np.asarray(indices)
    images, _ = self.source.get_batch(self.indices[indices])
    return images, self.labels[indices]

  def record_keys(self) -> list[str]:
    keys = self.source.record_keys()
    return [keys[i] for i in self.indices]

  def record_where(self, index: int) -> str:
    where = getattr(self.source, "record_where", None)
    i = int(self.indices[index])
    return where(i) if where is not None else f"record {i}"


class Concat:
  """Records of several sources one after another (e.g. a test set and its open set)."""

  def __init__(self, *sources: Source):
    if not sources:
      raise ValueError("Concat needs at least one source.")
    self.sources = sources
    self.num_classes = max(s.num_classes for s in sources)
    self.labels = np.concatenate([np.asarray(s.labels) for s in sources]).astype(np.int32)
    self._starts = np.cumsum([0] + [len(s) for s in sources])

  def __len__(self) -> int:
    return int(self._starts[-1])

  def get_batch(self, indices: np.ndarray):
    indices = np.asarray(indices)
    which = np.searchsorted(self._starts, indices, side="right") - 1
    images: list = [None] * len(indices)
    for s in np.unique(which):
      sel = np.flatnonzero(which == s)
      part, _ = self.sources[s].get_batch(indices[sel] - self._starts[s])
      for j, image in zip(sel, part, strict=True):
        images[j] = image
    same = all(getattr(x, "shape", None) == getattr(images[0], "shape", 0) for x in images)
    return (np.stack(images) if same else images), self.labels[indices]

  def record_keys(self) -> list[str]:
    return [k for s in self.sources for k in s.record_keys()]

  def record_where(self, index: int) -> str:
    s = int(np.searchsorted(self._starts, index, side="right")) - 1
    where = getattr(self.sources[s], "record_where", None)
    i = int(index - self._starts[s])
    return where(i) if where is not None else f"record {i}"


class DecodeCache:
  """Decoded images kept in memory, shared by the sources of one dataset up to a byte budget
  (``data.decode_cache_mb``): a record decoded once is served from memory afterwards, the
  same pixels (decoding is deterministic; augmentation comes after). Images are kept first
  come, first kept, until the budget is spent; the rest are decoded each time. A dataset of
  small images fits whole (2,238 28-px PNGs: 5 MB), so each epoch after the first decodes
  nothing (BENCHMARKS.md, "Issue 35")."""

  def __init__(self, budget_bytes: int):
    self.budget = int(budget_bytes)
    self.used = 0
    self._lock = threading.Lock()

  def take(self, nbytes: int) -> bool:
    """Whether ``nbytes`` more fit (and are then counted)."""
    with self._lock:
      if self.used + nbytes > self.budget:
        return False
      self.used += nbytes
      return True

  def __getstate__(self) -> dict:
    state = self.__dict__.copy()
    del state["_lock"]
    return state

  def __setstate__(self, state: dict) -> None:
    self.__dict__.update(state)
    self._lock = threading.Lock()


class CachedDecodes:
  """What a source of encoded images does with a ``DecodeCache``: ``cached(index)`` and
  ``keep(index, image)``. Without one (``use_cache(None)``, the default) nothing is kept."""

  _decode_cache: DecodeCache | None = None
  _decoded: dict | None = None

  def use_cache(self, cache: DecodeCache | None) -> None:
    """Keeps this source's decoded images in ``cache``'s budget (None: none)."""
    self._decode_cache = cache
    self._decoded = {} if cache is not None else None

  def cached(self, index: int):
    return None if self._decoded is None else self._decoded.get(index)

  def keep(self, index: int, image) -> None:
    """Keeps ``image`` if the budget allows, read-only: an augmentation that wrote into its
    input would raise instead of changing the pixels of every later epoch."""
    if self._decoded is not None and self._decode_cache.take(np.asarray(image).nbytes):
      if isinstance(image, np.ndarray):
        image.flags.writeable = False
      self._decoded[index] = image


class DecodedRecords(CachedDecodes):
  """What `SplitListSource` and `PackedSource` share: records decoded one by one, the
  ``skip_corrupt`` replacement of unreadable ones, index checks and pickling.

  A subclass sets ``labels`` and calls `_init_records`; it defines ``_read(index)`` (the
  decoded image, or ValueError naming the record), ``_describe(index)`` (the record, for
  logs) and ``_name`` (the split, for errors).
  """

  labels: np.ndarray
  _name: str

  def _init_records(self, min_size: int | None, skip_corrupt: bool) -> None:
    if min_size is not None and (
      isinstance(min_size, bool) or not isinstance(min_size, int | np.integer) or min_size < 1
    ):
      raise ValueError(f"min_size must be a positive int or None, got {min_size!r}.")
    self.min_size = None if min_size is None else int(min_size)
    self.skip_corrupt = bool(skip_corrupt)
    self.num_skipped = 0
    self.bad_records: set[int] = set()
    self._lock = threading.Lock()
    self._by_class: tuple[np.ndarray, np.ndarray] | None = None

  def __len__(self) -> int:
    return len(self.labels)

  def __getstate__(self) -> dict:
    state = self.__dict__.copy()
    del state["_lock"]  # Not picklable; recreated in worker processes.
    return state

  def __setstate__(self, state: dict) -> None:
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def _read(self, index: int) -> np.ndarray:
    raise NotImplementedError

  def _describe(self, index: int) -> str:
    raise NotImplementedError

  def record_where(self, index: int) -> str:
    """Record ``index`` and where it is listed, for messages."""
    return self._describe(index)

  def _check_indices(self, indices: np.ndarray) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
      raise ValueError(f"indices must be a 1-D integer array, got {indices.dtype} {indices.shape}.")
    n = len(self)
    if indices.size and (indices.min() < 0 or indices.max() >= n):
      bad = indices[(indices < 0) | (indices >= n)]
      raise ValueError(
        f"indices must lie in [0, {n}) for {self._name}; got {bad.size} outside, "
        f"e.g. {int(bad[0])}."
      )
    return indices

  def _class_records(self, index: int) -> np.ndarray:
    """The indices of the records with the label of ``index``, ascending."""
    if self._by_class is None:
      order = np.argsort(self.labels, kind="stable")  # Stable: each class stays ascending.
      self._by_class = (order, self.labels[order])
    order, sorted_labels = self._by_class
    label = self.labels[index]
    lo = np.searchsorted(sorted_labels, label, side="left")
    hi = np.searchsorted(sorted_labels, label, side="right")
    return order[lo:hi]

  def _replace(self, index: int, error: ValueError) -> np.ndarray:
    """The first readable record after ``index`` in its class, cyclically."""
    records = self._class_records(index)
    start = int(np.searchsorted(records, index))
    for k in range(1, len(records)):
      candidate = int(records[(start + k) % len(records)])
      if candidate in self.bad_records:
        continue
      try:
        image = self._read(candidate)
      except ValueError:
        with self._lock:
          self.bad_records.add(candidate)
        continue
      with self._lock:
        self.num_skipped += 1
        count = self.num_skipped
      if count <= _MAX_WARNINGS:
        logger.warning(
          "skip_corrupt: replacing %s by %s: %s%s",
          self._describe(index),
          self._describe(candidate),
          error.__cause__ or error,
          "; further replacements are only counted in num_skipped"
          if count == _MAX_WARNINGS
          else "",
        )
      return image
    raise ValueError(
      f"skip_corrupt: no readable image of class {int(self.labels[index])} in "
      f"{self._name} ({len(records)} record(s), all missing or corrupt); first failure: "
      f"{error}"
    ) from error

  def _load(self, index: int, read=None) -> np.ndarray:
    """Record ``index`` decoded by ``read()`` (default ``self._read(index)``), or with
    ``skip_corrupt`` its replacement when unreadable; from the decode cache when it holds
    it (``use_cache``)."""
    image = self.cached(index)
    if image is not None:
      return image
    if self.skip_corrupt and index in self.bad_records:
      return self._replace(index, ValueError(f"{self._describe(index)} is unreadable"))
    try:
      image = read() if read is not None else self._read(index)
    except ValueError as e:
      if not self.skip_corrupt:
        raise
      with self._lock:
        self.bad_records.add(index)
      image = self._replace(index, e)
    self.keep(index, image)
    return image
