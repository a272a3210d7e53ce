"""A run's work directory: one run at a time (a lock), and the config it was started with.

* ``RunLock``: ``ltjax.lock``, created atomically by the run's process 0 and checked by all
  its processes, so a second ``ltjax train`` on the same directory stops with a clear
  message instead of interleaving checkpoints. A lock left by a dead process on this host
  is taken over; one from another host names the file to delete.
* ``config.json``: the config of the run, written when it starts. Resuming with another
  config is an error listing the differing fields (``check_resume``), except for the fields
  in ``MAY_CHANGE_ON_RESUME`` (how the run is logged, checkpointed and parallelised, and
  where its data and files are), or when the user allows it explicitly.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from ltjax import config as config_lib
from ltjax import files
from ltjax.train import checkpoint as ckpt_lib

log = logging.getLogger(__name__)

LOCK_NAME = "ltjax.lock"
CONFIG_NAME = "config.json"

#: Fields that may differ when a run resumes: they change how it is logged, checkpointed,
#: parallelised or read, not what it computes.
MAY_CHANGE_ON_RESUME = (
  "log_every_steps",
  "checkpoint_every_steps",
  "keep_checkpoints",
  "eval_every_epochs",
  "num_devices",
  "init_from",
  "data.num_threads",
  "data.prefetch",
  "eval.batch_size",
  "dataset.root",
  "dataset.lists_dir",
  "dataset.data_dir",
  "dataset.packed_dir",
  "model.pretrained",
  "model.pretrained_allow_pickle",
)


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, another user's.
    return True
  return True


class RunLock:
  """The exclusive lock of a work directory by one (possibly multi-process) run."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_NAME)
    self.token: str | None = None

  def _create(self, token: str) -> bool:
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": token}
    owner["started"] = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      json.dump(owner, f)
    return True

  def _owner(self) -> dict | None:
    try:
      with open(self.path) as f:
        owner = json.load(f)
      return owner if isinstance(owner, dict) else {}
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}  # Unreadable: reported as held by an unknown owner.

  def _refuse(self, owner: dict) -> ValueError:
    who = (
      f"process {owner.get('pid')} on {owner.get('host')} (since {owner.get('started')})"
      if owner
      else "an unknown process (the lock file is unreadable)"
    )
    return ValueError(
      f"another ltjax run is using this work directory: {who} holds {self.path}. Wait for "
      "it to finish, or use another --workdir; if no such process runs any more (a "
      f"crashed machine), delete {self.path}."
    )

  def acquire(self) -> None:
    """Takes the lock (process 0) and checks every process of the run holds the same one.

    Raises:
      ValueError: another live run holds it.
    """
    token = uuid.uuid4().hex
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(self.path), exist_ok=True)
      if not self._create(token):
        owner = self._owner()
        stale = (
          owner is not None
          and owner.get("host") == socket.gethostname()
          and isinstance(owner.get("pid"), int)
          and not _pid_alive(owner["pid"])
        )
        if not stale:
          raise self._refuse(owner or {})
        log.warning(
          "work directory lock %s was left by process %d, which is gone: taking it over.",
          self.path,
          owner["pid"],
        )
        os.remove(self.path)
        if not self._create(token):  # Another run took it in between.
          raise self._refuse(self._owner() or {})
    if jax.process_count() > 1:  # The lock belongs to the run: every process checks it.
      ours = multihost_utils.broadcast_one_to_all(np.frombuffer(token.encode(), np.uint8))
      token = bytes(np.asarray(ours, np.uint8)).decode()
      owner = self._owner() or {}
      if owner.get("token") != token:
        raise self._refuse(owner)
    self.token = token

  def release(self) -> None:
    """Removes the lock if this run holds it (process 0)."""
    if self.token is None or jax.process_index() != 0:
      return
    owner = self._owner()
    if owner and owner.get("token") == self.token:
      try:
        os.remove(self.path)
      except OSError as e:  # A read-only or full disk must not hide the run's own error.
        log.warning("could not remove the work directory lock %s: %s", self.path, e)
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
  saved: dict, config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict
) -> tuple[list[str], list[str]]:
  """The fields of ``config`` that differ from the ``saved`` one, as readable lines:
  (fields that matter, fields in ``MAY_CHANGE_ON_RESUME``). A field the saved config lacks
  (added to ltjax since) counts as unchanged when ``config`` has its default."""
  old, new, default = _flat(saved), _flat(config.to_dict()), _flat(defaults.to_dict())
  changed, allowed = [], []
  for key in sorted(new):
    before = old.get(key, default.get(key))
    if key not in old and key not in default:
      continue  # Neither saved nor a default: a field of a later ltjax, nothing to compare.
    if before != new[key]:
      line = f"{key}: {before!r} -> {new[key]!r}"
      (allowed if key in MAY_CHANGE_ON_RESUME else changed).append(line)
  return changed, allowed


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
