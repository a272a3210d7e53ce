"""Orbax checkpoints of the train state, the input-pipeline state and run metadata.

A checkpoint step directory holds three items:
  state: the TrainState (restored into an abstract, sharded target: restoring without
    one turns optax states into lists);
  data: the grain iterator state as JSON. Our stream is a pure function of the step,
    so one JSON serves every process count (grain's own handler writes one file per
    process, which would tie a checkpoint to the number of hosts);
  meta: JSON metadata (config, stage, class counts).

Integrity (``integrity``): once orbax has finished writing a step, its files' checksums are
recorded next to it. Restoring checks them, then the arrays' shapes and that every float is
finite; a step that fails any check (a truncated or flipped file, garbage metadata, a
missing item) is reported and the newest intact step is used instead. A checkpoint without
a checksum file (written before ltjax had them) is checked for everything else.

Beside this module, which saves, rotates and restores: ``health`` (which steps rotation
keeps and a resumed run starts from), ``storage_errors`` (a failed save in one line) and
``init_from`` (loading an earlier run's model into a new stage).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from ltjax.train import frozen as frozen_lib
from ltjax.train import state as state_lib
from ltjax.train.health import SPIKE_FACTOR, healthy, read_health, write_health
from ltjax.train.integrity import (
  CHECKSUM_PREFIX,
  DamagedCheckpoint,
  check_finite,
  checksum_path,
  verify_checksums,
  write_checksums,
)
from ltjax.train.optim import param_path
from ltjax.train.storage_errors import closing, storage_reason, write_error

log = logging.getLogger(__name__)


class _QuietOrbax(logging.Filter):
  """Drops orbax records that ltjax reports better itself: two warnings that every resume,
  ``init_from`` and read-only restore logs and that read like corruption but are how ltjax
  restores ("Given directory is read only": a read-only manager; "Metadata file does not
  exist": an item restored by path; real problems are checked and reported by
  ``restore``), and the tracebacks of its writer threads when a save fails for lack of
  space or permission, which ``Checkpointer`` turns into one line naming the step."""

  QUIET = ("Given directory is read only", "Metadata file does not exist")

  def filter(self, record: logging.LogRecord) -> bool:
    if str(record.msg).startswith(self.QUIET):
      return False
    from_orbax = f"{os.sep}orbax{os.sep}" in (record.pathname or "") or record.name == "asyncio"
    return not (from_orbax and record.exc_info and storage_reason(record.exc_info[1]))


# absl: orbax's own records; asyncio: "Task exception was never retrieved" of its writers.
for _name in ("absl", "asyncio"):
  logging.getLogger(_name).addFilter(_QuietOrbax())


def _quiet_closed_event_loops() -> None:
  """After a failed save, orbax's writer coroutines report to an event loop it has closed:
  each prints 'RuntimeError: Event loop is closed' through ``sys.unraisablehook``, dozens
  of tracebacks after the one line that says what happened. Drops those, passes the rest."""
  previous = sys.unraisablehook
  if getattr(previous, "ltjax_quiet", False):
    return

  def hook(unraisable) -> None:
    e = unraisable.exc_value
    if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
      return
    previous(unraisable)

  hook.ltjax_quiet = True
  sys.unraisablehook = hook


def manager(directory: str, read_only: bool = False) -> ocp.CheckpointManager:
  """Orbax's manager of ``directory``; it keeps every step (``Checkpointer`` rotates)."""
  if read_only:  # Orbax's own values for a read-only manager (else it warns it set them).
    options = ocp.CheckpointManagerOptions(
      max_to_keep=None, save_interval_steps=0, create=False, read_only=True
    )
  else:
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True)
  return ocp.CheckpointManager(
    os.path.abspath(directory), options=options, item_names=("state", "data", "meta")
  )


class Checkpointer:
  """Saves (state, data state, metadata) under ``directory``, each step followed by its
  checksums once orbax has finished writing it (saves are asynchronous).

  Health: a step's state is judged by the losses of the steps after it, known when the
  next step is saved (its ``meta["train_loss"]``): healthy if within the band of the last
  healthy step's (``healthy``), else the steps from it on are marked unhealthy in
  ``ltjax-health.json``. Rotation keeps the newest ``keep`` steps and the newest healthy
  one (the step a run resumed from counts as healthy), so a run whose loss explodes while
  staying finite never rotates out the last good model; ``set_aside_unhealthy`` moves the
  unhealthy steps out of the way before a run resumes.
  """

  def __init__(
    self,
    directory: str,
    keep: int = 2,
    judge_health: bool = True,
    frozen_weights: dict | None = None,
  ):
    self.directory = os.path.abspath(directory)
    #: ``ltjax.train.frozen.reference``: parameters kept in a weight file are not saved.
    self.frozen_weights = frozen_weights
    self.keep = keep
    self.judge_health = judge_health  # False: chosen by another measure (best validation).
    self._mngr = manager(directory)
    self._pending: list[int] = []  # Saved, checksums not written yet.
    self._closed = False
    health = read_health(self.directory)
    self.trusted: int | None = health.get("trusted")  # Newest healthy step: never rotated.
    self.trusted_loss: float | None = health.get("trusted_loss")
    self.unhealthy: list[int] = list(health.get("unhealthy", []))
    self._unjudged: int | None = None  # The newest step, until the next one judges it.

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def trust(self, step: int, loss: float | None) -> None:
    """Marks ``step`` (the step a run resumes from) healthy, with the losses before it
    (``loss``) as the reference of the next judgement."""
    self.trusted, self.trusted_loss, self._unjudged = step, loss, None
    self.unhealthy = [s for s in self.unhealthy if s < step]
    self._write_health()

  def save(self, step: int, state, data_state: dict, meta: dict) -> None:
    """Saves ``step``; ``meta["train_loss"]`` (the losses since the last log) judges the
    previous step (see the class docstring)."""
    self._finish()
    _quiet_closed_event_loops()
    if self.judge_health:
      self._judge(meta.get("train_loss"), int(meta.get("num_classes") or 2))
    if self.frozen_weights is not None:
      state = state.replace(params=frozen_lib.slim(state.params, self.frozen_weights))
      meta = meta | {"frozen_weights": self.frozen_weights}
    try:
      self._mngr.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data=ocp.args.JsonSave(data_state),
          meta=ocp.args.JsonSave(meta),
        ),
        force=True,
      )
    except Exception as e:  # Any layer's storage error: one line naming the step.
      raise write_error(e, self.directory, step) from e
    self._pending.append(step)
    self._unjudged = step

  def _judge(self, loss: float | None, num_classes: int) -> None:
    """Judges the newest saved step by ``loss``, the losses of the steps after it."""
    step, self._unjudged = self._unjudged, None
    if step is None:
      return
    if healthy(loss, self.trusted_loss, num_classes) and not self.unhealthy:
      self.trusted, self.trusted_loss = step, loss
    else:
      self.unhealthy.append(step)
      log.warning(
        "checkpoint step %d is not healthy: the training loss after it, %s, left the band "
        "of the last healthy checkpoint, step %s (%s x %s + log(%d)); step %s is kept, and "
        "a resumed run continues from it.",
        step,
        f"{loss:.4g}" if loss is not None else "unknown",
        self.trusted,
        f"{SPIKE_FACTOR:g}",
        f"{self.trusted_loss:.4g}" if self.trusted_loss is not None else "its loss",
        num_classes,
        self.trusted,
      )
    self._write_health()

  def _write_health(self) -> None:
    write_health(self.directory, self.trusted, self.trusted_loss, self.unhealthy)

  def set_aside_unhealthy(self) -> None:
    """Before a run resumes: moves the steps from the first unhealthy one on (their states
    descend from an exploding loss) aside, so the run continues from the last healthy one."""
    if not self.unhealthy:
      return
    first = min(self.unhealthy)
    log.warning(
      "checkpoints from step %d on are not healthy (the training loss exploded after them): "
      "resuming from step %s, the last healthy one; the others are moved to %s.damaged/.",
      first,
      self.trusted,
      self.directory,
    )
    self.set_aside_newer_than(first - 1)
    self.unhealthy = []
    self._write_health()

  def _finish(self) -> None:
    """Waits for the last save, writes its checksums, then rotates: the newest ``keep``
    steps and the newest healthy one stay; checksum files of removed steps go too."""
    step = self._pending[-1] if self._pending else None
    try:
      self._mngr.wait_until_finished()
      steps = set(self._mngr.all_steps())
      for s in self._pending:
        if s in steps:
          write_checksums(self.directory, s)
      if self._pending:
        keep = set(sorted(steps)[-self.keep :]) | ({self.trusted} & steps)
        for s in sorted(steps - keep):
          self._mngr.delete(s)
        steps &= keep
      if jax.process_index() == 0:
        for name in os.listdir(self.directory):
          if name.startswith(CHECKSUM_PREFIX) and name.endswith(".json"):
            s = name[len(CHECKSUM_PREFIX) : -len(".json")]
            if s.isdigit() and int(s) not in steps:
              os.remove(os.path.join(self.directory, name))
    except Exception as e:
      raise write_error(e, self.directory, step if step is not None else -1) from e
    finally:
      self._pending = []

  def set_aside_newer_than(self, step: int) -> None:
    """Moves the steps after ``step`` (damaged ones that ``restore`` skipped) to
    ``<directory>.damaged/``, kept for inspection, so that training can write them anew."""
    newer = [s for s in self._mngr.all_steps() if s > step]
    if newer and jax.process_index() == 0:
      aside = f"{self.directory}.damaged"
      os.makedirs(aside, exist_ok=True)
      for s in newer:
        target = os.path.join(aside, f"{s}-{int(time.time())}")
        os.replace(os.path.join(self.directory, str(s)), target)
        checksums = checksum_path(self.directory, s)
        if os.path.exists(checksums):
          os.replace(checksums, f"{target}.checksums.json")
        log.warning("moved damaged checkpoint step %d to %s", s, target)
    if newer:
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices("ltjax_set_aside_damaged_checkpoints")
      self._mngr.reload()

  def close(self) -> None:
    """Waits for the last save and writes its checksums; a second call does nothing."""
    if self._closed:
      return
    self._closed = True
    with closing(self._mngr):  # The failed save is the error raised, not the manager's.
      self._finish()


def abstract_like(state, shardings) -> Any:
  """ShapeDtypeStructs with shardings: the restore target."""
  return jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
  )


def check_shapes(directory: str, step: int, stored, target) -> None:
  """Compares stored leaf shapes with the target's and raises a readable error."""
  want = {param_path(p): tuple(v.shape) for p, v in jax.tree_util.tree_leaves_with_path(target)}
  have = {
    param_path(p): tuple(getattr(v, "shape", ()))
    for p, v in jax.tree_util.tree_leaves_with_path(stored)
  }
  problems = [
    f"  {k}: checkpoint {have[k]} vs config {want[k]}"
    for k in sorted(want)
    if k in have and have[k] != want[k]
  ]
  missing = sorted(set(want) - set(have))
  extra = sorted(set(have) - set(want))
  problems += [f"  {k}: missing from the checkpoint" for k in missing[:10]]
  problems += [f"  {k}: in the checkpoint but not in the model" for k in extra[:10]]
  if problems:
    raise ValueError(
      f"checkpoint {directory} (step {step}) does not match the config:\n"
      + "\n".join(problems[:30])
      + "\nCheck model.backbone, model.width and the dataset's number of classes."
    )


def _restore_step(directory: str, mngr, target, step: int) -> tuple[Any, dict, dict]:
  """One step, checked: checksums, readable metadata, shapes (a mismatch is the config's
  fault: ValueError), the restore itself, finite arrays. DamagedCheckpoint otherwise."""
  verify_checksums(directory, step)
  try:
    stored = ocp.StandardCheckpointer().metadata(os.path.join(directory, str(step), "state"))
  except Exception as e:  # Orbax raises many types on a damaged or missing item.
    raise DamagedCheckpoint(f"its state metadata is unreadable ({short_reason(e)})") from e
  stored = getattr(stored, "item_metadata", stored)
  if not any(hasattr(leaf, "shape") for leaf in jax.tree.leaves(stored)):
    # Orbax answers an unreadable _METADATA with an empty tree (and a log line).
    raise DamagedCheckpoint("its state metadata is unreadable (no arrays listed)")
  # A state saved before ``TrainState.extra`` held a stage's arrays at its top level.
  target, to_state = state_lib.for_stored(stored, target)
  check_shapes(directory, step, stored, target)
  try:
    restored = mngr.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target),
        data=ocp.args.JsonRestore(),
        meta=ocp.args.JsonRestore(),
      ),
    )
  except Exception as e:
    raise DamagedCheckpoint(f"it does not restore ({short_reason(e)})") from e
  if not isinstance(restored["meta"], dict) or not isinstance(restored["data"], dict):
    raise DamagedCheckpoint("its data or meta item is not the JSON object ltjax wrote")
  check_finite(restored["state"], "array")
  return to_state(restored["state"]), restored["data"], restored["meta"]


def short_reason(e: Exception) -> str:
  """The first line of an exception, short: orbax errors can run to hundreds of lines."""
  text = str(e).strip().splitlines()
  first = text[0] if text else type(e).__name__
  return f"{type(e).__name__}: {first[:200]}"


def restore(directory: str, target, step: int | None = None) -> tuple[Any, dict, dict, int]:
  """Restores (state, data state, metadata, step) from ``directory``.

  Args:
    directory: a checkpoints directory written by :class:`Checkpointer`.
    target: abstract TrainState (see :func:`abstract_like`).
    step: which step; default the newest intact one (a damaged newer step is reported and
      skipped).

  Raises:
    ValueError: no checkpoint there, its shapes do not match ``target``, or no step is
      intact (each step's problem listed).
  """
  if not os.path.isdir(directory):
    raise ValueError(f"no checkpoint directory {directory}.")
  directory = os.path.abspath(directory)
  mngr = manager(directory, read_only=True)
  try:
    steps = sorted(mngr.all_steps(), reverse=True) if step is None else [step]
    if not steps:
      raise ValueError(f"no checkpoint found in {directory}.")
    problems = []
    for s in steps:
      try:
        state, data, meta = _restore_step(directory, mngr, target, s)
      except DamagedCheckpoint as e:
        problems.append(f"step {s}: {e}")
        log.warning("checkpoint step %d in %s is damaged (%s)", s, directory, e)
        continue
      if problems:
        log.warning("restored step %d of %s, the newest intact checkpoint", s, directory)
      return state, data, meta, s
  finally:
    mngr.close()
  raise ValueError(
    f"no intact checkpoint in {directory}:\n  " + "\n  ".join(problems) + "\nRestore the "
    "directory from a backup, or delete it (or use another --workdir) to start afresh."
  )


def latest_meta(directory: str) -> dict | None:
  """The metadata item (config, stage, class counts) of the newest step in ``directory``, or
  None if there is none or it cannot be read (``restore`` reports damage)."""
  if not os.path.isdir(directory):
    return None
  mngr = manager(directory, read_only=True)
  step = mngr.latest_step()
  mngr.close()
  if step is None:
    return None
  try:
    meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
      os.path.join(directory, str(step), "meta")
    )
  except Exception:  # Damaged: restore reports it.
    return None
  return dict(meta) if isinstance(meta, dict) else None
