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

Id cache:
  With ``id_key`` (e.g. imagenet2012's ``file_name``) the same pass also reads that text
  feature of every record and caches it the same way, as
  ``ltjax_ids-<name>-<version>-<split>-<id_key>-<hash>.npy`` (a fixed-width bytes array:
  ~26 MB for ImageNet's 1.28M training names, ~90 MB for Places365's 1.8M). The pass still
  reads every record from disk: an ArrayRecord record is one serialized example, image
  included, and cannot be read in part (``tfds.data_source`` rejects ``PartialDecoding``);
  ``SkipDecoding`` spares the image decode, which makes the scan over 10x cheaper per
  record than full decoding on 500x375 JPEGs.

The reference split lists (ImageNet-LT, Places-LT, iNaturalist 2018) over these sources
are in ``ltjax.data.sources.tfds_lists``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from ltjax import files
from ltjax.data.sources.base import CachedDecodes, check_labels
from ltjax.stop import STOP

_CHUNK = 1024  # Records per batched read when scanning labels.
_PROGRESS_MIN = 10_000  # Show a progress bar when scanning more records than this.
_SPOT_CHECKS = 16  # Records re-read to validate a label cache file.
_CACHE_PREFIX = "ltjax_labels"
_IDS_PREFIX = "ltjax_ids"


def as_bytes(value: Any) -> bytes:
  """A TFDS ``Text`` value (bytes from ArrayRecord, str or 0-d array from mocks) as bytes."""
  if isinstance(value, np.ndarray):
    value = value.item()
  return value.encode("utf-8") if isinstance(value, str) else bytes(value)


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
  except Exception:
    pass
  if prepared_format is None:
    return ValueError(
      f"TFDS dataset {name!r} (split {split!r}) is not prepared in data_dir={root}. "
      f"Nothing is downloaded here: on a machine with internet access run `{build}`, "
      f"then copy the resulting {name.split(':')[0].split('/')[0]}/ directory into {root} "
      f"(or set --config.dataset.data_dir to a directory that has it)."
    )
  fmt = getattr(prepared_format, "value", str(prepared_format))
  if fmt in ("array_record", "parquet"):
    return err
  return ValueError(
    f"TFDS dataset {name!r} is prepared in {root} as {fmt!r}, but random access needs "
    f"ArrayRecord files. Re-prepare it with `{build}` (after moving the old copy away) "
    f"or point data_dir at an ArrayRecord copy. tfds said: {err}"
  )


class TfdsSource(CachedDecodes):
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
    id_key: optional name of a ``Text`` feature identifying each record (``"file_name"``
      of imagenet2012). Its values are read in the same pass as the labels and cached
      the same way (``ltjax_ids-*.npy``), so that split lists can be matched by name.

  Attributes:
    labels: ``(N,)`` int32 labels, read without decoding images and cached (see the module
      docstring).
    ids: ``(N,)`` bytes array (numpy ``S`` dtype) of the ``id_key`` values, or ``None``.
    num_classes: number of classes of the label feature.
    cache_path: the label cache file in use, or ``None`` when labels are held in memory.
    ids_cache_path: the same for ``ids``.

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
    id_key: str | None = None,
  ):
    if image_size is not None and (int(image_size) != image_size or image_size <= 0):
      raise ValueError(f"image_size must be a positive int or None, got {image_size!r}.")
    self.name = name
    self.split = split
    self.data_dir = data_dir
    self.image_key = image_key
    self.label_key = label_key
    self.id_key = id_key or None
    self.image_size = None if image_size is None else int(image_size)
    try:
      self._ds = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except (NotImplementedError, FileNotFoundError, ValueError) as e:  # incl. DatasetNotFound
      err = _open_error(name, split, data_dir, e)
      if err is e:
        raise
      raise err from e
    self._batched_reads = True  # Until a source turns out unable to read a batch.
    self.info = (
      getattr(self._ds, "dataset_info", None) or tfds.builder(name, data_dir=data_dir).info
    )
    self._check_features()
    self.num_classes = int(self.info.features[label_key].num_classes)
    self._image_shape = tuple(self.info.features[image_key].shape)
    self._label_ds = None  # Opened lazily: only a scan, a spot check or read_encoded needs it.
    self.cache_path = self._cache_file(_CACHE_PREFIX, label_key)
    self.ids_cache_path = self._cache_file(_IDS_PREFIX, self.id_key) if self.id_key else None
    self.labels, self.ids = self._load_columns()
    self._id_indices: dict = {}  # normalize -> KeyIndex, see id_index.

  def record_keys(self) -> list[str]:
    """``name/split:id`` of every record (its ``id_key`` value), else ``name/split:#index``."""
    prefix = f"{self.name.split(':')[0]}/{self.split}:"
    if self.ids is not None:
      return [prefix + as_bytes(i).decode("utf-8", "replace") for i in self.ids]
    return [f"{prefix}#{i}" for i in range(len(self))]

  def _check_features(self) -> None:
    features = self.info.features
    keys = [(self.image_key, "image_key"), (self.label_key, "label_key")]
    if self.id_key:
      keys.append((self.id_key, "id_key"))
    for key, what in keys:
      if key not in features:
        raise ValueError(
          f"{what}={key!r} is not a feature of {self.name}; its features are "
          f"{sorted(features.keys())}. Pass the right {what}."
        )
    if not isinstance(features[self.label_key], tfds.features.ClassLabel):
      raise ValueError(
        f"label_key={self.label_key!r} of {self.name} is a "
        f"{type(features[self.label_key]).__name__}, not a ClassLabel, so it has no "
        "num_classes. Pass the ClassLabel feature as label_key."
      )
    if self.id_key and not isinstance(features[self.id_key], tfds.features.Text):
      raise ValueError(
        f"id_key={self.id_key!r} of {self.name} is a {type(features[self.id_key]).__name__}, "
        "not a Text feature. Pass a Text feature that names each record (e.g. file_name)."
      )

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
    if self._batched_reads and hasattr(ds, "__getitems__"):
      try:
        return list(ds.__getitems__(keys))
      except TypeError:
        # A source whose batched read is unusable (tfds.testing.mock_data's is not bound to
        # its instance): read record by record from now on.
        self._batched_reads = False
    return [ds[k] for k in keys]

  def _label_source(self) -> Any:
    """A data source that skips the image decode, or the plain one where that fails (a
    source that cannot skip decoding, such as tfds.testing.mock_data's without TensorFlow)."""
    if self._label_ds is None:
      self._label_ds = self._ds
      if hasattr(self._ds, "data_source"):
        try:
          skipping = tfds.data_source(
            self.name,
            split=self.split,
            data_dir=self.data_dir,
            download=False,
            decoders={self.image_key: tfds.decode.SkipDecoding()},
          )
          if len(skipping):
            self._records(skipping, [0])  # Fails here if the source cannot skip decoding.
          self._label_ds = skipping
        except Exception as e:  # Any failure: read with full decoding instead.
          logging.info("%s: reading labels with full decoding (%s)", self.name, e)
    return self._label_ds

  def read_encoded(self, keys: Sequence[int]) -> list[dict[str, Any]]:
    """Records ``keys`` with the image left encoded, as ``bytes``, in one batched read.

    From a source that cannot skip decoding (``tfds.testing.mock_data``'s, whose fake
    images cannot be encoded without TensorFlow) the image comes decoded, as an array.
    ``keys`` are not range-checked.
    """
    return self._records(self._label_source(), [int(k) for k in keys])

  def _read_columns(self, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
    records = self.read_encoded(keys)
    labels = np.asarray([int(r[self.label_key]) for r in records], dtype=np.int64)
    if not self.id_key:
      return labels, None
    return labels, np.asarray([as_bytes(r[self.id_key]) for r in records], dtype=bytes)

  def _scan_records(self) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads the label (and id) of every record: slow, one pass over the split."""
    n = len(self)
    bar = None
    if n > _PROGRESS_MIN:
      from tqdm.auto import tqdm

      what = "labels" + (f" and {self.id_key}" if self.id_key else "")
      bar = tqdm(total=n, desc=f"{self.name} {self.split}: reading {what}", unit="rec")
    labels = np.empty(n, np.int64)
    id_chunks = []
    try:
      for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        STOP.check()
        labels[start:stop], ids = self._read_columns(list(range(start, stop)))
        if ids is not None:
          id_chunks.append(ids)
        if bar is not None:
          bar.update(stop - start)
    finally:
      if bar is not None:
        bar.close()
    if not self.id_key:
      return labels, None
    ids = np.concatenate(id_chunks) if id_chunks else np.zeros(0, "S1")
    return labels, ids

  def id_index(self, normalize: Callable[[str], str] | None = None) -> KeyIndex:
    """A `KeyIndex` of ``ids`` (each passed through ``normalize`` first, if given), built
    once per ``normalize`` and kept on the instance.

    Raises:
      ValueError: if the source has no ``id_key``.
    """
    if self.ids is None:
      raise ValueError(f"{self!r} has no id_key, so its records cannot be found by id.")
    if normalize not in self._id_indices:
      keys = self.ids
      if normalize is not None:
        keys = np.asarray([normalize(v.decode("utf-8", "replace")).encode() for v in keys], bytes)
      self._id_indices[normalize] = KeyIndex(keys)
    return self._id_indices[normalize]

  # --- label and id caches -------------------------------------------------------------

  def _cache_file(self, prefix: str, key: str) -> str | None:
    """The cache path if the dataset directory is a local directory, else ``None``."""
    directory = os.fspath(getattr(self.info, "data_dir", "") or "")
    if not directory or "://" in directory or not os.path.isdir(directory):
      return None
    version = str(getattr(self.info, "version", "unknown"))
    full = f"{self.info.full_name}|{self.split}|{key}"
    digest = hashlib.sha1(full.encode()).hexdigest()[:8]
    safe = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)).strip("_") or "x"
    fname = (
      f"{prefix}-{safe(self.info.name)}-{safe(version)}-{safe(self.split)}-{safe(key)}-{digest}.npy"
    )
    return os.path.join(directory, fname)

  def _load_columns(self) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (and ids) from the cache files if they are sound, else from one scan."""
    labels = self._read_cache(self.cache_path, "label")
    ids = self._read_cache(self.ids_cache_path, "id") if self.id_key else None
    labels, ids = self._spot_check(labels, ids)
    if labels is not None and (ids is not None or not self.id_key):
      return labels, ids
    directory = os.path.dirname(self.cache_path) if self.cache_path else ""
    logging.info(
      "%s %s: reading the labels%s of its %d records (%s).",
      self.name,
      self.split,
      f" and {self.id_key}" if self.id_key else "",
      len(self),
      f"once: cached in {directory}"
      if directory and os.access(directory, os.W_OK)
      else "kept in memory: no writable dataset directory",
    )
    scanned_labels, scanned_ids = self._scan_records()
    if labels is None:
      labels = check_labels(
        scanned_labels, self.num_classes, what=f"{self.name} {self.split} labels"
      )
      self.cache_path = self._write_cache(self.cache_path, labels)
    if self.id_key and ids is None:
      ids = scanned_ids
      self.ids_cache_path = self._write_cache(self.ids_cache_path, ids)
    return labels, ids

  def _read_cache(self, path: str | None, what: str) -> np.ndarray | None:
    """A cache file's array, or ``None`` if missing, unreadable or of the wrong shape."""
    if not path or not os.path.exists(path):
      return None
    try:
      array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      logging.warning("ignoring unreadable %s cache %s (%s); re-reading.", what, path, e)
      return None
    if what == "label":
      try:
        array = check_labels(array, self.num_classes, what=f"label cache {path}")
      except ValueError as e:
        logging.warning("ignoring bad label cache: %s", e)
        return None
    elif array.ndim != 1 or array.dtype.kind != "S":
      logging.warning("ignoring id cache %s: not a 1-D bytes array; re-reading.", path)
      return None
    if len(array) != len(self):
      logging.warning(
        "%s cache %s has %d entries but the split has %d records; re-reading.",
        what,
        path,
        len(array),
        len(self),
      )
      return None
    return array

  def _spot_check(
    self, labels: np.ndarray | None, ids: np.ndarray | None
  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Re-reads a few records; drops a cached column that disagrees with them (stale)."""
    n = len(self)
    if (labels is None and ids is None) or not n:
      return labels, ids
    keys = sorted({int(k) for k in np.linspace(0, n - 1, min(n, _SPOT_CHECKS))})
    read_labels, read_ids = self._read_columns(keys)
    if labels is not None and not np.array_equal(read_labels, labels[keys]):
      logging.warning(
        "label cache %s disagrees with the records (stale?); re-reading.", self.cache_path
      )
      labels = None
    if ids is not None and not np.array_equal(read_ids, ids[keys]):
      logging.warning(
        "id cache %s disagrees with the records (stale?); re-reading.", self.ids_cache_path
      )
      ids = None
    return labels, ids

  def _write_cache(self, path: str | None, array: np.ndarray) -> str | None:
    """Writes ``array`` to ``path`` atomically; returns the path, or ``None`` (in memory)
    when there is no path, the directory is read-only or the write fails."""
    if not path or not os.access(os.path.dirname(path), os.W_OK):
      return None
    try:
      with files.atomic_write(path, "wb") as f:
        np.save(f, array)
    except OSError as e:
      logging.warning("could not write cache %s (%s); keeping it in memory.", path, e)
      return None
    return path

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
    missing = [k for k in keys if self.cached(k) is None]  # Decoded before: not read.
    records = dict(zip(missing, self._records(self._ds, missing), strict=True))
    for k, r in records.items():
      if int(r[self.label_key]) != self.labels[k]:
        raise ValueError(
          f"decoded labels of {self.name} {self.split!r} disagree with the "
          f"cached labels (cache: {self.cache_path or 'in memory'}). Delete the "
          "ltjax_labels-*.npy files in the dataset directory and retry."
        )
    images = []
    for k in keys:
      image = self.cached(k)
      if image is None:
        image = self._to_image(records[k][self.image_key])
        self.keep(k, image)
      images.append(image)
    labels = self.labels[indices].astype(np.int32)
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


class KeyIndex:
  """Finds keys in a fixed bytes array: one sort, then a binary search per key.

  O((N + M) log N) for M keys among N: seconds for ImageNet's 1.28M training names.

  Args:
    keys: ``(N,)`` bytes array (numpy ``S`` dtype), duplicates allowed.
  """

  def __init__(self, keys: np.ndarray):
    keys = np.asarray(keys, dtype=bytes)
    self._order = np.argsort(keys, kind="stable")
    self._sorted = keys[self._order]

  def find(self, wanted: Sequence[bytes] | np.ndarray) -> np.ndarray:
    """The position of each ``wanted`` key among ``keys``: ``(M,)`` int64, -1 if absent.

    Raises:
      ValueError: if a wanted key occurs more than once among ``keys`` (ambiguous).
    """
    wanted = np.asarray(wanted, dtype=bytes)
    out = np.full(len(wanted), -1, np.int64)
    ordered = self._sorted
    if not len(ordered) or not len(wanted):
      return out
    pos = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
    found = ordered[pos] == wanted
    nxt = np.minimum(pos + 1, len(ordered) - 1)
    twice = found & (nxt != pos) & (ordered[nxt] == wanted)
    if twice.any():
      key = wanted[np.flatnonzero(twice)[0]].decode("utf-8", "replace")
      raise ValueError(
        f"{int(twice.sum())} key(s) occur more than once, e.g. {key!r}, so they cannot be "
        "matched unambiguously."
      )
    out[found] = self._order[pos[found]]
    return out
