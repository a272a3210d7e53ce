"""Checkpoints of a parameter-efficient run hold what trains, and a reference to the rest.

A LIFT run (``model.peft``, ``ltjax.models.peft``) trains an adapter of a few hundred
thousand parameters beside an 86-million-parameter ViT that never changes: saving the ViT
at every checkpoint would make each step a copy of the weight file. When the frozen
parameters are exactly what ``model.pretrained`` holds (the run's backbone comes from that
file, not from ``init_from``), a checkpoint keeps only the other parameters, and its
metadata the reference (``frozen_weights``: the frozen patterns, the file's path, size and
SHA-256). Restoring reads the file again and refuses one whose contents differ, naming the
digest it needs: a run is never resumed or evaluated on other weights than it trained with.

Runs without ``model.pretrained`` (random initialisation: the tests, the demo) and stages
whose backbone comes from an earlier run keep whole checkpoints, as before.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping

from flax import traverse_util

#: (path, size, mtime) -> SHA-256: a file is hashed once per process.
_DIGESTS: dict[tuple[str, int, float], str] = {}


def file_digest(path: str) -> str:
  """The SHA-256 of the file at ``path`` (hex), cached by path, size and mtime."""
  stat = os.stat(path)
  key = (os.path.abspath(path), stat.st_size, stat.st_mtime)
  if key not in _DIGESTS:
    h = hashlib.sha256()
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 22), b""):
        h.update(block)
    _DIGESTS[key] = h.hexdigest()
  return _DIGESTS[key]


def reference(patterns: tuple[str, ...], pretrained: str) -> dict | None:
  """The ``frozen_weights`` record of a run whose parameters matching ``patterns`` (the
  fine-tuning method's, ``Backbone.frozen_patterns``) stay as ``pretrained`` holds them, or
  None when the checkpoints must hold everything (nothing frozen by the method, or no
  file to read the frozen weights from)."""
  if not patterns or not pretrained:
    return None
  return {
    "patterns": list(patterns),
    "pretrained": os.path.abspath(pretrained),
    "size": os.path.getsize(pretrained),
    "sha256": file_digest(pretrained),
  }


def _flat(params: Mapping) -> dict[str, object]:
  return traverse_util.flatten_dict(dict(params), sep="/")


def _frozen(path: str, patterns) -> bool:
  return any(re.search(p, path) for p in patterns)


def slim(params: Mapping, record: Mapping) -> dict:
  """``params`` without the leaves ``record`` (a ``reference``) keeps in its file."""
  kept = {k: v for k, v in _flat(params).items() if not _frozen(k, record["patterns"])}
  return traverse_util.unflatten_dict(kept, sep="/")


def complete(stored: Mapping, full: Mapping, record: Mapping) -> dict:
  """The parameters of a slim checkpoint (``stored``) with its frozen leaves taken from
  ``full`` (a model whose backbone was read from the referenced file)."""
  frozen = {k: v for k, v in _flat(full).items() if _frozen(k, record["patterns"])}
  return traverse_util.unflatten_dict(frozen | _flat(stored), sep="/")


def check_file(record: Mapping, path: str, where: str) -> None:
  """Raises ValueError unless ``path`` holds the weights ``record`` references (same
  SHA-256), naming the file wanted and the flag to point at it."""
  want = record["sha256"]
  if not path or not os.path.isfile(path):
    raise ValueError(
      f"{where} holds only the parameters its fine-tuning method trains; the frozen rest is "
      f"read from {record['pretrained']} (sha256 {want[:16]}...), and {path or 'no file'} "
      "does not exist: put the file back or pass its new place with "
      "--config.model.pretrained=PATH."
    )
  have = file_digest(path)
  if have != want:
    raise ValueError(
      f"{where} holds only the parameters its fine-tuning method trains; the frozen rest "
      f"must come from the file it trained with ({record['pretrained']}, sha256 "
      f"{want[:16]}...), but {path} is another file (sha256 {have[:16]}...): restore that "
      "file or point --config.model.pretrained at a copy of it."
    )
