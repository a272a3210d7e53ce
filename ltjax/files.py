"""Files ltjax writes and reads: atomic writes, and JSON reads whose errors name the file.

Every file ltjax writes (results, reports, configs, checksums, caches, manifests, shards)
goes through ``atomic_path`` / ``atomic_write``: the content is written to a temporary file
next to the target and renamed onto it only when complete, so a crash, a full disk or a
signal never leaves a half-written file under the real name. ``durable=True`` also flushes
the file and its directory to disk before returning (for files a later run trusts, such as
the packed shards' manifests). Standard library only: any layer may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import IO, Any


def fsync_dir(path: str) -> None:
  """Flushes a directory's entries to disk (best effort: not every file system can)."""
  try:
    fd = os.open(path or ".", os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def fsync_file(path: str) -> None:
  """Flushes a written file's content to disk."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str, *, durable: bool = False) -> Iterator[str]:
  """Yields a temporary path next to ``path`` to write; renames it onto ``path`` when the
  block ends without an exception, removes it otherwise.

  Args:
    path: the file to (re)place.
    durable: also flush the file and its directory to disk.
  """
  tmp = f"{path}.{os.getpid()}.tmp"
  try:
    yield tmp
    if durable:
      fsync_file(tmp)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  if durable:
    fsync_dir(os.path.dirname(path))


@contextlib.contextmanager
def atomic_write(
  path: str, mode: str = "w", *, durable: bool = False, **open_kwargs
) -> Iterator[IO]:
  """``open(path, mode)`` for writing, atomically (see ``atomic_path``)."""
  if "b" not in mode:
    open_kwargs.setdefault("encoding", "utf-8")
  with atomic_path(path, durable=durable) as tmp, open(tmp, mode, **open_kwargs) as f:
    yield f


def write_json(path: str, obj: Any, *, durable: bool = False, **dump_kwargs) -> None:
  """``json.dump(obj)`` to ``path`` atomically (default: indented, sorted keys)."""
  dump_kwargs = {"indent": 2, "sort_keys": True, **dump_kwargs}
  with atomic_write(path, durable=durable) as f:
    json.dump(obj, f, **dump_kwargs)


def write_text(path: str, text: str) -> None:
  """``text`` to ``path`` atomically."""
  with atomic_write(path) as f:
    f.write(text)


def read_json(path: str, fix: str = "") -> Any:
  """The JSON content of ``path``.

  Args:
    path: the file.
    fix: what the user can do about an unreadable file, appended to the error.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not valid JSON (truncated, garbage), naming it.
  """
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except UnicodeDecodeError as e:
    raise ValueError(f"{path} is not a JSON file ({e}){'; ' + fix if fix else ''}.") from e
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}){'; ' + fix if fix else ''}.") from e
