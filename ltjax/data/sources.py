"""Random-access data sources.

A source is anything with ``labels`` (an ``(N,)`` int array, read without decoding
images), ``num_classes``, ``__len__`` and ``get_batch(indices) -> (images, labels)``
returning ``uint8`` images of shape ``(B, H, W, C)`` — or, for sources of images of
varying sizes (JPEG folders), a list of ``(H, W, C)`` arrays that the ``imagenet``
augmentation / ``resize_center_crop`` evaluation transform bring to one size.
Samplers and long-tail builders only ever look at ``labels``; the pipeline calls
``get_batch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Source(Protocol):
  labels: np.ndarray
  num_classes: int

  def __len__(self) -> int: ...

  def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


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
