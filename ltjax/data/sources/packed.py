"""Split lists packed into ArrayRecord shards: the format, and `PackedSource`, its reader.

Reading hundreds of thousands of small JPEG files is slow on network and cloud file
systems; ``ltjax prepare`` (``ltjax.data.prepare``, the writer) copies the images of a split
list (see ``ltjax.data.sources.splitlist``) into a few large ArrayRecord files, and
`PackedSource` reads them back as a ``ltjax.data.sources.Source`` that is interchangeable
with `SplitListSource`: the same labels and, image for image, bit-identical pixels.

Files
-----
For a split named ``S`` (``train``, ``val``, ``test``, ``open``), ``out_dir`` holds::

  S.array_record-00000-of-000NN, -00001-of-000NN, ...   the NN shards
  S.manifest.json    written last: its presence means the split is complete
  S.pending.json     only while packing: the plan of an unfinished pack

Shards hold consecutive runs of ``records_per_shard`` records in list order (the last
one fewer), written with ``group_size:1`` and no compression (JPEG bytes do not
compress) for fast random access.

Record format
-------------
Each record is one listed image, an 8-byte little-endian header and the image file::

  bytes 0..3   uint32  the 1-based line number of the image in the list file
  bytes 4..7   int32   its label (-1 for an open-set image)
  bytes 8..    the image file's bytes, exactly as stored (never re-encoded)

so decoding a record with ``decode_image`` gives the pixels of decoding the file.

Manifest
--------
``S.manifest.json`` is a JSON object: ``format`` (``"ltjax-packed-v1"``), ``split``,
``list_file`` and ``list_sha256`` (the SHA-256 of the list file's bytes), ``root``,
``num_classes``, ``num_records``, ``records_per_shard``, ``shards`` (a list of
``{"name", "num_records", "bytes"}``), and ``labels`` and ``lines`` (per record, in
list order), so the labels are known without reading a record.

Crash safety
------------
* A shard is written to ``<shard name>.tmp``, flushed to disk and renamed to its final
  name only when complete: a shard under its final name is always whole.
* Before the first shard, the plan (list SHA-256, record and shard counts) is written
  to ``S.pending.json``; the manifest is written last, and every JSON file is written to a
  temporary name and renamed atomically.
* Re-running skips a split whose manifest matches the list's SHA-256 (and whose shards
  are all present and complete). An interrupted split (a pending plan, no manifest)
  with the same plan keeps its complete shards (their record counts are checked) and
  writes the rest; a changed list or shard size starts the split over, and so does a
  damaged manifest. Leftover ``.tmp`` files are removed. Only the list is tracked, not
  the image files: delete the manifest to re-pack after replacing images.
* `PackedSource` refuses a split without a manifest, or with a missing shard or one
  whose size differs from the manifest's, asking to re-run ``ltjax prepare``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct

import numpy as np
from array_record.python.array_record_module import ArrayRecordReader

from ltjax import files
from ltjax.data.sources.base import DecodedRecords, check_labels
from ltjax.data.sources.decode import decode_image

FORMAT = "ltjax-packed-v1"
DEFAULT_RECORDS_PER_SHARD = 1024  # ~100 MB shards of ImageNet-size JPEGs.
HEADER = struct.Struct("<Ii")  # (line number, label); the image bytes follow.
_WRITER_OPTIONS = "group_size:1,uncompressed"
_COUNT_OPTIONS = "readahead_buffer_size:0,max_parallelism:0,footer_prefetch_bytes:0"
_RERUN = "re-run 'ltjax prepare' with the same arguments to finish or repair it"


def shard_name(split: str, index: int, num_shards: int) -> str:
  """``<split>.array_record-<index>-of-<num_shards>``, both zero-padded to 5 digits."""
  return f"{split}.array_record-{index:05d}-of-{num_shards:05d}"


def manifest_path(out_dir: str | os.PathLike, split: str) -> str:
  return os.path.join(os.fspath(out_dir), f"{split}.manifest.json")


def pending_path(out_dir: str, split: str) -> str:
  return os.path.join(out_dir, f"{split}.pending.json")


def file_sha256(path: str | os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def num_records_of(path: str) -> int | None:
  """The number of records of an ArrayRecord file; None if missing or unreadable."""
  if not os.path.isfile(path):
    return None
  try:
    reader = ArrayRecordReader(path, _COUNT_OPTIONS)
  except Exception:  # the reader raises various errors on a bad file
    return None
  try:
    return int(reader.num_records()) if reader.ok() else None
  finally:
    try:
      reader.close()
    except Exception:  # closing a damaged file reports its error again
      pass


def well_formed(manifest: dict | None) -> bool:
  """Whether ``manifest`` is a complete manifest of this format (not whether it is current)."""
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    return False
  try:
    n = manifest["num_records"]
    shards = manifest["shards"]
    return (
      isinstance(manifest["list_sha256"], str)
      and isinstance(manifest["records_per_shard"], int)
      and all(
        isinstance(s["name"], str) and isinstance(s["num_records"], int) and s["bytes"] >= 0
        for s in shards
      )
      and sum(s["num_records"] for s in shards) == n == len(manifest["labels"])
      and len(manifest["lines"]) == n
    )
  except (KeyError, TypeError):
    return False


def shard_problem(out_dir: str, shards: list[dict], count: bool = True) -> str | None:
  """Why the listed shards are not all present and complete; None if they are.

  Checks each shard's size in bytes and, if ``count``, opens it to count its records.
  """
  for shard in shards:
    path = os.path.join(out_dir, shard["name"])
    if not os.path.isfile(path):
      return f"shard {path} is missing"
    size = os.path.getsize(path)
    if size != shard["bytes"]:
      return f"shard {path} is short or damaged ({size:,} bytes, expected {shard['bytes']:,})"
    found = num_records_of(path) if count else shard["num_records"]
    if found != shard["num_records"]:
      found = "an unreadable file" if found is None else f"{found} record(s)"
      return f"shard {path} is short or damaged ({found}, expected {shard['num_records']})"
  return None


# ---------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class _ShardInstruction:
  """A whole shard, in the ``FileInstruction`` form ArrayRecordDataSource accepts without
  opening the file to count its records."""

  filename: str
  skip: int
  take: int
  examples_in_shard: int


def read_json_or_none(path: str) -> dict | None:
  """The JSON object in ``path``, or None if it is missing or unreadable (a manifest or plan
  that is not whole counts as absent: the split is re-packed)."""
  try:
    obj = files.read_json(path)
  except (OSError, ValueError):
    return None
  return obj if isinstance(obj, dict) else None


def read_manifest(directory: str | os.PathLike, split: str) -> dict:
  """The manifest of a packed split, after checking its shards exist with their sizes.

  Raises:
    ValueError: if the manifest is missing or invalid, or a shard is missing or short,
      saying to re-run ``ltjax prepare``.
  """
  directory = os.fspath(directory)
  path = manifest_path(directory, split)
  manifest = read_json_or_none(path)
  if manifest is None:
    if os.path.exists(pending_path(directory, split)):
      state = "was not finished (an interrupted 'ltjax prepare')"
    elif os.path.exists(path):
      state = f"has an unreadable manifest {path}"
    else:
      state = f"has no manifest {path}"
    raise ValueError(f"packed split {split!r} in {directory} {state}; {_RERUN}.")
  if not well_formed(manifest) or manifest.get("split") != split:
    raise ValueError(
      f"{path} is not a valid ltjax packed-split manifest for split {split!r} "
      f"(format {manifest.get('format')!r}); {_RERUN}."
    )
  problem = shard_problem(directory, manifest["shards"], count=False)  # Sizes: no reads.
  if problem:
    raise ValueError(f"packed split {split!r} in {directory}: {problem}; {_RERUN}.")
  return manifest


class PackedSource(DecodedRecords):
  """A split packed by `pack_split_list`; a ``Source`` interchangeable with SplitListSource.

  Args:
    directory: the ``out_dir`` of `pack_split_list` (``ltjax prepare --out``).
    split: the packed split name ("train", "val", "test", "open").
    num_classes: K; the manifest's, or the largest label + 1, if not given.
    allow_open: accept label -1 (open-set images).
    min_size: passed to `decode_image`, as in `SplitListSource`.
    skip_corrupt: replace an undecodable image by the next decodable record of the same
      class (cyclically), logging the first 10 and counting them in ``num_skipped``;
      if False such an image raises ValueError.

  Attributes:
    labels: (N,) int32 labels, from the manifest (no record is read).
    lines: (N,) 1-based line number of each record in ``list_file``.
    list_file: the split list the split was packed from.
  """

  def __init__(
    self,
    directory: str | os.PathLike,
    split: str,
    num_classes: int | None = None,
    *,
    allow_open: bool = False,
    min_size: int | None = None,
    skip_corrupt: bool = False,
  ):
    import grain

    self.directory = os.fspath(directory)
    self.split = split
    manifest = read_manifest(self.directory, split)
    self.list_file = manifest["list_file"]
    self.lines = np.asarray(manifest["lines"], np.int64)
    self._paths = manifest.get("paths")
    self._list_sha256 = manifest["list_sha256"]
    labels = np.asarray(manifest["labels"], np.int64)
    if num_classes is None:
      num_classes = manifest.get("num_classes")
    if num_classes is None:
      if labels.max() < 0:
        raise ValueError(
          f"packed split {split!r} holds only open-set records (label -1); pass num_classes."
        )
      num_classes = int(labels.max()) + 1
    self.num_classes = int(num_classes)
    self.labels = check_labels(
      labels, self.num_classes, allow_open=allow_open, what=f"labels of packed split {split!r}"
    )
    self._name = f"packed split {split!r}"
    self._init_records(min_size, skip_corrupt)
    self.shards = [os.path.join(self.directory, s["name"]) for s in manifest["shards"]]
    counts = [int(s["num_records"]) for s in manifest["shards"]]
    self._starts = np.cumsum([0, *counts])
    self._records = grain.sources.ArrayRecordDataSource(
      [_ShardInstruction(p, 0, n, n) for p, n in zip(self.shards, counts, strict=True)]
    )

  def record_keys(self) -> list[str]:
    """The packed list's paths (as `SplitListSource`'s: a split has one identity packed or
    not); shards packed before manifests held them: the list's digest and line."""
    if self._paths is not None:
      return [os.path.normpath(p) for p in self._paths]
    return [f"{self._list_sha256[:16]}:line{int(n)}" for n in self.lines]

  def _where(self, index: int) -> str:
    shard = int(np.searchsorted(self._starts, index, side="right")) - 1
    return (
      f"record {index - self._starts[shard]} of {self.shards[shard]}, from {self.list_file}, "
      f"line {int(self.lines[index])}"
    )

  def _decode(self, index: int, record: bytes) -> np.ndarray:
    """The image of record ``index``; ValueError naming the shard, the list and the line."""
    if len(record) < HEADER.size:
      raise ValueError(f"truncated record ({self._where(index)}); {_RERUN}.")
    line, label = HEADER.unpack_from(record)
    if line != self.lines[index] or label != self.labels[index]:
      raise ValueError(
        f"the record ({self._where(index)}) holds line {line}, label {label}, not what the "
        f"manifest says (label {int(self.labels[index])}): the shards do not match the "
        f"manifest; {_RERUN}."
      )
    try:
      return decode_image(memoryview(record)[HEADER.size :], channels=3, min_size=self.min_size)
    except ValueError as e:
      raise ValueError(
        f"corrupt image ({self._where(index)}): {e}. Re-pack from a good copy of the image, "
        "or set --config.data.skip_corrupt=True to replace it by another image of the same "
        "class."
      ) from e

  def _fetch(self, index: int) -> bytes:
    """The bytes of record ``index``; ValueError naming it if the shard is damaged there
    (ArrayRecord checks each chunk's hash: flipped bytes raise RuntimeError)."""
    try:
      return self._records[index]
    except Exception as e:  # The reader's own errors name no record: name it.
      raise ValueError(
        f"corrupt record ({self._where(index)}): {e}. {_RERUN}, or set "
        "--config.data.skip_corrupt=True to replace it by another image of the same class."
      ) from e

  def _read(self, index: int) -> np.ndarray:
    return self._decode(index, self._fetch(index))

  def _describe(self, index: int) -> str:
    return self._where(index)

  def get_batch(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Reads and decodes the records at ``indices`` (one batched read; record by record
    when a shard is damaged, so each bad record is named and, with ``skip_corrupt``,
    replaced).

    Returns:
      (images, labels): a list of B (H_i, W_i, 3) uint8 arrays, and (B,) int32 labels.
    """
    indices = self._check_indices(indices)
    keys = [int(i) for i in indices if self.cached(int(i)) is None]  # Decoded: not read.
    try:
      records = dict(zip(keys, self._records.__getitems__(keys), strict=True)) if keys else {}
    except Exception:  # A damaged chunk somewhere in the batch: read record by record.
      records = {}

    def read(i: int) -> np.ndarray:
      record = records.get(i)
      return self._decode(i, record if record is not None else self._fetch(i))

    images = [self._load(i, lambda i=i: read(i)) for i in (int(i) for i in indices)]
    return images, self.labels[indices]
