"""Split lists packed into ArrayRecord shards (``ltjax prepare``), and `PackedSource`.

Reading hundreds of thousands of small JPEG files is slow on network and cloud file
systems; `pack_split_list` copies the images of a split list (see
``ltjax.data.sources.splitlist``) into a few large ArrayRecord files, and `PackedSource` reads
them back as a ``ltjax.data.sources.Source`` that is interchangeable with
`SplitListSource`: the same labels and, image for image, bit-identical pixels.

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
import glob
import hashlib
import json
import os
import re
import struct
import time
from typing import Any

import numpy as np
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

from ltjax.data.pp.image_ops import decode_image
from ltjax.data.sources.base import DecodedRecords, check_labels
from ltjax.data.sources.splitlist import DATASET_LISTS, read_split_list, split_list_path

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


def _pending_path(out_dir: str, split: str) -> str:
  return os.path.join(out_dir, f"{split}.pending.json")


def packed_split_name(dataset: str, split: str) -> str:
  """The packed split that holds ``split`` of ``dataset``: the first split using its list.

  iNaturalist 2018 is evaluated on its val list, so its "test" is packed (once) as "val".
  """
  spec = DATASET_LISTS[dataset]
  for name in ("train", "val", "test", "open"):
    if spec.get(name) == spec[split]:
      return name
  return split


def file_sha256(path: str | os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


# ---------------------------------------------------------------------- file helpers


def _fsync_file(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _fsync_dir(path: str) -> None:
  try:
    _fsync_file(path)
  except OSError:  # Not supported on every platform / file system; best effort.
    pass


def _write_json(path: str, obj: dict) -> None:
  """Writes ``obj`` to ``path.tmp``, flushes it to disk and renames it to ``path``."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, separators=(",", ":"))
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  _fsync_dir(os.path.dirname(path) or ".")


def _read_json(path: str) -> dict | None:
  """The JSON object in ``path``, or None if it is missing or unreadable."""
  try:
    with open(path) as f:
      obj = json.load(f)
  except (OSError, ValueError):
    return None
  return obj if isinstance(obj, dict) else None


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def _num_records(path: str) -> int | None:
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


def _well_formed(manifest: dict | None) -> bool:
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


def _shard_problem(out_dir: str, shards: list[dict], count: bool = True) -> str | None:
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
    found = _num_records(path) if count else shard["num_records"]
    if found != shard["num_records"]:
      found = "an unreadable file" if found is None else f"{found} record(s)"
      return f"shard {path} is short or damaged ({found}, expected {shard['num_records']})"
  return None


# --------------------------------------------------------------------------- packing


def _plan(sha256: str, num_records: int, records_per_shard: int) -> dict:
  return {
    "list_sha256": sha256,
    "num_records": num_records,
    "records_per_shard": records_per_shard,
    "num_shards": -(-num_records // records_per_shard),
  }


def _write_shard(path: str, records) -> int:
  """Writes the ``records`` (an iterable of bytes) to ``path`` atomically; returns bytes."""
  tmp = path + ".tmp"
  writer = ArrayRecordWriter(tmp, _WRITER_OPTIONS)
  try:
    for record in records:
      writer.write(record)
  except BaseException:
    writer.close()
    _remove(tmp)
    raise
  writer.close()
  _fsync_file(tmp)
  os.replace(tmp, path)
  return os.path.getsize(path)


def pack_split_list(
  list_path: str | os.PathLike,
  root: str | os.PathLike,
  out_dir: str | os.PathLike,
  split_name: str,
  num_classes: int | None,
  allow_open: bool = False,
  records_per_shard: int = DEFAULT_RECORDS_PER_SHARD,
  progress: bool = False,
) -> dict[str, Any]:
  """Packs the images of a split list into ArrayRecord shards (see the module docstring).

  Resumable: a split whose manifest matches the list is skipped; an interrupted one
  keeps its complete shards.

  Args:
    list_path: the split list (``relative/path label`` lines).
    root: the directory the listed paths are relative to.
    out_dir: where the shards and the manifest go (created if needed).
    split_name: the file name prefix, e.g. "train".
    num_classes: if given, every label must be < num_classes.
    allow_open: accept label -1 (open-set lists).
    records_per_shard: images per shard.
    progress: show a tqdm progress bar.

  Returns:
    A summary: ``split``, ``status`` ("packed", "resumed" or "up to date"),
    ``num_records``, ``num_shards``, ``reused_shards``, ``bytes`` (written now),
    ``seconds`` and ``manifest`` (its path).

  Raises:
    ValueError: on a bad list (see ``parse_split_file``), or a missing or unreadable
      image (naming it, the list file and the line). Shards completed before the error
      are kept, so re-running after the fix resumes.
  """
  start_time = time.perf_counter()
  list_path, root, out_dir = os.fspath(list_path), os.fspath(root), os.fspath(out_dir)
  if not re.fullmatch(r"[A-Za-z0-9_\-]+", split_name):
    raise ValueError(f"split_name must be letters, digits, '_' or '-', got {split_name!r}.")
  if isinstance(records_per_shard, bool) or not isinstance(records_per_shard, int | np.integer):
    raise ValueError(f"records_per_shard must be a positive int, got {records_per_shard!r}.")
  if records_per_shard < 1:
    raise ValueError(f"records_per_shard must be a positive int, got {records_per_shard!r}.")
  records_per_shard = int(records_per_shard)
  paths, labels, lines = read_split_list(list_path, num_classes, allow_open)  # Clear list errors.
  sha256 = file_sha256(list_path)
  os.makedirs(out_dir, exist_ok=True)
  manifest_file = manifest_path(out_dir, split_name)
  pending_file = _pending_path(out_dir, split_name)
  summary = {"split": split_name, "num_records": len(paths), "manifest": manifest_file}

  def remove_temps() -> None:
    for tmp in glob.glob(os.path.join(glob.escape(out_dir), f"{split_name}.*.tmp")):
      _remove(tmp)

  # 1. Up to date? Otherwise, drop the manifest first, so a crash from here on never
  #    leaves a manifest over shards that are being rewritten.
  manifest = _read_json(manifest_file)
  if manifest is not None:
    same_list = _well_formed(manifest) and manifest["list_sha256"] == sha256
    if same_list and _shard_problem(out_dir, manifest["shards"]) is None:
      remove_temps()
      _remove(pending_file)
      summary.update(
        status="up to date",
        num_shards=len(manifest["shards"]),
        reused_shards=len(manifest["shards"]),
        bytes=0,
        seconds=time.perf_counter() - start_time,
      )
      return summary
    if same_list:  # Damaged or missing shards: resume, keeping the good ones.
      old = _plan(sha256, manifest["num_records"], manifest["records_per_shard"])
      _write_json(pending_file, old)
    _remove(manifest_file)

  # 2. A pending plan from an interrupted run is only continued if it is this plan.
  plan = _plan(sha256, len(paths), records_per_shard)
  if _read_json(pending_file) != plan:
    for old_file in glob.glob(os.path.join(glob.escape(out_dir), f"{split_name}.array_record-*")):
      _remove(old_file)
    _write_json(pending_file, plan)
  remove_temps()

  # 3. The shards: keep the complete ones, write the others.
  num_shards = plan["num_shards"]
  shards, reused, written = [], 0, 0
  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(paths), desc=f"packing {split_name}", unit="img", mininterval=1)

  def records(begin: int, end: int):
    for i in range(begin, end):
      full = os.path.join(root, paths[i])
      where = f"listed in {list_path}, line {int(lines[i])}"
      try:
        with open(full, "rb") as f:
          data = f.read()
      except FileNotFoundError:
        raise ValueError(
          f"image not found: {full} ({where}). Check the image root; shards completed so far "
          "are kept, so re-running after the fix resumes."
        ) from None
      except OSError as e:
        raise ValueError(f"cannot read image {full} ({where}): {e}") from e
      yield HEADER.pack(int(lines[i]), int(labels[i])) + data
      if bar is not None:
        bar.update(1)

  try:
    for s in range(num_shards):
      begin, end = s * records_per_shard, min(len(paths), (s + 1) * records_per_shard)
      name = shard_name(split_name, s, num_shards)
      path = os.path.join(out_dir, name)
      if _num_records(path) == end - begin:
        reused += 1
        if bar is not None:
          bar.update(end - begin)
      else:
        written += _write_shard(path, records(begin, end))
      shards.append({"name": name, "num_records": end - begin, "bytes": os.path.getsize(path)})
  finally:
    if bar is not None:
      bar.close()
  _fsync_dir(out_dir)

  # 4. The manifest, last; then the plan is no longer needed.
  _write_json(
    manifest_file,
    {
      "format": FORMAT,
      "split": split_name,
      "list_file": os.path.abspath(list_path),
      "list_sha256": sha256,
      "root": os.path.abspath(root),
      "num_classes": num_classes,
      "num_records": len(paths),
      "records_per_shard": records_per_shard,
      "shards": shards,
      "labels": labels.tolist(),
      "lines": lines.tolist(),
    },
  )
  _remove(pending_file)
  summary.update(
    status="resumed" if reused else "packed",
    num_shards=num_shards,
    reused_shards=reused,
    bytes=written,
    seconds=time.perf_counter() - start_time,
  )
  return summary


def format_summary(summary: dict[str, Any]) -> str:
  """One line describing a `pack_split_list` result."""
  n, shards, reused = summary["num_records"], summary["num_shards"], summary["reused_shards"]
  images = f"{n:,} image{'s' * (n != 1)}"
  into = f"{shards} shard{'s' * (shards != 1)}"
  where = f"-> {summary['manifest']}"
  if summary["status"] == "up to date":
    return f"{summary['split']}: up to date, {images} in {into} {where}"
  written = f"({summary['bytes'] / 1e6:,.1f} MB) in {summary['seconds']:.1f} s"
  if reused:
    done = f"resumed, kept {reused} of {into} and wrote {shards - reused}"
    return f"{summary['split']}: {done}: {images} {written} {where}"
  return f"{summary['split']}: packed {images} into {into} {written} {where}"


PREPARE_SPLITS = ("train", "val", "test", "open")


def prepare_dataset(
  dataset: str,
  root: str,
  out_dir: str,
  *,
  lists_dir: str | None = None,
  splits: tuple[str, ...] = PREPARE_SPLITS,
  require_open: bool = True,
  records_per_shard: int = DEFAULT_RECORDS_PER_SHARD,
  progress: bool = False,
  note: Any = print,
) -> list[dict[str, Any]]:
  """``ltjax prepare``: packs the reference split lists of ``dataset`` for training.

  Each list is packed once (iNaturalist's test list is its val list, read from the val
  shards), with `pack_split_list`; re-running resumes or skips what is done.

  Args:
    dataset: a key of ``DATASET_LISTS`` (imagenet_lt, places_lt, inat2018).
    root: the image directory the lists refer to.
    out_dir: where the shards go.
    lists_dir: the directory of the split lists (default ``root``).
    splits: the splits to pack, a subset of ``PREPARE_SPLITS``.
    require_open: a missing open-set list is an error; False skips it with a note (only
      open-set evaluation needs it).
    records_per_shard: images per shard.
    progress: tqdm progress bars.
    note: called with one line for each split skipped or shared.

  Returns:
    The `pack_split_list` summary of every packed split, in order.

  Raises:
    ValueError: an unknown dataset or split, a missing root or list, or a packing error.
  """
  if dataset not in DATASET_LISTS:
    raise ValueError(f"unknown --dataset {dataset!r}; valid: {', '.join(DATASET_LISTS)}.")
  if records_per_shard < 1:
    raise ValueError(f"--records_per_shard must be >= 1, got {records_per_shard}.")
  if not os.path.isdir(root):
    raise ValueError(f"--root {root!r} is not a directory.")
  unknown = [s for s in splits if s not in PREPARE_SPLITS]
  if unknown or not splits:
    raise ValueError(
      f"bad --splits {','.join(splits)!r}; a comma-separated subset of {PREPARE_SPLITS}."
    )
  spec = DATASET_LISTS[dataset]
  lists_dir = lists_dir or root
  jobs: dict[str, str] = {}  # Packed split name -> list file, each list packed once.
  for split in splits:
    if split not in spec:
      note(f"{split}: {dataset} has no {split} list, skipped")
      continue
    name = packed_split_name(dataset, split)
    if name != split:
      note(f"{split}: same list as {name} ({spec[split]}), read from the {name} shards")
    path = split_list_path(dataset, name, lists_dir)
    if not os.path.isfile(path):
      if split == "open" and not require_open:
        note(f"open: no {path}, skipped (it is only needed for open-set evaluation)")
        continue
      raise ValueError(f"split list {path} does not exist; check --lists_dir (or --root).")
    jobs[name] = path
  summaries = []
  for name, path in jobs.items():
    try:
      summaries.append(
        pack_split_list(
          path,
          root,
          out_dir,
          name,
          spec["num_classes"],
          allow_open=name == "open",
          records_per_shard=records_per_shard,
          progress=progress,
        )
      )
    except OSError as e:  # E.g. an unwritable out_dir.
      raise ValueError(f"prepare {name}: {e}") from e
    note(format_summary(summaries[-1]))
  return summaries


# ---------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class _ShardInstruction:
  """A whole shard, in the ``FileInstruction`` form ArrayRecordDataSource accepts without
  opening the file to count its records."""

  filename: str
  skip: int
  take: int
  examples_in_shard: int


def read_manifest(directory: str | os.PathLike, split: str) -> dict:
  """The manifest of a packed split, after checking its shards exist with their sizes.

  Raises:
    ValueError: if the manifest is missing or invalid, or a shard is missing or short,
      saying to re-run ``ltjax prepare``.
  """
  directory = os.fspath(directory)
  path = manifest_path(directory, split)
  manifest = _read_json(path)
  if manifest is None:
    if os.path.exists(_pending_path(directory, split)):
      state = "was not finished (an interrupted 'ltjax prepare')"
    elif os.path.exists(path):
      state = f"has an unreadable manifest {path}"
    else:
      state = f"has no manifest {path}"
    raise ValueError(f"packed split {split!r} in {directory} {state}; {_RERUN}.")
  if not _well_formed(manifest) or manifest.get("split") != split:
    raise ValueError(
      f"{path} is not a valid ltjax packed-split manifest for split {split!r} "
      f"(format {manifest.get('format')!r}); {_RERUN}."
    )
  problem = _shard_problem(directory, manifest["shards"], count=False)  # Sizes: no reads.
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

  def _read(self, index: int) -> np.ndarray:
    return self._decode(index, self._records[index])

  def _describe(self, index: int) -> str:
    return self._where(index)

  def get_batch(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Reads and decodes the records at ``indices``.

    Returns:
      (images, labels): a list of B (H_i, W_i, 3) uint8 arrays, and (B,) int32 labels.
    """
    indices = self._check_indices(indices)
    keys = [int(i) for i in indices]
    records = self._records.__getitems__(keys) if keys else []  # One batched read.
    images = [
      self._load(i, lambda i=i, r=r: self._decode(i, r)) for i, r in zip(keys, records, strict=True)
    ]
    return images, self.labels[indices]
