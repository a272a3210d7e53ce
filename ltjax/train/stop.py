"""Stopping a run on SIGINT/SIGTERM (Ctrl-C, a scheduler's preemption) without losing work.

One mechanism for all of ltjax: ``STOP``, the process's ``StopRequests``, installed by the
command line as its first instruction (``ltjax.cli.main``) and by ``ltjax.train.loop.train``
for library users; ``Interrupted`` is the exception that ends a stopped command, carrying one
true line about what was saved. JAX is imported only when several processes must agree.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
  """A stop by SIGINT/SIGTERM, saying truthfully what was saved.

  Attributes:
    message: one line for the user: when it stopped and what is on disk.
  """

  def __init__(self, message: str):
    super().__init__(message)
    self.message = message


class StopRequests:
  """SIGINT/SIGTERM (Ctrl-C, a scheduler's preemption): the one signal mechanism of ltjax.

  Outside training steps a signal stops at once (``Interrupted``): nothing is being
  written then, so there is nothing to lose (the message says whether a training loop
  has already saved its checkpoints). While the training loop runs
  (``deferred()``), the train step donates the state: an exception raised in the middle
  of a step would leave the loop holding deleted arrays and nothing to save. There the
  first signal only sets ``signum``; a single process stops after the current step, saves
  a checkpoint and raises ``Interrupted``. A second signal raises at once (the latest
  periodic checkpoint is kept).

  With several processes, saving is collective and every step runs collectives, so one
  process cannot stop alone: ``agreed`` gathers every process's flag, and the loop calls
  it at logging steps (``log_every_steps``), where it syncs with the device anyway. A
  signal that reaches any process stops all of them at the same step.

  The command line installs the handlers first thing (``install``); library users get
  them for the duration of ``train``. Handlers can only be installed from the main thread
  (Python's rule); elsewhere signals keep their default behaviour.
  """

  def __init__(self):
    self.signum: int | None = None
    self.deferring = False
    self.trained = False  # A training loop of this process has ended (its saves are done).
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
  def deferred(self):
    """Signals set ``signum`` instead of raising, until the block ends."""
    installed_here = self.install()
    self.signum, self.deferring = None, True
    try:
      yield self
    finally:
      self.deferring, self.trained = False, True
      if installed_here:
        self.uninstall()

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
    if not self.deferring:
      if self.trained:
        raise Interrupted(
          f"signal {signum} after training: its checkpoints are saved; what ran after it "
          "(evaluation, results) did not finish."
        )
      raise Interrupted(f"signal {signum} before training started: nothing was saved.")
    if self.signum is not None:
      raise KeyboardInterrupt(f"signal {signum} (second)")
    self.signum = signum
    if _process_count() > 1:
      log.warning(
        "signal %d: all processes stop together at the next logging step and save a "
        "checkpoint of it (again to stop at once, without saving).",
        signum,
      )
    else:
      log.warning(
        "signal %d: stopping after the current step, then saving a checkpoint of it "
        "(again to stop at once, without saving).",
        signum,
      )


def _process_count() -> int:
  """Processes of this run (1 before JAX is imported: no multi-process run then)."""
  jax = sys.modules.get("jax")
  return jax.process_count() if jax is not None else 1


STOP = StopRequests()
