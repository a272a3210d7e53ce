"""``ltjax prepare``: split lists packed into ArrayRecord shards (the writer).

The format, its crash-safety rules and the reader are ``ltjax.data.sources.packed``'s; this
module writes it. ``prepare_dataset`` packs the lists of a dataset of the dataset table
(``ltjax.data.datasets.DATASETS``), ``pack_split_list`` one list. Every shard, plan and
manifest is written atomically (``ltjax.files``) and flushed to disk before the next
step relies on it, so an interrupted pack resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import time
from typing import Any

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from ltjax import files, locks
from ltjax.data import datasets
from ltjax.data.sources import packed
from ltjax.data.sources.splitlist import read_split_list
from ltjax.stop import STOP

_WRITER_OPTIONS = "group_size:1,uncompressed"
LOCK_NAME = "ltjax-prepare.lock"  # In the output directory while a prepare runs there.
PREPARE_SPLITS = ("train", "val", "test", "open")


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def _plan(sha256: str, num_records: int, records_per_shard: int) -> dict:
  return {
    "list_sha256": sha256,
    "num_records": num_records,
    "records_per_shard": records_per_shard,
    "num_shards": -(-num_records // records_per_shard),
  }


def _write_plan(path: str, plan: dict) -> None:
  files.write_json(path, plan, durable=True, indent=None, separators=(",", ":"))


def _write_shard(path: str, records) -> int:
  """Writes the ``records`` (an iterable of bytes) to ``path`` atomically; returns bytes."""
  with files.atomic_path(path, durable=True) as tmp:
    writer = ArrayRecordWriter(tmp, _WRITER_OPTIONS)
    try:
      for record in records:
        writer.write(record)
    finally:
      writer.close()
  return os.path.getsize(path)


def _check_split_args(split_name: str, records_per_shard) -> int:
  if not re.fullmatch(r"[A-Za-z0-9_\-]+", split_name):
    raise ValueError(f"split_name must be letters, digits, '_' or '-', got {split_name!r}.")
  if (
    isinstance(records_per_shard, bool)
    or not isinstance(records_per_shard, int | np.integer)
    or records_per_shard < 1
  ):
    raise ValueError(f"records_per_shard must be a positive int, got {records_per_shard!r}.")
  return int(records_per_shard)


@dataclasses.dataclass
class _Pack:
  """One split being packed: its list, where it goes, and its progress."""

  list_path: str
  root: str
  out_dir: str
  split: str
  paths: list[str]
  labels: np.ndarray
  lines: np.ndarray
  sha256: str
  bar: Any = None

  @property
  def manifest_file(self) -> str:
    return packed.manifest_path(self.out_dir, self.split)

  @property
  def pending_file(self) -> str:
    return packed.pending_path(self.out_dir, self.split)

  def remove_temps(self) -> None:
    for tmp in glob.glob(os.path.join(glob.escape(self.out_dir), f"{self.split}.*.tmp")):
      _remove(tmp)

  def up_to_date(self) -> dict | None:
    """The manifest if it is current and its shards whole; else drops it first, so a crash
    from here on never leaves a manifest over shards being rewritten (a manifest of the
    same list with damaged or missing shards becomes the plan to resume)."""
    manifest = packed.read_json_or_none(self.manifest_file)
    if manifest is None:
      return None
    same_list = packed.well_formed(manifest) and manifest["list_sha256"] == self.sha256
    if same_list and packed.shard_problem(self.out_dir, manifest["shards"]) is None:
      self.remove_temps()
      _remove(self.pending_file)
      if "paths" not in manifest:  # Packed before manifests named their records.
        manifest["paths"] = list(self.paths)
        _write_plan(self.manifest_file, manifest)
      return manifest
    if same_list:
      old = _plan(self.sha256, manifest["num_records"], manifest["records_per_shard"])
      _write_plan(self.pending_file, old)
    _remove(self.manifest_file)
    return None

  def start(self, records_per_shard: int) -> dict:
    """The plan; a pending plan of an interrupted run is continued only if it is this one."""
    plan = _plan(self.sha256, len(self.paths), records_per_shard)
    if packed.read_json_or_none(self.pending_file) != plan:
      pattern = os.path.join(glob.escape(self.out_dir), f"{self.split}.array_record-*")
      for old_file in glob.glob(pattern):
        _remove(old_file)
      _write_plan(self.pending_file, plan)
    self.remove_temps()
    return plan

  def records(self, begin: int, end: int):
    for i in range(begin, end):
      STOP.check()  # Complete shards are kept: re-running resumes.
      full = os.path.join(self.root, self.paths[i])
      where = f"listed in {self.list_path}, line {int(self.lines[i])}"
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
      yield packed.HEADER.pack(int(self.lines[i]), int(self.labels[i])) + data
      if self.bar is not None:
        self.bar.update(1)

  def write_shards(self, plan: dict) -> tuple[list[dict], int, int]:
    """Keeps the complete shards, writes the others: (shards, reused, bytes written)."""
    n, per_shard, num_shards = len(self.paths), plan["records_per_shard"], plan["num_shards"]
    shards, reused, written = [], 0, 0
    for s in range(num_shards):
      begin, end = s * per_shard, min(n, (s + 1) * per_shard)
      name = packed.shard_name(self.split, s, num_shards)
      path = os.path.join(self.out_dir, name)
      if packed.num_records_of(path) == end - begin:
        reused += 1
        if self.bar is not None:
          self.bar.update(end - begin)
      else:
        written += _write_shard(path, self.records(begin, end))
      shards.append({"name": name, "num_records": end - begin, "bytes": os.path.getsize(path)})
    files.fsync_dir(self.out_dir)
    return shards, reused, written

  def finish(self, shards: list[dict], num_classes: int | None, records_per_shard: int) -> None:
    """The manifest, last; then the plan is no longer needed."""
    manifest = {
      "format": packed.FORMAT,
      "split": self.split,
      "list_file": os.path.abspath(self.list_path),
      "list_sha256": self.sha256,
      "root": os.path.abspath(self.root),
      "num_classes": num_classes,
      "num_records": len(self.paths),
      "records_per_shard": records_per_shard,
      "shards": shards,
      "labels": self.labels.tolist(),
      "lines": self.lines.tolist(),
      # The listed paths: a packed split has the identity of its list (ltjax.data.identity).
      "paths": list(self.paths),
    }
    _write_plan(self.manifest_file, manifest)
    _remove(self.pending_file)


def pack_split_list(
  list_path: str | os.PathLike,
  root: str | os.PathLike,
  out_dir: str | os.PathLike,
  split_name: str,
  num_classes: int | None,
  allow_open: bool = False,
  records_per_shard: int = packed.DEFAULT_RECORDS_PER_SHARD,
  progress: bool = False,
) -> dict[str, Any]:
  """Packs the images of a split list into ArrayRecord shards (the format of
  ``ltjax.data.sources.packed``).

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
  records_per_shard = _check_split_args(split_name, records_per_shard)
  paths, labels, lines = read_split_list(list_path, num_classes, allow_open)  # Clear list errors.
  os.makedirs(out_dir, exist_ok=True)
  pack = _Pack(
    list_path, root, out_dir, split_name, paths, labels, lines, packed.file_sha256(list_path)
  )
  summary = {"split": split_name, "num_records": len(paths), "manifest": pack.manifest_file}
  manifest = pack.up_to_date()
  if manifest is not None:
    n = len(manifest["shards"])
    return summary | {
      "status": "up to date",
      "num_shards": n,
      "reused_shards": n,
      "bytes": 0,
      "seconds": time.perf_counter() - start_time,
    }
  plan = pack.start(records_per_shard)
  if progress:
    from tqdm.auto import tqdm

    pack.bar = tqdm(total=len(paths), desc=f"packing {split_name}", unit="img", mininterval=1)
  try:
    shards, reused, written = pack.write_shards(plan)
  finally:
    if pack.bar is not None:
      pack.bar.close()
  pack.finish(shards, num_classes, records_per_shard)
  return summary | {
    "status": "resumed" if reused else "packed",
    "num_shards": plan["num_shards"],
    "reused_shards": reused,
    "bytes": written,
    "seconds": time.perf_counter() - start_time,
  }


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


def _jobs(entry, splits, lists_dir: str, require_open: bool, note) -> dict[str, str]:
  """Packed split name -> list file, each list packed once."""
  jobs: dict[str, str] = {}
  for split in splits:
    if split not in entry.lists:
      note(f"{split}: {entry.name} has no {split} list, skipped")
      continue
    name = entry.packed_split(split)
    if name != split:
      note(f"{split}: same list as {name} ({entry.lists[split]}), read from the {name} shards")
    path = entry.list_path(name, lists_dir)
    if not os.path.isfile(path):
      if split == "open" and not require_open:
        note(f"open: no {path}, skipped (it is only needed for open-set evaluation)")
        continue
      raise ValueError(f"split list {path} does not exist; check --lists_dir (or --root).")
    jobs[name] = path
  return jobs


def prepare_dataset(
  dataset: str,
  root: str,
  out_dir: str,
  *,
  lists_dir: str | None = None,
  splits: tuple[str, ...] = PREPARE_SPLITS,
  require_open: bool = True,
  records_per_shard: int = packed.DEFAULT_RECORDS_PER_SHARD,
  progress: bool = False,
  note: Any = print,
) -> list[dict[str, Any]]:
  """``ltjax prepare``: packs the reference split lists of ``dataset`` for training.

  Each list is packed once (iNaturalist's test list is its val list, read from the val
  shards), with `pack_split_list`; re-running resumes or skips what is done.

  Args:
    dataset: a split-list dataset of the table (imagenet_lt, places_lt, inat2018).
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
  packable = [d.name for d in datasets.DATASETS.values() if d.lists]
  if dataset not in packable:
    raise ValueError(f"unknown --dataset {dataset!r}; valid: {', '.join(packable)}.")
  entry = datasets.get(dataset)
  if records_per_shard < 1:
    raise ValueError(f"--records_per_shard must be >= 1, got {records_per_shard}.")
  if not os.path.isdir(root):
    raise ValueError(f"--root {root!r} is not a directory.")
  unknown = [s for s in splits if s not in PREPARE_SPLITS]
  if unknown or not splits:
    raise ValueError(
      f"bad --splits {','.join(splits)!r}; a comma-separated subset of {PREPARE_SPLITS}."
    )
  jobs = _jobs(entry, splits, lists_dir or root, require_open, note)
  os.makedirs(out_dir, exist_ok=True)
  lock = locks.DirectoryLock(
    os.path.join(out_dir, LOCK_NAME),
    "ltjax prepare",
    "output directory",
    "Wait for it to finish (running the same command again afterwards resumes or skips what "
    "it packed), or use another --out",
  )
  with lock:
    return [
      _pack_job(name, path, root, out_dir, entry, records_per_shard, progress, note)
      for name, path in jobs.items()
    ]


def _pack_job(name, path, root, out_dir, entry, records_per_shard, progress, note) -> dict:
  try:
    summary = pack_split_list(
      path,
      root,
      out_dir,
      name,
      entry.num_classes,
      allow_open=name == "open",
      records_per_shard=records_per_shard,
      progress=progress,
    )
  except OSError as e:  # E.g. an unwritable out_dir.
    raise ValueError(f"prepare {name}: {e}") from e
  note(format_summary(summary))
  return summary


FOLDER_CLASSES = "classes.json"  # Written by prepare_config for a "folder" dataset.


def prepare_config(
  cfg,
  out_dir: str,
  *,
  records_per_shard: int = packed.DEFAULT_RECORDS_PER_SHARD,
  progress: bool = False,
  note: Any = print,
) -> list[dict[str, Any]]:
  """``ltjax prepare --config=FILE``: packs the splits of the config's dataset (``cfg`` is
  ``config.dataset``): a reference dataset's lists, your own lists (dataset "lists"), or an
  image-folder tree (dataset "folder": its lists are written to ``out_dir`` first, with the
  class names, ``classes.json``). Train from them with
  ``--config.dataset.packed_dir=out_dir``.
  """
  entry = datasets.get(cfg.name)
  if entry.lists:
    return prepare_dataset(
      cfg.name,
      cfg.root,
      out_dir,
      lists_dir=cfg.lists_dir or None,
      splits=PREPARE_SPLITS if cfg.open_set else ("train", "val", "test"),
      records_per_shard=records_per_shard,
      progress=progress,
      note=note,
    )
  if cfg.name not in ("lists", "folder"):
    raise ValueError(
      f"dataset {cfg.name!r} has no image files to pack (ltjax prepare packs list and "
      "image-folder datasets)."
    )
  os.makedirs(out_dir, exist_ok=True)
  lock = locks.DirectoryLock(
    os.path.join(out_dir, LOCK_NAME), "ltjax prepare", "output directory", "Wait for it"
  )
  with lock:
    jobs = _folder_lists(cfg, out_dir) if cfg.name == "folder" else datasets.user_list_files(cfg)
    return [
      _pack_user_list(name, path, cfg.root, out_dir, records_per_shard, progress, note)
      for name, path in jobs.items()
    ]


def _folder_lists(cfg, out_dir: str) -> dict[str, str]:
  """The image-folder tree as list files in ``out_dir`` (and its class names)."""
  from ltjax.data.sources.splitlist import folder_classes, scan_image_folder

  if not cfg.root:
    raise ValueError("dataset 'folder': set --config.dataset.root to the image-folder tree.")
  classes = folder_classes(os.path.join(cfg.root, "train"))
  files.write_json(os.path.join(out_dir, FOLDER_CLASSES), classes)
  jobs = {}
  for split in ("train", "val", "test", *(["open"] if cfg.open_set else [])):
    directory = os.path.join(cfg.root, split)
    if split == "val" and not os.path.isdir(directory):
      continue
    paths, labels = scan_image_folder(directory, None if split == "open" else classes)
    jobs[split] = os.path.join(out_dir, f"{split}.list.txt")
    lines = "".join(
      f"{os.path.join(split, p)} {int(k)}\n" for p, k in zip(paths, labels, strict=True)
    )
    files.write_text(jobs[split], lines)
  return jobs


def _pack_user_list(name, path, root, out_dir, records_per_shard, progress, note) -> dict:
  summary = pack_split_list(
    path,
    root,
    out_dir,
    name,
    None,
    allow_open=name == "open",
    records_per_shard=records_per_shard,
    progress=progress,
  )
  note(format_summary(summary))
  return summary
