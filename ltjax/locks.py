"""Exclusive locks of a directory by one process: a run's work directory, `ltjax prepare`'s
output directory.

The lock is a file created atomically (``O_EXCL``) holding its owner: host, pid, the
process's start time (Linux ``/proc/<pid>/stat``) and the machine's boot id
(``/proc/sys/kernel/random/boot_id``). A lock whose owner is provably gone is taken over
with a warning: same host, and the pid is not running, or runs a process that started at
another time (the pid was reused, e.g. by this very process after a container restart), or
the machine has rebooted since. A lock of a live process, of another host, or an
unreadable one is refused with a message naming the file. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time

log = logging.getLogger(__name__)


def _boot_id() -> str | None:
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      return f.read().strip() or None
  except OSError:
    return None


def process_start(pid: int) -> int | None:
  """When process ``pid`` started, in clock ticks since boot (Linux), or None."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      stat = f.read()
  except OSError:
    return None
  try:  # The command name (field 2) may hold spaces or parentheses: split after its ")".
    return int(stat[stat.rindex(")") + 2 :].split()[19])
  except (ValueError, IndexError):
    return None


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, another user's.
    return True
  return True


def owner_gone(owner: dict) -> str | None:
  """Why the owner of a lock is certainly no longer running (None: it may be)."""
  if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
    return None
  pid = owner["pid"]
  boot = owner.get("boot_id")
  if boot and _boot_id() and boot != _boot_id():
    return "the machine has restarted since"
  if not _pid_alive(pid):
    return f"process {pid} is gone"
  started = owner.get("pid_start")
  now = process_start(pid)
  if started is not None and now is not None and started != now:
    return f"process {pid} is another process now (its pid was reused)"
  if pid == os.getpid() and started is None:
    return f"process {pid} is this process, which did not write it"
  return None


class DirectoryLock:
  """``path`` (a lock file) held by this process while the block runs.

  Args:
    path: the lock file, e.g. ``WORKDIR/ltjax.lock``.
    what: what holds it, for messages ("ltjax run", "ltjax prepare").
    place: what the directory is, for messages ("work directory", "output directory").
    advice: what the user can do while another holds it.
  """

  def __init__(self, path: str, what: str, place: str, advice: str):
    self.path, self.what, self.place, self.advice = path, what, place, advice
    self.token: str | None = None

  def owner(self) -> dict | None:
    """The lock file's content (None: no lock; {}: unreadable)."""
    try:
      with open(self.path) as f:
        owner = json.load(f)
      return owner if isinstance(owner, dict) else {}
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}

  def create(self, token: str) -> bool:
    """Creates the lock file for ``token``; False if it exists."""
    owner = {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "pid_start": process_start(os.getpid()),
      "boot_id": _boot_id(),
      "token": token,
      "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      json.dump(owner, f)
    return True

  def refusal(self, owner: dict) -> ValueError:
    who = (
      f"process {owner.get('pid')} on {owner.get('host')} (since {owner.get('started')})"
      if owner
      else "an unknown process (the lock file is unreadable)"
    )
    return ValueError(
      f"another {self.what} is using this {self.place}: {who} holds {self.path}. {self.advice}; "
      f"if no such process runs any more (a crashed machine), delete {self.path}."
    )

  def acquire(self, token: str) -> None:
    """Takes the lock, taking over one whose owner is gone.

    Raises:
      ValueError: another live process (or an unknown one) holds it.
    """
    os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
    if not self.create(token):
      owner = self.owner()
      why = owner_gone(owner) if owner else None
      if owner is not None and why is None:
        raise self.refusal(owner)
      if owner is not None:
        log.warning(
          "%s lock %s is stale (%s): taking it over.",
          self.what,
          self.path,
          why,
        )
        with contextlib.suppress(FileNotFoundError):
          os.remove(self.path)
      if not self.create(token):  # Another process took it in between.
        raise self.refusal(self.owner() or {})
    self.token = token

  def release(self) -> None:
    """Removes the lock if this holder's token is still in it."""
    if self.token is None:
      return
    owner = self.owner()
    if owner and owner.get("token") == self.token:
      try:
        os.remove(self.path)
      except OSError as e:  # A read-only or full disk must not hide the run's own error.
        log.warning("could not remove the lock %s: %s", self.path, e)
    self.token = None

  def __enter__(self) -> DirectoryLock:
    import uuid

    self.acquire(uuid.uuid4().hex)
    return self

  def __exit__(self, *exc) -> None:
    self.release()
