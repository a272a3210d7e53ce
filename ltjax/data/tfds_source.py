"""Random-access sources backed by prepared TensorFlow Datasets (no TensorFlow needed).

``TfdsSource`` wraps ``tfds.data_source``, which reads ArrayRecord files with plain
NumPy/PIL decoding, and implements the ``ltjax.data.sources.Source`` protocol.

The dataset must already be prepared in ArrayRecord format; nothing is downloaded. On a
machine with internet access run::

  tfds build NAME --data_dir=DIR --file_format=array_record

and copy ``DIR/NAME`` to the training machine if needed.

Label cache:
  Samplers only need ``labels``, but a TFDS record holds the image and the label together,
  so the first construction reads every record of the split once (skipping the image
  decode where possible). The result is saved as
  ``<dataset dir>/ltjax_labels-<name>-<version>-<split>-<label_key>-<hash>.npy`` next to the
  dataset's own files (``<data_dir>/<name>/<version>/``) when that directory is local and
  writable, so later constructions read only that file (and spot-check a few records
  against it); an existing cache file is also used from a read-only directory. Otherwise
  the labels are kept in memory, on the instance only, and re-read by the next
  construction. Delete the ``ltjax_labels-*.npy`` files if you re-prepare a dataset with
  different contents under the same version; a cache whose length or spot-check disagrees
  with the records is rebuilt automatically.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from typing import Any
from unittest import mock

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from ltjax.data.sources import check_labels

_CHUNK = 1024  # Records per batched read when scanning labels.
_PROGRESS_MIN = 10_000  # Show a progress bar when scanning more records than this.
_SPOT_CHECKS = 16  # Records re-read to validate a label cache file.
_CACHE_PREFIX = "ltjax_labels"


def _is_mocked(ds: Any) -> bool:
  """Whether ``ds`` comes from ``tfds.testing.mock_data``.

  The mocked records are ``unittest.mock`` objects. Without TensorFlow they support only
  full decoding (``decoders`` need TF to encode the fake images) and record-by-record
  access (the mocked ``__getitems__`` is not bound to the instance and raises TypeError).
  """
  return isinstance(getattr(ds, "data_source", None), mock.NonCallableMock)


def _default_data_dir() -> str:
  return os.path.expanduser(tfds.core.constants.DATA_DIR)


def _open_error(name: str, split: str, data_dir: str | None, err: Exception) -> Exception:
  """Turns a tfds "not found / not prepared" failure into one readable ValueError.

  Returns ``err`` itself when the dataset is prepared as ArrayRecord (e.g. a bad split).
  """
  root = data_dir or _default_data_dir()
  build = f"tfds build {name} --data_dir={root} --file_format=array_record"
  prepared_format = None
  try:  # Diagnosis only: any failure here means "not prepared".
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
      prepared_format = builder.info.file_format
  except Exception:  # noqa: BLE001
    pass
  if prepared_format is None:
    return ValueError(
      f"TFDS dataset {name!r} (split {split!r}) is not prepared in data_dir={root}. "
      f"Nothing is downloaded here: on a machine with internet access run `{build}`, "
      f"then copy the resulting {name.split(':')[0].split('/')[0]}/ directory into {root} "
      f"(or pass data_dir= pointing at a directory that has it)."
    )
  fmt = getattr(prepared_format, "value", str(prepared_format))
  if fmt in ("array_record", "parquet"):
    return err
  return ValueError(
    f"TFDS dataset {name!r} is prepared in {root} as {fmt!r}, but random access needs "
    f"ArrayRecord files. Re-prepare it with `{build}` (after moving the old copy away) "
    f"or point data_dir at an ArrayRecord copy. tfds said: {err}"
  )


class TfdsSource:
  """A prepared TFDS split as a random-access ``Source`` (ArrayRecord, no TensorFlow).

  Args:
    name: TFDS name, optionally with config and version (``"cifar10"``,
      ``"imagenet2012:5.1.0"``).
    split: TFDS split string, e.g. ``"train"`` or ``"train[:90%]"``.
    data_dir: directory holding prepared datasets; ``None`` means the TFDS default
      (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    image_key: name of the image feature.
    label_key: name of the ``ClassLabel`` feature.
    image_size: if set, ``get_batch`` resizes (PIL, bilinear) every image whose size is not
      ``image_size x image_size``. Needed when the images of a dataset differ in size.

  Attributes:
    labels: ``(N,)`` int32 labels, read without decoding images and cached (see the module
      docstring).
    num_classes: number of classes of the label feature.
    cache_path: the label cache file in use, or ``None`` when labels are held in memory.

  Raises:
    ValueError: if the dataset is not prepared in ``data_dir``, a key is not a feature of
      the dataset, or ``image_size`` is not positive.
  """

  def __init__(
    self,
    name: str,
    split: str,
    data_dir: str | None = None,
    image_key: str = "image",
    label_key: str = "label",
    image_size: int | None = None,
  ):
    if image_size is not None and (int(image_size) != image_size or image_size <= 0):
      raise ValueError(f"image_size must be a positive int or None, got {image_size!r}.")
    self.name = name
    self.split = split
    self.data_dir = data_dir
    self.image_key = image_key
    self.label_key = label_key
    self.image_size = None if image_size is None else int(image_size)
    try:
      self._ds = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except (NotImplementedError, FileNotFoundError, ValueError) as e:  # incl. DatasetNotFound
      err = _open_error(name, split, data_dir, e)
      if err is e:
        raise
      raise err from e
    self._mocked = _is_mocked(self._ds)
    self.info = (
      getattr(self._ds, "dataset_info", None) or tfds.builder(name, data_dir=data_dir).info
    )
    features = self.info.features
    for key, what in ((image_key, "image_key"), (label_key, "label_key")):
      if key not in features:
        raise ValueError(
          f"{what}={key!r} is not a feature of {name}; its features are "
          f"{sorted(features.keys())}. Pass the right {what}."
        )
    label_feature = features[label_key]
    if not isinstance(label_feature, tfds.features.ClassLabel):
      raise ValueError(
        f"label_key={label_key!r} of {name} is a {type(label_feature).__name__}, "
        "not a ClassLabel, so it has no num_classes. Pass the ClassLabel "
        "feature as label_key."
      )
    self.num_classes = int(label_feature.num_classes)
    self._image_shape = tuple(features[image_key].shape)
    self._label_ds = None  # Opened lazily: only a label scan or a spot check needs it.
    self.cache_path = self._cache_file()
    self.labels = self._load_labels()

  def __len__(self) -> int:
    return len(self._ds)

  def __repr__(self) -> str:
    return (
      f"TfdsSource({self.name!r}, split={self.split!r}, n={len(self)}, "
      f"num_classes={self.num_classes}, image_size={self.image_size})"
    )

  # --- record access -------------------------------------------------------------------

  def _records(self, ds: Any, keys: Sequence[int]) -> list[dict[str, Any]]:
    """Reads records ``keys`` (python ints), batched when the source supports it."""
    if not keys:
      return []
    if not self._mocked and hasattr(ds, "__getitems__"):
      return list(ds.__getitems__(keys))
    return [ds[k] for k in keys]

  def _label_source(self) -> Any:
    """A data source that skips the image decode (full decoding under mock_data)."""
    if self._label_ds is None:
      if self._mocked or not hasattr(self._ds, "data_source"):
        self._label_ds = self._ds
      else:
        self._label_ds = tfds.data_source(
          self.name,
          split=self.split,
          data_dir=self.data_dir,
          download=False,
          decoders={self.image_key: tfds.decode.SkipDecoding()},
        )
    return self._label_ds

  def _read_labels(self, keys: Sequence[int]) -> np.ndarray:
    records = self._records(self._label_source(), keys)
    return np.asarray([int(r[self.label_key]) for r in records], dtype=np.int64)

  def _scan_labels(self) -> np.ndarray:
    """Reads the label of every record (slow: one pass over the split)."""
    n = len(self)
    bar = None
    if n > _PROGRESS_MIN:
      from tqdm.auto import tqdm  # noqa: PLC0415

      bar = tqdm(total=n, desc=f"{self.name} {self.split}: reading labels", unit="rec")
    out = np.empty(n, np.int64)
    try:
      for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        out[start:stop] = self._read_labels(list(range(start, stop)))
        if bar is not None:
          bar.update(stop - start)
    finally:
      if bar is not None:
        bar.close()
    return out

  # --- label cache ---------------------------------------------------------------------

  def _cache_file(self) -> str | None:
    """The cache path if the dataset directory is a local directory, else ``None``."""
    directory = os.fspath(getattr(self.info, "data_dir", "") or "")
    if not directory or "://" in directory or not os.path.isdir(directory):
      return None
    version = str(getattr(self.info, "version", "unknown"))
    full = f"{self.info.full_name}|{self.split}|{self.label_key}"
    digest = hashlib.sha1(full.encode()).hexdigest()[:8]
    safe = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)).strip("_") or "x"
    fname = (
      f"{_CACHE_PREFIX}-{safe(self.info.name)}-{safe(version)}-{safe(self.split)}-"
      f"{safe(self.label_key)}-{digest}.npy"
    )
    return os.path.join(directory, fname)

  def _load_labels(self) -> np.ndarray:
    labels = self._read_cache() if self.cache_path else None
    if labels is None:
      labels = check_labels(
        self._scan_labels(), self.num_classes, what=f"{self.name} {self.split} labels"
      )
      if self.cache_path and os.access(os.path.dirname(self.cache_path), os.W_OK):
        self._write_cache(labels)
      else:
        self.cache_path = None  # Read-only dataset directory: labels live in memory.
    return labels

  def _read_cache(self) -> np.ndarray | None:
    """The cached labels, or ``None`` if missing, unreadable or inconsistent."""
    path = self.cache_path
    if not os.path.exists(path):
      return None
    try:
      labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      logging.warning("ignoring unreadable label cache %s (%s); re-reading labels.", path, e)
      return None
    n = len(self)
    try:
      labels = check_labels(labels, self.num_classes, what=f"label cache {path}")
    except ValueError as e:
      logging.warning("ignoring bad label cache: %s", e)
      return None
    if len(labels) != n:
      logging.warning(
        "label cache %s has %d labels but the split has %d records; re-reading labels.",
        path,
        len(labels),
        n,
      )
      return None
    keys = sorted({int(k) for k in np.linspace(0, n - 1, min(n, _SPOT_CHECKS))}) if n else []
    if keys and not np.array_equal(self._read_labels(keys), labels[keys]):
      logging.warning(
        "label cache %s disagrees with the records (stale?); re-reading labels.", path
      )
      return None
    return labels

  def _write_cache(self, labels: np.ndarray) -> None:
    """Writes the cache atomically; on failure keeps the labels in memory only."""
    directory = os.path.dirname(self.cache_path)
    tmp = None
    try:
      with tempfile.NamedTemporaryFile(
        dir=directory, prefix=f".{_CACHE_PREFIX}-", suffix=".npy.tmp", delete=False
      ) as f:
        tmp = f.name
        np.save(f, labels)
      os.replace(tmp, self.cache_path)
    except OSError as e:
      logging.warning(
        "could not write label cache %s (%s); keeping labels in memory.", self.cache_path, e
      )
      if tmp is not None and os.path.exists(tmp):
        os.remove(tmp)
      self.cache_path = None

  # --- batches -------------------------------------------------------------------------

  def _to_image(self, image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
      raise ValueError(
        f"{self.name}[{self.image_key!r}] has dtype {image.dtype}; only uint8 "
        "images are supported. Pick a uint8 image feature as image_key."
      )
    if image.ndim == 2:
      image = image[..., None]
    if image.ndim != 3:
      raise ValueError(
        f"{self.name}[{self.image_key!r}] has shape {image.shape}; expected (H, W) or (H, W, C)."
      )
    s = self.image_size
    if s is not None and image.shape[:2] != (s, s):
      image = _resize(image, s)
    return image

  def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decodes records ``indices``.

    Args:
      indices: ``(B,)`` integer positions in ``[0, len(self))``.

    Returns:
      ``uint8`` images ``(B, H, W, C)`` (``C == 1`` for grayscale) and ``int32`` labels
      ``(B,)``, equal to ``self.labels[indices]``.

    Raises:
      ValueError: if the images differ in shape and ``image_size`` is not set, or if the
        decoded labels disagree with ``labels`` (a stale label cache).
      IndexError: if an index is out of range.
    """
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
      raise ValueError(
        f"indices must be a 1-D integer array, got shape {indices.shape} and dtype {indices.dtype}."
      )
    n = len(self)
    bad = np.flatnonzero((indices < 0) | (indices >= n))
    if bad.size:
      raise IndexError(
        f"index {int(indices[bad[0]])} is out of range for {self.name} "
        f"{self.split!r} with {n} records."
      )
    keys = [int(i) for i in indices]
    records = self._records(self._ds, keys)
    images = [self._to_image(r[self.image_key]) for r in records]
    labels = np.asarray([int(r[self.label_key]) for r in records], dtype=np.int32)
    if not np.array_equal(labels, self.labels[indices]):
      raise ValueError(
        f"decoded labels of {self.name} {self.split!r} disagree with the "
        f"cached labels (cache: {self.cache_path or 'in memory'}). Delete the "
        "ltjax_labels-*.npy files in the dataset directory and retry."
      )
    if not images:
      s = self.image_size
      h, w, c = (s, s, self._image_shape[-1]) if s else self._image_shape
      return np.zeros((0, h or 0, w or 0, c or 0), np.uint8), labels
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
      if self.image_size is None:
        raise ValueError(
          f"images of {self.name} {self.split!r} differ in size in this batch "
          f"({sorted(shapes)[:4]}...); set image_size=... to resize them to a "
          "common square size."
        )
      raise ValueError(
        f"images of {self.name} {self.split!r} differ in channels "
        f"({sorted(shapes)[:4]}); ltjax needs one channel count per dataset."
      )
    return np.stack(images), labels


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of a uint8 ``(H, W, C)`` image to ``(size, size, C)`` with PIL."""
  c = image.shape[-1]
  if c in (1, 3, 4):
    pil = Image.fromarray(image[..., 0] if c == 1 else image)
    out = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
    return out.reshape(size, size, c)
  chans = [
    np.asarray(Image.fromarray(image[..., k]).resize((size, size), Image.Resampling.BILINEAR))
    for k in range(c)
  ]
  return np.stack(chans, axis=-1)


def load_tfds_splits(
  name: str,
  data_dir: str | None = None,
  train_split: str = "train",
  test_split: str = "test",
  image_size: int | None = None,
) -> dict[str, TfdsSource]:
  """Opens the train and test splits of a prepared TFDS dataset.

  Args:
    name: TFDS name, e.g. ``"cifar10"``.
    data_dir: directory holding prepared datasets (``None``: the TFDS default).
    train_split: split string of the training pool.
    test_split: split string of the test set.
    image_size: see ``TfdsSource``.

  Returns:
    ``{"train": TfdsSource, "test": TfdsSource}``.

  Raises:
    ValueError: see ``TfdsSource``.
  """
  return {
    key: TfdsSource(name, split, data_dir=data_dir, image_size=image_size)
    for key, split in (("train", train_split), ("test", test_split))
  }
