"""Stopping a run on SIGINT/SIGTERM (Ctrl-C, a scheduler's preemption) without losing work.

One mechanism for all of ltjax: ``STOP``, the process's ``StopRequests``, installed by the
command line as its first instruction (``ltjax.cli.main``, about 0.1 s after the process
starts) and by ``ltjax.train.loop.train`` for library users. The handler never raises: an
exception raised from a signal handler lands wherever the interpreter happens to be (inside
a garbage-collector callback it is printed and swallowed, and the run goes on). It only
records the signal; the code stops at its next *safe point*:

* while training, after the current step (several processes agree at logging steps), having
  saved a checkpoint of it (``ltjax.train.loop``);
* elsewhere at ``STOP.check()``, which ltjax calls between evaluation batches, between the
  records of long scans (``verify``, ``prepare``, TFDS label scans) and between a command's
  phases: it raises ``Interrupted``, whose one line says what is on disk.

A second signal does not wait for a safe point: it writes its line (the newest complete
checkpoint, if a run is training) and exits at once with status 130. Checkpoints are
written to a temporary name and renamed when complete, so exiting then loses only the save
in flight. JAX is imported only when several processes must agree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

EXIT_STATUS = 130


class Interrupted(KeyboardInterrupt):
  """A stop by SIGINT/SIGTERM, saying truthfully what was saved.

  Attributes:
    message: one line for the user: when it stopped and what is on disk.
  """

  def __init__(self, message: str):
    super().__init__(message)
    self.message = message


class StopRequests:
  """SIGINT/SIGTERM: the one signal mechanism of ltjax (see the module docstring).

  Attributes:
    signum: the first signal received (None: none).
    deferring: a training loop runs (``deferred``): it, not ``check``, honours the signal.
    trained: a training loop of this process has ended (its checkpoints are saved).
    checkpoints: the checkpoint directory of the run training now, for the second signal's
      message.
  """

  def __init__(self):
    self.signum: int | None = None
    self.count = 0
    self.deferring = False
    self.trained = False
    self.checkpoints: str | None = None
    self._previous: dict = {}

  def install(self) -> bool:
    """Installs the handlers (main thread only); whether they were installed now."""
    if self._previous or threading.current_thread() is not threading.main_thread():
      return False
    for sig in (signal.SIGINT, signal.SIGTERM):
      self._previous[sig] = signal.getsignal(sig)
      signal.signal(sig, self._handle)
    return True

  def uninstall(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  @contextlib.contextmanager
  def deferred(self, checkpoints: str | None = None):
    """A training loop: signals are its to honour (at its next step) until the block ends.
    A signal that arrived before is honoured first (``check``)."""
    self.check()
    installed_here = self.install()
    self.deferring, self.checkpoints = True, checkpoints
    try:
      yield self
    finally:
      self.deferring, self.trained, self.checkpoints = False, True, None
      self.signum, self.count = None, 0  # The loop has honoured it (or ended first).
      if installed_here:
        self.uninstall()

  def check(self) -> None:
    """A safe point outside training: raises ``Interrupted`` if a signal has arrived (and
    forgets it: a library caller that catches the stop may go on)."""
    if self.signum is None or self.deferring or _process_count() > 1:
      return  # Several processes: only the training loop, where they agree, stops them.
    signum, self.signum, self.count = self.signum, None, 0
    if self.trained:
      raise Interrupted(
        f"signal {signum} after training: its checkpoints are saved; what ran after it "
        "(evaluation, results) did not finish."
      )
    raise Interrupted(
      f"signal {signum} before training started: nothing was saved by this command "
      "(checkpoints saved before are intact)."
    )

  def agreed(self) -> bool:
    """Whether any process has a stop request (collective when there are several)."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
      return self.signum is not None
    flags = multihost_utils.process_allgather(np.int32(self.signum is not None))
    return bool(np.max(flags))

  def _handle(self, signum, frame) -> None:
    del frame
    self.count += 1
    if self.count > 1:
      _say(f"ltjax: stopped at once by a second signal ({signum}): {self._on_disk()}")
      os._exit(EXIT_STATUS)
    self.signum = signum
    if not self.deferring:
      _say(f"ltjax: signal {signum}: stopping at the next safe point (again to stop at once).")
    elif _process_count() > 1:
      _say(
        f"ltjax: signal {signum}: all processes stop together at the next logging step and "
        "save a checkpoint of it (again to stop at once, without saving)."
      )
    else:
      _say(
        f"ltjax: signal {signum}: stopping after the current step, then saving a checkpoint "
        "of it (again to stop at once, without saving)."
      )

  def _on_disk(self) -> str:
    if self.checkpoints is None:
      return "nothing more was saved (checkpoints saved before are intact)."
    steps = _complete_steps(self.checkpoints)
    if not steps:
      return "no checkpoint had been saved."
    return (
      f"the latest complete checkpoint, step {steps[-1]} in {self.checkpoints}, is intact: run "
      "the same command again to resume from it."
    )


def _complete_steps(directory: str) -> list[int]:
  """The finished checkpoint steps of ``directory`` (orbax renames a step's temporary
  directory to its number when the save is complete)."""
  try:
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())
  except OSError:
    return []


def _say(line: str) -> None:
  """One line to stderr from a signal handler: a raw write, no locks taken."""
  with contextlib.suppress(OSError):
    os.write(sys.stderr.fileno(), (line + "\n").encode())


def _process_count() -> int:
  """Processes of this run (1 before JAX is imported: no multi-process run then)."""
  jax = sys.modules.get("jax")
  return jax.process_count() if jax is not None else 1


STOP = StopRequests()
