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

The reference list files of each dataset are facts of the dataset table
(``ltjax.data.datasets.DATASETS``).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ltjax.data.longtail import check_num_classes
from ltjax.data.sources.base import DecodedRecords
from ltjax.data.sources.decode import decode_image

logger = logging.getLogger(__name__)

_PROGRESS_MIN = 10_000  # `verify` shows a progress bar above this many records.
_QUOTE_MAX = 120  # Characters of an offending line quoted in an error message.


# ---------------------------------------------------------------------------- parsing


def _quote(line: str) -> str:
  line = line.strip()
  return repr(line if len(line) <= _QUOTE_MAX else line[:_QUOTE_MAX] + "...")


def _is_int(token: str) -> bool:
  digits = token[1:] if token[:1] in "+-" and len(token) > 1 else token
  return digits.isascii() and digits.isdigit()


def _read_text(path: str) -> str:
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise ValueError(
      f"split list {path!r} does not exist; check the path (the reference lists are named "
      "like ImageNet_LT_train.txt, see the dataset table, ltjax.data.datasets.DATASETS)."
    ) from None
  except OSError as e:
    raise ValueError(f"cannot read split list {path!r}: {e}") from e
  try:
    return raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line_no = raw[: e.start].count(b"\n") + 1
    raise ValueError(
      f"{path}, line {line_no}: not valid UTF-8 ({e.reason}); a split list is a text file "
      "of 'relative/path label' lines."
    ) from None


def _parse_line(path: str, line_no: int, line: str) -> tuple[str, int] | None:
  """(relative path, label) of a ``relative/path label`` line; None for a blank line."""
  parts = line.rsplit(None, 1)
  if not parts:
    return None
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
  return rel.strip(), label


def _check_label_range(path, paths, labels, lines, num_classes, allow_open) -> None:
  low = -1 if allow_open else 0
  bad = labels < low
  if num_classes is not None:
    bad |= labels >= num_classes
  if not bad.any():
    return
  i = int(np.flatnonzero(bad)[0])
  label, line_no = int(labels[i]), int(lines[i])
  record = f"{paths[i]} {label}"
  if label == -1:
    fix = (
      "-1 marks an open-set image, allowed only in the open-set list (ImageNet_LT_open.txt, "
      "read with --config.dataset.open_set=True)."
    )
  elif label < 0:
    fix = "class ids must be >= 0 (or -1 for open-set images, in the open-set list)."
  else:
    fix = f"class ids must be < num_classes={num_classes}; check num_classes or the list."
  raise ValueError(
    f"{path}, line {line_no}: label {label} is out of range in {_quote(record)}; {fix} "
    f"({int(bad.sum())} bad label(s) in all.)"
  )


def read_split_list(
  path: str | os.PathLike, num_classes: int | None, allow_open: bool
) -> tuple[list[str], np.ndarray, np.ndarray]:
  """`parse_split_file`, also returning the 1-based line number of each record."""
  path = os.fspath(path)
  num_classes = check_num_classes(num_classes)
  paths: list[str] = []
  labels: list[int] = []
  line_numbers: list[int] = []
  for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
    record = _parse_line(path, line_no, line)
    if record is not None:
      paths.append(record[0])
      labels.append(record[1])
      line_numbers.append(line_no)
  if not paths:
    raise ValueError(f"split list {path!r} holds no records; expected 'relative/path label' lines.")
  label_arr = np.asarray(labels, dtype=np.int64)
  line_arr = np.asarray(line_numbers, dtype=np.int64)
  _check_label_range(path, paths, label_arr, line_arr, num_classes, allow_open)
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
  paths, labels, _ = read_split_list(path, num_classes, allow_open)
  return paths, labels


# ---------------------------------------------------------------------- image folders

#: The file extensions torchvision's ``ImageFolder`` takes as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _hidden(name: str) -> bool:
  """A dot-file or dot-directory (``.thumbnails``, ``.DS_Store``, ``.ipynb_checkpoints``):
  never a class, never an image."""
  return name.startswith(".")


def folder_classes(directory: str) -> list[str]:
  """The class folders of ``directory``, sorted (``ImageFolder``'s class order); hidden
  (dot) directories are not classes."""
  try:
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not _hidden(e.name))
  except FileNotFoundError:
    raise ValueError(f"image folder {directory} does not exist.") from None


def _skipped_line(directory: str, hidden: list[str], other: list[str]) -> str | None:
  """One line saying what a scan of ``directory`` left out, or None."""
  parts = []
  for what, names in (("hidden file(s) or folder(s)", hidden), ("non-image file(s)", other)):
    if names:
      shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
      parts.append(f"{len(names)} {what} ({shown})")
  if not parts:
    return None
  return (
    f"{directory}: skipped {' and '.join(parts)}; images are files ending in "
    f"{', '.join(IMAGE_EXTENSIONS)}."
  )


def scan_image_folder(directory: str, classes: list[str] | None) -> tuple[list[str], np.ndarray]:
  """The images under ``directory``, in torchvision ``ImageFolder``'s order: class by class
  (``classes``, in their order), each class's folder walked in sorted order.

  Args:
    directory: e.g. ``root/train``.
    classes: the class folder names; label = position. None: one open set, every image
      under ``directory`` labelled -1.

  Returns:
    (paths relative to ``directory``, (N,) int32 labels).

  Raises:
    ValueError: ``directory`` is missing, or holds a class folder not in ``classes`` (a
      class the training split does not have), or a class folder without images.
  """
  if not os.path.isdir(directory):
    raise ValueError(f"image folder {directory} does not exist.")
  paths: list[str] = []
  labels: list[int] = []
  groups = [(None, -1)] if classes is None else [(c, i) for i, c in enumerate(classes)]
  if classes is not None:
    unknown = sorted(set(folder_classes(directory)) - set(classes))
    if unknown:
      raise ValueError(
        f"{directory} has class folder(s) {unknown} that the training split does not have "
        f"(its classes: {', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}): "
        "move those images into the class they belong to, or add the class to train/."
      )
  hidden: list[str] = []
  other: list[str] = []
  if classes is not None:  # Entries of the split folder that are no class.
    for e in sorted(os.scandir(directory), key=lambda e: e.name):
      if _hidden(e.name):
        hidden.append(e.name)
      elif not e.is_dir():
        other.append(e.name)
  for name, label in groups:
    top = directory if name is None else os.path.join(directory, name)
    found = []
    walked = []
    for root, dirs, files in os.walk(top, followlinks=True):
      hidden += [os.path.relpath(os.path.join(root, d), directory) for d in dirs if _hidden(d)]
      dirs[:] = [d for d in dirs if not _hidden(d)]  # Not walked into.
      walked.append((root, files))
    for root, files in sorted(walked):  # ImageFolder's order: sorted folders, sorted files.
      rel = lambda n, root=root: os.path.relpath(os.path.join(root, n), directory)  # noqa: E731
      for f in sorted(files):
        if _hidden(f):
          hidden.append(rel(f))
        elif f.lower().endswith(IMAGE_EXTENSIONS):
          found.append(rel(f))
        else:
          other.append(rel(f))
    paths += found
    labels += [label] * len(found)
  skipped = _skipped_line(directory, hidden, other)
  if skipped:
    logger.info("%s", skipped)
  if not paths:
    raise ValueError(f"image folder {directory} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
  return paths, np.asarray(labels, np.int32)


# ----------------------------------------------------------------------------- source


#: What an error about one unreadable image tells the user to do (``ltjax verify``, which
#: lists them all, leaves it out).
UNREADABLE_FIX = (
  "Check --config.dataset.root, run `ltjax verify --config=...` to list every unreadable "
  "image at once, or set --config.data.skip_corrupt=True to replace unreadable images by "
  "another image of the same class."
)


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

    records: ``(paths, labels, lines)`` already read (``from_folder``); ``list_file`` then
      only names the records in messages.

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
    records: tuple[list[str], np.ndarray, np.ndarray] | None = None,
  ):
    self.list_file = os.fspath(list_file)
    self.root = os.fspath(root)
    if records is None:
      records = read_split_list(self.list_file, num_classes, allow_open)
    self.paths, self.labels, self.lines = records
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

  @classmethod
  def from_folder(
    cls, root: str | os.PathLike, split: str, classes: list[str] | None, **kwargs
  ) -> SplitListSource:
    """The images of the image-folder tree ``root/split/<class>/...`` (``scan_image_folder``:
    torchvision's ``ImageFolder`` order), labelled by ``classes``; with ``classes=None``
    every image is an open-set image (label -1, ``root/split/...`` at any depth)."""
    paths, labels = scan_image_folder(os.path.join(os.fspath(root), split), classes)
    lines = np.arange(1, len(paths) + 1, dtype=np.int64)
    records = ([os.path.join(split, p) for p in paths], labels, lines)
    name = f"{os.path.join(os.fspath(root), split)}{os.sep} (image folder)"
    # An open set has no classes of its own: one class keeps the source well formed.
    return cls(name, root, len(classes) if classes else 1, records=records, **kwargs)

  def record_keys(self) -> list[str]:
    """The listed paths, normalised (``a/./b`` and ``a//b`` are ``a/b``): relative to the
    root, so a moved dataset keeps its keys."""
    return [os.path.normpath(p) for p in self.paths]

  def full_path(self, index: int) -> str:
    """``root/relative_path`` of record ``index``."""
    return os.path.join(self.root, self.paths[index])

  def _where(self, index: int) -> str:
    if self.list_file.endswith("(image folder)"):
      return f"image {int(self.lines[index])} of {self.list_file}"
    return f"listed in {self.list_file}, line {int(self.lines[index])}"

  def _read(self, index: int) -> np.ndarray:
    """Decodes record ``index``; ValueError naming the image, the list and the line."""
    path = self.full_path(index)
    fix = UNREADABLE_FIX
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
      from tqdm.auto import tqdm

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
