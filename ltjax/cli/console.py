"""What a command writes to the terminal besides its results: one ``ltjax: error:`` line
instead of a traceback, a line for an environment fault or an interrupt, and log lines that
share the terminal with progress bars."""

from __future__ import annotations

import errno
import logging as std_logging
import os
import sys

from absl import logging


def fail(message: str, code: int = 1) -> None:
  """Ends the command with ``ltjax: error: message`` on stderr and exit status ``code``."""
  print(f"ltjax: error: {message}", file=sys.stderr)
  sys.stderr.flush()
  sys.exit(code)


def os_error(e: OSError) -> str:
  """One line for an environment fault (read-only, full disk, permissions)."""
  hints = {
    errno.ENOSPC: "free some space, then run the same command again (saved checkpoints are intact)",
    errno.EROFS: "the file system is read-only: choose a writable directory",
    errno.EACCES: "permission denied: choose a directory you can write",
    errno.EDQUOT: "disk quota exceeded: free some space, then run the same command again",
  }
  where = f" ({e.filename})" if e.filename else ""
  hint = hints.get(e.errno)
  return f"{e.strerror or e}{where}" + (f": {hint}." if hint else ".")


def exit_interrupted(e: KeyboardInterrupt) -> None:
  """Says what the stop saved, then exits 130 at once (no interpreter teardown while XLA or
  input threads still run; everything to save is saved by then)."""
  message = getattr(e, "message", None) or (
    "interrupted: nothing was saved by this stop (checkpoints saved before it are intact)."
  )
  print(f"ltjax: {message}", file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(130)


class ConsoleHandler(std_logging.Handler):
  """Log lines on stderr as ``HH:MM:SS LEVEL message``, written through ``tqdm.write`` so
  that a progress bar on the terminal is cleared and redrawn below the line, never torn."""

  def emit(self, record: std_logging.LogRecord) -> None:
    try:
      import tqdm

      tqdm.tqdm.write(self.format(record), file=sys.stderr)
    except Exception:
      self.handleError(record)


def install_console_logging() -> None:
  """One console format for ltjax and the libraries (absl's own prefix, ``I1205
  19:21:04.856419 140361158372224 loop.py:80]``, is replaced)."""
  handler = ConsoleHandler()
  handler.setFormatter(std_logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
  root = std_logging.getLogger()
  for old in list(root.handlers):
    if old is logging.get_absl_handler() or isinstance(old, ConsoleHandler):
      root.removeHandler(old)
  root.addHandler(handler)
