"""The training loop: steps, logging, validation, checkpoints, and stopping on a signal.

``train_and_evaluate(config, workdir)`` is all the command line calls; tests call it (or
``train`` on an experiment of ``ltjax.train.experiment.setup``) directly with tiny in-memory
data. What the loop runs is assembled in ``ltjax.train.experiment``; signals are
``ltjax.stop``'s; the work directory's lock and resume check ``ltjax.train.workdir``'s.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time

import jax
import ml_collections
import numpy as np
import tqdm

from ltjax import sharding
from ltjax.data import pipeline
from ltjax.data.datasets import DataSplits
from ltjax.evaluate import runner
from ltjax.stop import STOP, Interrupted
from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import init_from as init_lib
from ltjax.train import storage_errors
from ltjax.train import workdir as workdir_lib
from ltjax.train.experiment import Experiment, make_stream, run_metadata, setup
from ltjax.train.metric_writer import MetricWriter, log_train, log_val
from ltjax.train.restore import epoch_of, restore_state, restore_trained, tested_model
from ltjax.train.state import TrainState

log = logging.getLogger(__name__)


def _check_writable(workdir: str) -> None:
  """A clear error now, rather than a traceback at the first metrics row or checkpoint."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".ltjax-write-probe-{os.getpid()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise ValueError(
      f"work directory {workdir} is not writable ({e.strerror or e}): choose a writable "
      "--workdir (`ltjax evaluate` reads a finished run from a read-only one)."
    ) from e


def _fetch_checked(pending: list, step: int, ckpt, config) -> list:
  """The per-step metrics since the last check, fetched to the host (the loop's one
  device->host sync); raises ValueError if a step had a non-finite loss, gradient norm or
  updated state (the train step skipped their updates, so the state itself is still
  finite)."""
  fetched = jax.device_get(pending)
  bad = [step - len(pending) + 1 + i for i, m in enumerate(fetched) if not m["finite"]]
  if not bad:
    return fetched
  last = ckpt.trusted if ckpt.unhealthy else ckpt.latest_step()
  saved = (
    f"the last good checkpoint is step {last} in {ckpt.directory}"
    if last is not None
    else "no checkpoint was saved"
  )
  where = f"step {bad[0]}" if len(bad) == 1 else f"{len(bad)} steps, {bad[0]} to {bad[-1]}"
  raise ValueError(
    f"training diverged: the loss, the gradient or the updated state was not finite at "
    f"{where}. Those updates "
    f"were skipped and nothing from then on was saved: {saved}. Lower --config.optim.lr "
    f"(now {config.optim.lr}) or check the data; resuming repeats the same steps."
  )


def train(
  exp: Experiment,
  state: TrainState,
  workdir: str,
  *,
  allow_config_change: bool = False,
  warn_if_finished: bool = True,
) -> TrainState:
  """Runs (or resumes) training to ``exp.total_steps``, checkpointing along the way.

  The work directory is locked for the run (``ltjax.train.workdir.RunLock``). A fresh run
  writes its config (``config.json``) and starts the stage (``exp.stage.start``); a resumed
  one must have the same config (or ``allow_config_change``; see
  ``ltjax.train.workdir.check_resume``) and restores the newest intact checkpoint. A run
  already at its last step trains nothing, with a warning (unless not ``warn_if_finished``:
  the demo says it once for all its stages).

  Raises:
    ValueError: the directory is locked or not writable, the config changed, training
      diverged (non-finite loss or gradients: nothing after them is saved), or a
      checkpoint could not be written.
    Interrupted: SIGINT/SIGTERM; the message says what was saved.
  """
  STOP.check()  # A signal during setup: stop before anything is written.
  exp.optimization.check_trains(len(exp.splits.train))
  if exp.config.eval.select == "best_val" and not len(exp.splits.val):
    raise ValueError(
      "--config.eval.select=best_val tests the best validated model, and this dataset has "
      "no validation split: set --config.dataset.val_per_class (images per class held out "
      "of training) or --config.eval.select=final."
    )
  created = not os.path.exists(workdir)
  _check_writable(workdir)
  try:
    return _train_locked(exp, state, workdir, allow_config_change, warn_if_finished)
  except BaseException:
    if created:
      _remove_if_nothing_saved(workdir)
    raise


def _remove_if_nothing_saved(workdir: str) -> None:
  """A run that failed before its first checkpoint leaves no work directory it created (a
  rerun then starts afresh, and ``ls runs/`` shows only runs)."""
  checkpoints = os.path.join(workdir, "checkpoints")
  saved = os.path.isdir(checkpoints) and any(n.isdigit() for n in os.listdir(checkpoints))
  if not saved and jax.process_index() == 0:
    shutil.rmtree(workdir, ignore_errors=True)


def _train_locked(
  exp, state, workdir: str, allow_config_change: bool, warn_if_finished: bool
) -> TrainState:
  with workdir_lib.RunLock(workdir):
    ckpt = ckpt_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"),
      exp.config.keep_checkpoints,
      frozen_weights=exp.frozen_weights,
    )
    it = pipeline.train_iterator(
      make_stream(exp),
      exp.total_steps,
      num_threads=exp.config.data.num_threads,
      prefetch=exp.config.data.prefetch,
    )
    best = _Best(exp, workdir) if exp.config.eval.select == "best_val" else None
    # A last save that fails on close is reported beside the error that stopped the run.
    with storage_errors.closing(ckpt, best):
      state, start = _start_or_resume(exp, state, workdir, ckpt, it, allow_config_change)
      if start >= exp.total_steps and warn_if_finished:
        log.warning(
          "%s holds a finished run (step %d of %d): nothing to train; evaluating it again. "
          "Use another --workdir to train anew.",
          workdir,
          start,
          exp.total_steps,
        )
      if best is not None:
        best.resume(start)
      return _Loop(exp, workdir, ckpt, it, start, best).run(state)


def _start_or_resume(exp, state, workdir: str, ckpt, it, allow_config_change: bool):
  """(state, first step): the newest intact checkpoint of this run, or a fresh start."""
  c = exp.config
  start = ckpt.latest_step()
  if start is None:
    workdir_lib.write_config(workdir, c)
    workdir_lib.store_inputs(workdir, c)
    return exp.stage.start(exp, state), 0
  workdir_lib.check_resume(workdir, c, allow_config_change, ckpt.directory)  # Before restoring.
  ckpt.set_aside_unhealthy()
  state, data_state, meta, start = restore_state(exp, state, ckpt.directory)
  ckpt.set_aside_newer_than(start)  # Damaged steps that restore skipped.
  ckpt.trust(start, meta.get("train_loss"))  # Kept until a later checkpoint is as healthy.
  it.set_state(data_state)
  log.info("resumed from step %d in %s", start, ckpt.directory)
  return state, start


class _Best:
  """``eval.select=best_val``: the model of the validation with the best overall accuracy
  (strictly better than every earlier one, as the references compare), saved in
  ``<workdir>/best/`` (one step, checksummed like every checkpoint, never rotated by the
  regular ones). The step is also saved as a regular checkpoint, so a resumed run never
  restarts before its best; a best newer than the step a run resumes from (its regular
  checkpoint was damaged) is set aside, and the replayed steps find it again."""

  def __init__(self, exp: Experiment, workdir: str):
    self.exp, self.directory = exp, os.path.join(workdir, init_lib.BEST_DIR)
    self.ckpt = None  # Made at the first save: a run that never validates leaves no best/.
    self.accuracy: float | None = None
    self.step: int | None = None

  def _checkpointer(self):
    if self.ckpt is None:
      self.ckpt = ckpt_lib.Checkpointer(
        self.directory, keep=1, judge_health=False, frozen_weights=self.exp.frozen_weights
      )
    return self.ckpt

  def resume(self, start: int) -> None:
    meta = ckpt_lib.latest_meta(self.directory)
    if meta is None:
      return
    ckpt = self._checkpointer()
    step = ckpt.latest_step()
    if step is not None and step > start:
      log.warning(
        "the best-validation checkpoint (step %d) is newer than the step the run resumes "
        "from (%d): set aside; the replayed validations choose again.",
        step,
        start,
      )
      ckpt.set_aside_newer_than(start)
      return
    self.accuracy, self.step = meta.get("val_accuracy"), step
    log.info("best validation so far: %.4f at step %s", self.accuracy or 0.0, step)

  def improves(self, accuracy: float) -> bool:
    return accuracy == accuracy and (self.accuracy is None or accuracy > self.accuracy)

  def save(self, step: int, state: TrainState, data_state: dict, meta: dict) -> None:
    accuracy = meta["val_accuracy"]
    ckpt = self._checkpointer()
    ckpt.save(step, state, data_state, meta)
    ckpt.close()  # Written and checksummed before training goes on.
    self.ckpt = None
    self.accuracy, self.step = accuracy, step
    log.info(
      "new best validation accuracy %.4f at step %d (epoch %g): kept in %s",
      accuracy,
      step,
      epoch_of(self.exp, step),
      self.directory,
    )

  def close(self) -> None:
    if self.ckpt is not None:
      self.ckpt.close()


class _Loop:
  """The steps of one ``train`` call: from ``start`` to the end, logged, validated and
  checkpointed as the config asks, never past a non-finite step, stopped by ``STOP``."""

  def __init__(self, exp: Experiment, workdir: str, ckpt, it, start: int, best=None):
    self.exp, self.config, self.ckpt, self.it, self.start = exp, exp.config, ckpt, it, start
    self.best: _Best | None = best
    self.writer = MetricWriter(workdir, resume_step=start)
    self.pending: list = []  # Metrics of the steps since the last host sync.
    self.since, self.t0 = 0, time.perf_counter()
    self.data_sharding = sharding.batch_sharding(exp.mesh)
    c = self.config
    # Validation after every eval_every_epochs epochs: at the first step that completes
    # them (epochs need not be whole steps).
    self.eval_every = c.eval_every_epochs * exp.steps_per_epoch  # In steps; 0: never.

  def run(self, state: TrainState) -> TrainState:
    exp, c = self.exp, self.config
    bar = tqdm.tqdm(
      total=exp.total_steps,
      initial=self.start,
      desc=f"{c.stage}",
      unit="step",
      disable=jax.process_index() != 0 or not sys.stderr.isatty(),
      mininterval=1,
    )
    with STOP.deferred(self.ckpt.directory) as stop:
      try:
        for step in range(self.start + 1, exp.total_steps + 1):
          state = self.step(step, state)
          bar.update(1)
          # One process stops at once; several agree at logging steps (see StopRequests).
          asks = self.sync_point(step) if jax.process_count() > 1 else stop.signum is not None
          if asks and stop.agreed():
            self.save_and_stop(step, state, stop)
        self.warn_if_unhealthy()
      finally:
        bar.close()
        self.writer.close()
    return state

  def sync_point(self, step: int) -> bool:
    return step % self.config.log_every_steps == 0 or step == self.exp.total_steps

  def step(self, step: int, state: TrainState) -> TrainState:
    exp, c = self.exp, self.config
    state, metrics = exp.train_step(state, sharding.to_global(next(self.it), self.data_sharding))
    self.pending.append(metrics)
    self.since += 1
    checkpoint = step % c.checkpoint_every_steps == 0 or step == exp.total_steps
    validate = (
      (self.eval_every and step // self.eval_every > (step - 1) // self.eval_every)
      or (self.best is not None and step == exp.total_steps)  # The last epoch competes too.
    ) and len(exp.splits.val)
    if self.sync_point(step) or checkpoint or validate:
      fetched = _fetch_checked(self.pending, step, self.ckpt, c)  # Never validate a bad step.
    if self.sync_point(step):
      log_train(self.writer, exp, step, fetched, self.t0, self.since)
      self.pending, self.t0, self.since = [], time.perf_counter(), 0
    if validate:
      val = runner.evaluate_split(exp, state, exp.splits.val)
      self.writer.write(step, "val", {k: v for k, v in val.items() if v == v})
      log_val(step, val)
      if self.best is not None and self.best.improves(val["all"]):
        meta = run_metadata(exp) | {"val_accuracy": val["all"]}
        self.best.save(step, state, self.it.get_state(), meta)
        checkpoint = True  # A resumed run restarts no earlier than its best.
    if checkpoint:
      self.save(step, state, fetched)
    return state

  def save(self, step: int, state: TrainState, fetched: list) -> None:
    """Saves ``step``, with the mean training loss of ``fetched`` (the steps since the last
    log) for the checkpointer's health judgement."""
    loss = float(np.mean([m["loss"] for m in fetched])) if fetched else None
    meta = run_metadata(self.exp) | {"train_loss": loss}
    self.ckpt.save(step, state, self.it.get_state(), meta)

  def warn_if_unhealthy(self) -> None:
    if self.ckpt.unhealthy:
      log.warning(
        "the training loss exploded after checkpoint step %d: the final model (step %d) "
        "descends from it, and the results below are that model's. The last healthy "
        "checkpoint, step %s, is kept in %s; a resumed run continues from it (lower "
        "--config.optim.lr and pass --allow_config_change).",
        min(self.ckpt.unhealthy),
        self.exp.total_steps,
        self.ckpt.trusted,
        self.ckpt.directory,
      )

  def save_and_stop(self, step: int, state: TrainState, stop) -> None:
    """Nothing lost on Ctrl-C or a scheduler's SIGTERM: saves where we are, then stops."""
    fetched = _fetch_checked(self.pending, step, self.ckpt, self.config)
    why = f"signal {stop.signum}" if stop.signum else "a signal to another process"
    if step > (self.ckpt.latest_step() or 0):
      self.save(step, state, fetched)
    self.ckpt.close()
    _raise_stopped(
      f"stopped by {why} after step {step}: saved checkpoint step {step} in "
      f"{self.ckpt.directory}; run the same command again to resume."
    )


def _raise_stopped(message: str) -> None:
  log.warning("%s", message)
  raise Interrupted(message) from None


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  splits: DataSplits | None = None,
  allow_config_change: bool = False,
) -> dict:
  """Trains (resuming if ``workdir`` has checkpoints), evaluates on test, writes results.

  Returns:
    The method's results (many/medium/few/all/mean_class and open-set metrics if the
    test set has open-set images), also merged into ``workdir/results.json``.
  """
  exp, state = setup(config, splits)
  log.info(
    "%s: %d train images, %d classes, %d steps (%.1f per epoch) on %d devices",
    config.stage,
    len(exp.splits.train),
    exp.splits.num_classes,
    exp.total_steps,
    exp.steps_per_epoch,
    exp.mesh.size,
  )
  state = train(exp, state, workdir, allow_config_change=allow_config_change)
  state, selected = tested_model(exp, state, workdir)
  return runner.evaluate_and_write(exp, state, workdir, extra=selected)


def evaluate_run(config: ml_collections.ConfigDict, workdir: str, *, posthoc: bool = False) -> dict:
  """``ltjax evaluate``: the finished run in ``workdir`` tested as its config selects
  (``tested_model``), on the data it was trained on (``restore_trained``), into its
  results files; with ``posthoc``, NCM, tau-norm and post-hoc logit adjustment on the
  tested model's features too. ``config`` must be the run's own but for evaluation fields
  (``workdir.check_evaluation``).

  Returns:
    ``{method: results}`` of every method evaluated.
  """
  workdir_lib.check_evaluation(workdir, config)
  exp, state = restore_trained(config, workdir)
  state, selected = tested_model(exp, state, workdir)
  results = {exp.config.method: runner.evaluate_and_write(exp, state, workdir, extra=selected)}
  if posthoc:
    from ltjax.evaluate import posthoc as posthoc_lib

    features_dir = os.path.join(workdir, "features")
    results.update(posthoc_lib.evaluate_all(exp, state, workdir, features_dir))
  return results
