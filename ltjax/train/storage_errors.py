"""Saves that fail for lack of space or permission, told in one line.

Orbax and TensorStore wrap the operating system's error in their own exceptions (and print
tracebacks from their writer threads); a full disk must still read as "no space left on
device", with the step that was lost and what is kept. Shared by the checkpoints and the
metrics writer, which meet a full disk alike.

A save that fails on close (the last, asynchronous one) must not hide the error that
stopped the run, as a ``close`` in a ``finally`` does: ``closing`` reports it beside that
error instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os

log = logging.getLogger(__name__)

_REASONS = {
  errno.ENOSPC: "no space left on device",
  errno.EDQUOT: "disk quota exceeded",
  errno.EROFS: "read-only file system",
  errno.EACCES: "permission denied",
}


def storage_reason(e: BaseException | None) -> str | None:
  """Why a write failed, if for lack of space or permission ("no space left on device",
  ...), whatever layer raised it (orbax and TensorStore wrap the OS error in ValueError,
  RuntimeError, ...); None otherwise."""
  for cause in _causes(e):
    if isinstance(cause, OSError) and cause.errno in _REASONS:
      return _REASONS[cause.errno]
    text = str(cause)
    why = next((r for code, r in _REASONS.items() if os.strerror(code) in text), None)
    if why:
      return why
  return None


def write_error(e: BaseException, directory: str, step: int) -> ValueError:
  """One line for a failed save: the step, the reason, what is kept."""
  why = storage_reason(e)
  if why is None:
    first = str(e).splitlines()[0] if str(e) else ""
    why = f"{type(e).__name__}: {first}"
  return ValueError(
    f"could not save checkpoint step {step} in {directory}: {why}. The checkpoints saved "
    "before it are intact; free space (or choose a writable --workdir) and run the same "
    "command again to resume from the latest one."
  )


def _log_close_failure(e: BaseException) -> None:
  first = str(e).splitlines()[0] if str(e) else repr(e)
  log.error("closing the checkpoints failed too (beside the error raised): %s", first)


def close_after_error(closer) -> None:
  """``closer.close()`` while another error is on its way out: a failure is logged, not
  raised over that error."""
  try:
    closer.close()
  except Exception as e:  # noqa: BLE001 - The error that stopped the run is the one raised.
    _log_close_failure(e)


@contextlib.contextmanager
def closing(*closers):
  """Closes each of ``closers`` (None skipped) when the block ends. When an error ends the
  block, it is the error raised, and a close that fails too is logged beside it
  (``close_after_error``). Otherwise every closer runs, and the first failure is raised."""
  present = [c for c in closers if c is not None]
  try:
    yield
  except BaseException:
    for closer in present:
      close_after_error(closer)
    raise
  first = None
  for closer in present:
    try:
      closer.close()
    except Exception as e:  # noqa: BLE001 - Raised below, once the others are closed.
      if first is None:
        first = e
      else:
        _log_close_failure(e)
  if first is not None:
    raise first


def _causes(e: BaseException | None):
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__
