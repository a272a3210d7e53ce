"""A run's work directory: one run at a time (a lock), and the config it was started with.

* ``RunLock``: ``ltjax.lock``, created atomically by the run's process 0 and checked by all
  its processes, so a second ``ltjax train`` on the same directory stops with a clear
  message instead of interleaving checkpoints. A lock whose owner is provably gone (its
  pid not running, or reused by another process, or a reboot since; ``ltjax.locks``) is
  taken over; one from another host names the file to delete.
* ``config.json``: the config of the run, written when it starts. Resuming with another
  config is an error listing the differing fields (``check_resume``), except for the fields
  in ``MAY_CHANGE_ON_RESUME`` (how the run is logged, checkpointed and parallelised, and
  where its data and files are), or when the user allows it explicitly.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from ltjax import config as config_lib
from ltjax import files, locks
from ltjax.models import text_features
from ltjax.train import checkpoint as ckpt_lib

log = logging.getLogger(__name__)

LOCK_NAME = "ltjax.lock"
CONFIG_NAME = "config.json"

MAY_CHANGE_ON_RESUME = config_lib.MAY_CHANGE_ON_RESUME


class RunLock:
  """The exclusive lock of a work directory by one (possibly multi-process) run: process 0
  holds ``ltjax.lock`` (``ltjax.locks.DirectoryLock``: a lock whose owner is provably gone
  is taken over), and every process checks it holds the run's token."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_NAME)
    self._lock = locks.DirectoryLock(
      self.path, "ltjax run", "work directory", "Wait for it to finish, or use another --workdir"
    )
    self.token: str | None = None

  def acquire(self) -> None:
    """Takes the lock (process 0) and checks every process of the run holds the same one.

    Raises:
      ValueError: another live run holds it.
    """
    token = uuid.uuid4().hex
    if jax.process_index() == 0:
      self._lock.acquire(token)
    if jax.process_count() > 1:  # The lock belongs to the run: every process checks it.
      ours = multihost_utils.broadcast_one_to_all(np.frombuffer(token.encode(), np.uint8))
      token = bytes(np.asarray(ours, np.uint8)).decode()
      owner = self._lock.owner() or {}
      if owner.get("token") != token:
        raise self._lock.refusal(owner)
    self.token = token

  def release(self) -> None:
    """Removes the lock if this run holds it (process 0)."""
    if jax.process_index() == 0:
      self._lock.release()
    self.token = None

  def __enter__(self) -> RunLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


# ------------------------------------------------------------------------- the config


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  """``{"optim.lr": 0.2, ...}`` of a nested dict, values normalised as JSON has them."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flat(value, f"{name}."))
    else:
      out[name] = json.loads(json.dumps(value))  # Tuples -> lists, as read back.
  return out


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes ``workdir/config.json`` (process 0, atomically)."""
  if jax.process_index() != 0:
    return
  files.write_json(os.path.join(workdir, CONFIG_NAME), config.to_dict())


def store_inputs(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Copies the files a run's results depend on into ``workdir`` at its fresh start (the
  text features), atomically, on process 0."""
  src = config.model.get("text_features")
  if src and jax.process_index() == 0:
    with open(src, "rb") as f:
      data = f.read()
    with files.atomic_write(os.path.join(workdir, text_features.RUN_COPY), "wb") as f:
      f.write(data)


def read_config(workdir: str) -> dict | None:
  """The config a run in ``workdir`` was started with, or None if it has none."""
  path = os.path.join(workdir, CONFIG_NAME)
  if not os.path.exists(path):
    return None
  saved = files.read_json(path, "restore or delete it")
  if not isinstance(saved, dict):
    raise ValueError(f"{path} does not hold a config; restore or delete it.")
  return saved


def config_changes(
  saved: dict,
  config: ml_collections.ConfigDict,
  defaults: ml_collections.ConfigDict,
  may_change: tuple[str, ...] = MAY_CHANGE_ON_RESUME,
) -> tuple[list[str], list[str]]:
  """The fields of ``config`` that differ from the ``saved`` one, as readable lines:
  (fields that matter, fields in ``may_change``). A field the saved config lacks (added
  to ltjax since) counts as unchanged when ``config`` has its default."""
  old, new, default = _flat(saved), _flat(config.to_dict()), _flat(defaults.to_dict())
  changed, allowed = [], []
  for key in sorted(new):
    before = old.get(key, default.get(key))
    if key not in old and key not in default:
      continue  # Neither saved nor a default: a field of a later ltjax, nothing to compare.
    if before != new[key]:
      line = f"{key}: {before!r} -> {new[key]!r}"
      (allowed if key in may_change else changed).append(line)
  return changed, allowed


def check_evaluation(workdir: str, config: ml_collections.ConfigDict) -> None:
  """``ltjax evaluate``: ``config`` must be the run's own (config.json, or for a run from
  before it, its latest checkpoint's), but for evaluation fields
  (``config.EVALUATION_FIELDS``) and ``MAY_CHANGE_ON_RESUME``; otherwise a ValueError lists
  the differing fields: a run evaluated under another seed or dataset cut would be tested
  on images it was trained on, or with other shot groups, without a word.

  Raises:
    ValueError: the fields that differ, or no config to compare with.
  """
  saved = read_config(workdir)
  if saved is None:
    saved = (ckpt_lib.latest_meta(os.path.join(workdir, "checkpoints")) or {}).get("config")
  if saved is None:
    raise ValueError(
      f"{workdir} has no config.json and no checkpoint with one: is it a work directory?"
    )
  may_change = MAY_CHANGE_ON_RESUME + config_lib.EVALUATION_FIELDS
  changed, allowed = config_changes(saved, config, config_lib.base_config(), may_change)
  if allowed:
    log.info("evaluating with %s", "; ".join(allowed))
  if changed:
    raise ValueError(
      f"{workdir} was trained with another config; evaluating it under this one would not "
      "test the model as it was trained:\n  "
      + "\n  ".join(changed)
      + "\nDrop --config to evaluate with the run's own config (config.json), or override "
      f"only evaluation fields ({', '.join(config_lib.EVALUATION_FIELDS)}) and data "
      "locations (dataset.root, ...)."
    )


def check_resume(
  workdir: str, config: ml_collections.ConfigDict, allow_changes: bool, checkpoints: str
) -> None:
  """Before a run resumes from its checkpoints: raises ValueError if ``config`` differs from
  the one the run was started with in a field that matters, unless ``allow_changes``; logs
  the allowed differences; (re)writes ``config.json`` where it is missing or changes were
  allowed.

  The run's config is its ``config.json``, or, for a run from before ltjax wrote one, the
  config its latest checkpoint's metadata holds (in ``checkpoints``).
  """
  saved = read_config(workdir)
  missing = saved is None
  if missing:  # A run from before config.json: its checkpoints hold the config.
    saved = (ckpt_lib.latest_meta(checkpoints) or {}).get("config")
  if saved is not None:
    _compare(workdir, saved, config, allow_changes)
  if allow_changes or missing:
    write_config(workdir, config)


def _compare(workdir: str, saved: dict, config: ml_collections.ConfigDict, allow: bool) -> None:
  changed, allowed = config_changes(saved, config, config_lib.base_config())
  if allowed:
    log.info("resuming with changed %s", "; ".join(allowed))
  if not changed:
    return
  if allow:
    log.warning("resuming with another config (allowed): %s", "; ".join(changed))
    return
  raise ValueError(
    f"{workdir} holds a run of another config; resuming would train it under the new "
    "settings:\n  "
    + "\n  ".join(changed)
    + "\nRun the same config again to resume, use another --workdir for a new run, or pass "
    "--allow_config_change to resume with the new settings anyway. These may change on "
    f"resume without it: {', '.join(MAY_CHANGE_ON_RESUME)}."
  )
