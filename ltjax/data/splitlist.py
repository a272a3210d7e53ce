"""Image folders described by split-list files, the format of the long-tailed references.

A split list (``ImageNet_LT_train.txt``, ``Places_LT_val.txt``, ``iNaturalist18_val.txt``,
...) has one record per line::

  train/n01440764/n01440764_762.JPEG 0

a path relative to the dataset root, whitespace, and an integer class id. Blank lines are
skipped. The label is the last whitespace-separated token, so a path may contain spaces.
The open-set lists of OLTR (``ImageNet_LT_open.txt``, ``Places_LT_open.txt``) label every
image -1; parse them with ``allow_open=True``.

`SplitListSource` implements the ``ltjax.data.sources.Source`` protocol on such a list:
``labels`` come from the list alone (no image is opened), and ``get_batch`` decodes
``root/relative_path`` into a list of ``(H, W, 3)`` uint8 arrays of varying sizes, which
the ``imagenet`` augmentation or the ``resize_center_crop`` evaluation transform bring to
one size.

`DATASET_LISTS` names the reference list files of each dataset; `split_statistics` and
`format_statistics` summarise a list's class distribution.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ltjax.data.image_ops import decode_image
from ltjax.evaluate.metrics import shot_groups

logger = logging.getLogger(__name__)

#: The reference split-list file names of each dataset, and its number of classes. The
#: references evaluate iNaturalist 2018 on its validation list, hence "test" = "val".
DATASET_LISTS: dict[str, dict[str, Any]] = {
  "imagenet_lt": {
    "train": "ImageNet_LT_train.txt",
    "val": "ImageNet_LT_val.txt",
    "test": "ImageNet_LT_test.txt",
    "open": "ImageNet_LT_open.txt",
    "num_classes": 1000,
  },
  "places_lt": {
    "train": "Places_LT_train.txt",
    "val": "Places_LT_val.txt",
    "test": "Places_LT_test.txt",
    "open": "Places_LT_open.txt",
    "num_classes": 365,
  },
  "inat2018": {
    "train": "iNaturalist18_train.txt",
    "val": "iNaturalist18_val.txt",
    "test": "iNaturalist18_val.txt",
    "num_classes": 8142,
  },
}

_MAX_WARNINGS = 10  # Unreadable images logged one by one before the log goes quiet.
_PROGRESS_MIN = 10_000  # `verify` shows a progress bar above this many records.
_QUOTE_MAX = 120  # Characters of an offending line quoted in an error message.


def split_list_path(dataset: str, split: str, directory: str | os.PathLike) -> str:
  """The path of a reference split list, ``directory/DATASET_LISTS[dataset][split]``.

  Args:
    dataset: a key of `DATASET_LISTS` ("imagenet_lt", "places_lt", "inat2018").
    split: "train", "val", "test" or (ImageNet-LT, Places-LT) "open".
    directory: the folder holding the list files.

  Raises:
    ValueError: on an unknown dataset or split.
  """
  if dataset not in DATASET_LISTS:
    raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASET_LISTS)}.")
  files = {k: v for k, v in DATASET_LISTS[dataset].items() if k != "num_classes"}
  if split not in files:
    raise ValueError(f"dataset {dataset!r} has no split {split!r}; valid: {', '.join(files)}.")
  return os.path.join(os.fspath(directory), files[split])


# ---------------------------------------------------------------------------- parsing


def _quote(line: str) -> str:
  line = line.strip()
  return repr(line if len(line) <= _QUOTE_MAX else line[:_QUOTE_MAX] + "...")


def _is_int(token: str) -> bool:
  digits = token[1:] if token[:1] in "+-" and len(token) > 1 else token
  return digits.isascii() and digits.isdigit()


def _check_num_classes(num_classes: int | None) -> int | None:
  if num_classes is None:
    return None
  if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
    raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}.")
  if num_classes < 1:
    raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}.")
  return int(num_classes)


def _parse(
  path: str | os.PathLike, num_classes: int | None, allow_open: bool
) -> tuple[list[str], np.ndarray, np.ndarray]:
  """`parse_split_file`, also returning the 1-based line number of each record."""
  path = os.fspath(path)
  num_classes = _check_num_classes(num_classes)
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise ValueError(
      f"split list {path!r} does not exist; check the path (the reference lists are named "
      "like ImageNet_LT_train.txt, see ltjax.data.splitlist.DATASET_LISTS)."
    ) from None
  except OSError as e:
    raise ValueError(f"cannot read split list {path!r}: {e}") from e
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line_no = raw[: e.start].count(b"\n") + 1
    raise ValueError(
      f"{path}, line {line_no}: not valid UTF-8 ({e.reason}); a split list is a text file "
      "of 'relative/path label' lines."
    ) from None

  paths: list[str] = []
  labels: list[int] = []
  line_numbers: list[int] = []
  for line_no, line in enumerate(text.splitlines(), start=1):
    parts = line.rsplit(None, 1)
    if not parts:
      continue  # Blank line.
    if len(parts) != 2 or not parts[0].strip():
      raise ValueError(
        f"{path}, line {line_no}: expected 'relative/path label', got {_quote(line)}. "
        "Each line must hold an image path, whitespace and an integer class id."
      )
    rel, token = parts
    if not _is_int(token):
      raise ValueError(
        f"{path}, line {line_no}: the label {token!r} is not an integer in {_quote(line)}. "
        "The last token of each line must be the integer class id."
      )
    label = int(token)
    if not -(2**31) <= label < 2**31:
      raise ValueError(
        f"{path}, line {line_no}: the label {token} does not fit in int32 in {_quote(line)}; "
        "the last token of each line must be a class id."
      )
    paths.append(rel.strip())
    labels.append(label)
    line_numbers.append(line_no)

  if not paths:
    raise ValueError(f"split list {path!r} holds no records; expected 'relative/path label' lines.")
  label_arr = np.asarray(labels, dtype=np.int64)
  line_arr = np.asarray(line_numbers, dtype=np.int64)
  low = -1 if allow_open else 0
  bad = label_arr < low
  if num_classes is not None:
    bad |= label_arr >= num_classes
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    label, line_no = int(label_arr[i]), int(line_arr[i])
    record = f"{paths[i]} {label}"
    if label == -1:
      fix = "-1 marks an open-set image: pass allow_open=True for an open-set list."
    elif label < 0:
      fix = "class ids must be >= 0 (or -1 for open-set images with allow_open=True)."
    else:
      fix = f"class ids must be < num_classes={num_classes}; check num_classes or the list."
    raise ValueError(
      f"{path}, line {line_no}: label {label} is out of range in {_quote(record)}; {fix} "
      f"({int(bad.sum())} bad label(s) in all.)"
    )
  return paths, label_arr.astype(np.int32), line_arr


def parse_split_file(
  path: str | os.PathLike, num_classes: int | None = None, allow_open: bool = False
) -> tuple[list[str], np.ndarray]:
  """Reads a split list of ``relative/path label`` lines.

  Blank lines are skipped. The label is the last whitespace-separated token, so paths may
  contain spaces; leading and trailing whitespace is dropped.

  Args:
    path: the list file.
    num_classes: if given, every label must be < num_classes.
    allow_open: also accept the open-set label -1.

  Returns:
    (paths, labels): the relative paths in file order, and a (N,) int32 array.

  Raises:
    ValueError: if the file is missing, unreadable or empty, or a line has no label, a
      non-integer label or a label out of range (naming the file, the 1-based line number
      and the line).
  """
  paths, labels, _ = _parse(path, num_classes, allow_open)
  return paths, labels


# ------------------------------------------------------------------------- statistics


def split_statistics(
  labels: Sequence[int] | np.ndarray,
  num_classes: int | None = None,
  many_threshold: int = 100,
  few_threshold: int = 20,
) -> dict[str, Any]:
  """The class distribution of a split.

  Open-set records (label -1) are counted in ``num_open`` and left out of everything
  else. The many/medium/few groups follow ``ltjax.evaluate.metrics.shot_groups``: many if
  n > many_threshold, few if n < few_threshold, medium otherwise; empty classes are few,
  so the three counts sum to ``num_classes``.

  Args:
    labels: (N,) integer class ids, -1 for open-set records.
    num_classes: K; the largest label + 1 if not given.
    many_threshold: see above.
    few_threshold: see above.

  Returns:
    A dict with ``num_images`` (all records, open ones included), ``num_open``,
    ``num_classes``, ``counts`` ((K,) int64 images per class), ``largest`` and
    ``smallest`` (over the classes with at least one image; 0 if none), ``num_empty``
    (classes without images), ``imbalance`` (largest / smallest, nan if no class has
    images), ``many``, ``medium`` and ``few`` (numbers of classes), and the two
    thresholds.

  Raises:
    ValueError: on labels below -1 or >= num_classes, or inconsistent thresholds.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
    raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}.")
  num_classes = _check_num_classes(num_classes)
  known = labels[labels >= 0]
  if np.any(labels < -1):
    i = int(np.flatnonzero(labels < -1)[0])
    raise ValueError(f"labels[{i}] = {int(labels[i])}; class ids must be >= 0 (or -1 for open).")
  if num_classes is None:
    if not known.size:
      raise ValueError("no labels >= 0 to infer the number of classes from; pass num_classes.")
    num_classes = int(known.max()) + 1
  elif known.size and known.max() >= num_classes:
    raise ValueError(
      f"label {int(known.max())} is >= num_classes={num_classes}; check num_classes."
    )
  counts = np.bincount(known, minlength=num_classes).astype(np.int64)
  present = counts[counts > 0]
  largest = int(present.max()) if present.size else 0
  smallest = int(present.min()) if present.size else 0
  groups = shot_groups(counts, many_threshold=many_threshold, few_threshold=few_threshold)
  return {
    "num_images": int(labels.size),
    "num_open": int(labels.size - known.size),
    "num_classes": num_classes,
    "counts": counts,
    "largest": largest,
    "smallest": smallest,
    "num_empty": int(num_classes - present.size),
    "imbalance": largest / smallest if smallest else float("nan"),
    "many": int(groups["many"].sum()),
    "medium": int(groups["medium"].sum()),
    "few": int(groups["few"].sum()),
    "many_threshold": many_threshold,
    "few_threshold": few_threshold,
  }


def format_statistics(stats: dict[str, Any], name: str = "split") -> str:
  """A readable multi-line summary of a `split_statistics` result.

  Args:
    stats: the dict returned by `split_statistics`.
    name: a title, e.g. the list file name.

  Returns:
    The text, without a trailing newline.
  """
  k = stats["num_classes"]
  known = stats["num_images"] - stats["num_open"]
  many, few = stats["many_threshold"], stats["few_threshold"]
  open_note = f" ({stats['num_open']:,} open-set, label -1)" if stats["num_open"] else ""
  rows = [
    ("images", f"{stats['num_images']:,}{open_note}"),
    ("classes", f"{k:,} ({k - stats['num_empty']:,} with images, {stats['num_empty']:,} empty)"),
    ("largest class", f"{stats['largest']:,}"),
    ("smallest class", f"{stats['smallest']:,} (over classes with images)"),
    ("mean per class", f"{known / k:,.1f}"),
    ("imbalance", f"{stats['imbalance']:.1f} (largest / smallest)"),
    (f"many (n > {many})", f"{stats['many']:,} classes"),
    (f"medium ({few} <= n <= {many})", f"{stats['medium']:,} classes"),
    (f"few (n < {few})", f"{stats['few']:,} classes"),
  ]
  width = max(len(key) for key, _ in rows) + 1
  lines = [f"{name}:"] + [f"  {(key + ':').ljust(width)} {value}" for key, value in rows]
  return "\n".join(lines)


# ----------------------------------------------------------------------------- source


class DecodedRecords:
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
    ``skip_corrupt`` its replacement when unreadable."""
    if self.skip_corrupt and index in self.bad_records:
      return self._replace(index, ValueError(f"{self._describe(index)} is unreadable"))
    try:
      return read() if read is not None else self._read(index)
    except ValueError as e:
      if not self.skip_corrupt:
        raise
      with self._lock:
        self.bad_records.add(index)
      return self._replace(index, e)


class SplitListSource(DecodedRecords):
  """Images under ``root`` listed in a split-list file; a ``Source`` of varying sizes.

  Args:
    list_file: the split list (``relative/path label`` lines).
    root: the directory the listed paths are relative to.
    num_classes: K; the largest label + 1 if not given (required for an open-set list).
    allow_open: accept label -1 (open-set images).
    min_size: passed to `decode_image`: JPEGs are decoded at a reduced scale whose
      shorter side stays >= min_size (e.g. 256 for 224-pixel crops); None decodes fully.
    skip_corrupt: replace a missing or undecodable image by the next readable record of
      the same class (scanning that class's records forward, cyclically), logging a
      warning for the first 10 and counting each replacement in ``num_skipped``. If
      False such an image raises ValueError.

  Attributes:
    paths: the relative paths, in list order.
    labels: (N,) int32 labels.
    lines: (N,) 1-based line number of each record in ``list_file``.
    num_skipped: images replaced so far (``skip_corrupt=True``).
    bad_records: indices found unreadable so far (``skip_corrupt=True``).
  """

  def __init__(
    self,
    list_file: str | os.PathLike,
    root: str | os.PathLike,
    num_classes: int | None = None,
    *,
    allow_open: bool = False,
    min_size: int | None = None,
    skip_corrupt: bool = False,
  ):
    self.list_file = os.fspath(list_file)
    self.root = os.fspath(root)
    self.paths, self.labels, self.lines = _parse(self.list_file, num_classes, allow_open)
    if num_classes is None:
      if self.labels.max() < 0:
        raise ValueError(
          f"{self.list_file} holds only open-set records (label -1), so the number of classes "
          "cannot be inferred; pass num_classes (e.g. 1000 for ImageNet-LT, 365 for Places-LT)."
        )
      num_classes = int(self.labels.max()) + 1
    self.num_classes = int(num_classes)
    self._name = self.list_file
    self._init_records(min_size, skip_corrupt)

  def full_path(self, index: int) -> str:
    """``root/relative_path`` of record ``index``."""
    return os.path.join(self.root, self.paths[index])

  def _where(self, index: int) -> str:
    return f"listed in {self.list_file}, line {int(self.lines[index])}"

  def _read(self, index: int) -> np.ndarray:
    """Decodes record ``index``; ValueError naming the image, the list and the line."""
    path = self.full_path(index)
    fix = (
      "Check root, run verify() to list every missing file, or pass skip_corrupt=True to "
      "replace unreadable images by another image of the same class."
    )
    try:
      with open(path, "rb") as f:
        data = f.read()
    except FileNotFoundError:
      raise ValueError(f"image not found: {path} ({self._where(index)}). {fix}") from None
    except OSError as e:
      raise ValueError(f"cannot read image {path} ({self._where(index)}): {e}. {fix}") from e
    try:
      return decode_image(data, channels=3, min_size=self.min_size)
    except ValueError as e:
      raise ValueError(f"corrupt image {path} ({self._where(index)}): {e}. {fix}") from e

  def _describe(self, index: int) -> str:
    return f"{self.full_path(index)} ({self._where(index)})"

  def get_batch(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Decodes the records at ``indices``.

    Args:
      indices: (B,) record indices.

    Returns:
      (images, labels): a list of B (H_i, W_i, 3) uint8 arrays, and (B,) int32 labels.
      A replaced image (``skip_corrupt``) keeps its own record's label, which is the
      replacement's label too.

    Raises:
      ValueError: on an index out of range, or a missing or corrupt image (naming its
        path, the list file and the line) unless ``skip_corrupt``.
    """
    indices = self._check_indices(indices)
    images = [self._load(int(i)) for i in indices]
    return images, self.labels[indices]

  def verify(self, progress: bool | None = None) -> list[str]:
    """Checks that every listed image exists (without decoding it).

    Args:
      progress: show a tqdm bar; by default when there are more than 10,000 records.

    Returns:
      The full paths of the missing images, in list order (empty if none).
    """
    n = len(self)
    if progress is None:
      progress = n > _PROGRESS_MIN
    bar = None
    if progress:
      from tqdm.auto import tqdm  # noqa: PLC0415

      bar = tqdm(total=n, desc=f"checking {os.path.basename(self.list_file)}", unit="img")
    missing = []
    exists = os.path.exists
    try:
      for i in range(n):
        path = self.full_path(i)
        if not exists(path):
          missing.append(path)
        if bar is not None and (i + 1) % 1000 == 0:
          bar.update(1000)
    finally:
      if bar is not None:
        bar.update(n - bar.n)
        bar.close()
    return missing
