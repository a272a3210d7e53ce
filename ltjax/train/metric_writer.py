"""A run's metrics: ``metrics.jsonl`` and TensorBoard scalars (process 0), and the console
lines of training and validation."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import struct
import time

import jax
import numpy as np

from ltjax import files
from ltjax.train.storage_errors import storage_reason

log = logging.getLogger(__name__)


def _truncate_rows(path: str, last_step: int | None) -> None:
  """Keeps the metrics.jsonl rows of steps <= ``last_step`` (all rows if None; none of a
  training step if 0; unreadable whole lines as they are) and drops a partial last line (a
  crash mid-write leaves one: the next row appended to it would be lost), rewritten
  atomically."""
  with open(path, encoding="utf-8", errors="replace") as f:
    lines = f.readlines()
  partial = bool(lines) and not lines[-1].endswith("\n")
  if partial:
    log.warning("%s: dropped a partial last line left by a crash: %r", path, lines[-1][:80])
    lines = lines[:-1]
  keep = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      keep.append(line)
      continue
    if last_step is None or not isinstance(row, dict) or row.get("step", 0) <= last_step:
      keep.append(line)
  if partial or len(keep) != len(lines):
    with files.atomic_write(path) as f:
      f.writelines(keep)
  if len(keep) != len(lines):
    log.info("metrics.jsonl: dropped %d row(s) after step %d", len(lines) - len(keep), last_step)


def _tensorboardx():
  """tensorboardX's event protos, scalar summary and record checksum, imported without
  PyTorch: tensorboardX imports torch, when installed, only to accept torch tensors (ltjax
  writes floats), which cost a second of start-up per run. Torch imports normally
  afterwards."""
  import sys

  if "torch" not in sys.modules:
    sys.modules["torch"] = None  # An import of torch now raises ImportError, as if absent.
    try:
      return _tensorboardx()
    finally:
      del sys.modules["torch"]
  from tensorboardX.proto.event_pb2 import Event, SessionLog
  from tensorboardX.record_writer import masked_crc32c
  from tensorboardX.summary import scalar

  return Event, SessionLog, scalar, masked_crc32c


class _EventFile:
  """A TensorBoard event file of scalars, written and flushed in the calling thread.

  tensorboardX's ``SummaryWriter`` writes from a thread of its own: on a full disk that
  thread dies with a traceback, the next scalars wait forever for room in its queue (a run
  hung), and its ``close`` (in the loop's ``finally``) raised over the error that stopped the
  run, so the one line naming the lost step was lost. Here a failed write raises where the
  metrics row does, and ``close`` always closes the file. The records are TensorBoard's
  (``Event`` protos framed as TFRecords, tensorboardX's checksum); a resumed run
  (``purge_step``) starts with the event that tells TensorBoard to drop the earlier
  attempt's scalars from that step on, as ``SummaryWriter(purge_step=...)`` does.
  """

  def __init__(self, logdir: str, purge_step: int | None):
    self._event, session_log, self._scalar, self._crc = _tensorboardx()
    os.makedirs(logdir, exist_ok=True)
    # TensorBoard reads the files in name order; the nanoseconds keep two writers started
    # within one second (a quick resume) apart and in order.
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{time.time_ns()}"
    self._file = open(os.path.join(logdir, name), "wb")
    self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))
    if purge_step is not None:
      start = session_log(status=session_log.START)
      self._write(self._event(wall_time=time.time(), step=purge_step, session_log=start))
    self._file.flush()

  def _write(self, event) -> None:
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    self._file.write(header + struct.pack("<I", self._crc(header)))
    self._file.write(data + struct.pack("<I", self._crc(data)))

  def write(self, step: int, split: str, scalars: dict) -> None:
    for k, v in scalars.items():
      summary = self._scalar(f"{split}/{k}", float(v))
      self._write(self._event(wall_time=time.time(), step=int(step), summary=summary))
    self._file.flush()

  def close(self) -> None:
    self._file.close()  # Closed even when its last flush fails (which it then raises).


class MetricWriter:
  """metrics.jsonl and TensorBoard scalars, written by process 0 only.

  A run resumed from step ``resume_step`` first drops the rows written after it (a run
  killed after its last checkpoint logged steps it will log again), in metrics.jsonl and,
  with ``purge_step``, in TensorBoard. A run that starts at step 0 (no checkpoint: an
  earlier attempt, killed or stopped at once by a second signal, saved nothing) starts both
  afresh: the earlier attempt's rows and event files are of steps it will log again.
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    self.enabled = jax.process_index() == 0
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      path = os.path.join(workdir, "metrics.jsonl")
      if os.path.exists(path):
        _truncate_rows(path, resume_step)
      tensorboard = self._tensorboard = os.path.join(workdir, "tensorboard")
      if not resume_step and os.path.isdir(tensorboard):
        shutil.rmtree(tensorboard)
        log.info("%s: removed the event files of an attempt that saved no checkpoint", tensorboard)
      self._file = open(path, "a")
      try:
        self._tb = _EventFile(tensorboard, resume_step + 1 if resume_step else None)
      except ImportError:  # pragma: no cover - tensorboardX is a dependency.
        log.warning("tensorboardX missing: no TensorBoard scalars.")

  def write(self, step: int, split: str, scalars: dict) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), "split": split, "time": round(time.time(), 3)}
    row |= {k: float(v) for k, v in scalars.items()}
    where = self._file.name
    try:  # A full disk meets the metrics as often as a checkpoint.
      self._file.write(json.dumps(row) + "\n")
      self._file.flush()
      if self._tb is not None:
        where = self._tensorboard
        self._tb.write(step, split, scalars)
    except OSError as e:
      raise ValueError(
        f"could not write the metrics of step {step} to {where}: "
        f"{storage_reason(e) or e}. The checkpoints saved before it are intact; free space "
        "(or choose a writable --workdir) and run the same command again to resume from the "
        "latest one."
      ) from e

  def close(self) -> None:
    """Closes both files. Every row was flushed when written, so a close fails only after a
    write that failed and raised already: said, never raised over that error (the loop
    closes the writer in a ``finally``)."""
    if not self.enabled:
      return
    for name, f in (("metrics.jsonl", self._file), ("TensorBoard's event file", self._tb)):
      if f is None:
        continue
      try:
        f.close()
      except OSError as e:
        log.warning("%s could not be closed (%s).", name, storage_reason(e) or e)


def log_train(writer, exp, step, fetched: list, t0, n_steps) -> None:
  """Logs the per-step metrics since the last log (fetched by ``_fetch_checked``)."""
  means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0] if k != "finite"}
  elapsed = max(time.perf_counter() - t0, 1e-9)
  means["lr"] = float(exp.schedule(step - 1))
  means["images_per_s"] = n_steps * exp.config.batch_size / elapsed
  means["epoch"] = step / exp.steps_per_epoch
  writer.write(step, "train", means)
  log.info(
    "step %d/%d epoch %.2f loss %.4f acc %.3f lr %.4g %.0f img/s",
    step,
    exp.total_steps,
    means["epoch"],
    means["loss"],
    means["accuracy"],
    means["lr"],
    means["images_per_s"],
  )


def log_val(step: int, val: dict) -> None:
  """One console line per validation pass (metrics.jsonl and TensorBoard have them too)."""
  groups = ("all", "many", "medium", "few")
  cells = [f"{k} {100 * val[k]:.1f}" for k in groups if k in val and val[k] == val[k]]
  log.info("step %d val accuracy (%%): %s", step, ", ".join(cells))
