"""A run's saved state brought back: the newest (or best-validation) checkpoint of a run,
slim checkpoints completed from their weight file, on the data the run was trained on, and
the model its config tests (``eval.select``). ``ltjax.train.loop`` resumes and tests with
these; ``ltjax evaluate`` starts from ``restore_trained``.
"""

from __future__ import annotations

import copy
import logging
import os

import jax
import ml_collections

from ltjax import config as config_lib
from ltjax.config import components
from ltjax.data import identity
from ltjax.data.datasets import DataSplits
from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import frozen as frozen_lib
from ltjax.train import init_from as init_lib
from ltjax.train import stages as stages_lib
from ltjax.train.experiment import Experiment, setup
from ltjax.train.state import TrainState

log = logging.getLogger(__name__)


def restore_state(exp: Experiment, state: TrainState, directory: str):
  """``(state, data state, metadata, step)`` of the newest intact checkpoint in
  ``directory`` (``ltjax.train.checkpoint.restore``) for a train state shaped as ``state``;
  a checkpoint that left its frozen parameters in a weight file (``frozen_weights`` in its
  metadata) gets them back from that file, checked to be the one it trained with."""
  target = ckpt_lib.abstract_like(state, exp.state_sharding)
  newest = ckpt_lib.latest_meta(directory)
  # The newest step's metadata says whether the run's checkpoints are slim; when it is
  # unreadable (restore then falls back to an older step), this run's own reference does.
  record = newest.get("frozen_weights") if newest is not None else exp.frozen_weights
  if record is None:
    return ckpt_lib.restore(directory, target)
  path = exp.config.model.pretrained
  frozen_lib.check_file(record, path, directory)
  target = target.replace(params=frozen_lib.slim(target.params, record))
  restored, data, meta, step = ckpt_lib.restore(directory, target)
  stored = meta.get("frozen_weights")
  if stored is not None and stored["sha256"] != record["sha256"]:
    frozen_lib.check_file(stored, path, f"{directory} (step {step})")
  full = stages_lib.load_pretrained(exp, state, path)
  params = frozen_lib.complete(restored.params, full.params, record)
  return restored.replace(params=params), data, meta, step


def check_trained_data(exp: Experiment, meta: dict, workdir: str) -> None:
  """A finished run is evaluated on the data it was trained on: another train split is
  refused (its shot groups, class means and post-hoc selections would come from other
  images); other val or test images are evaluated as they are now, and said."""
  recorded = (meta or {}).get("data")
  if not recorded:
    log.info("%s predates ltjax's data records: its data cannot be compared", workdir)
    return
  diffs = identity.differences(recorded, exp.splits.identity())
  train = [d for d in diffs if d[0] == "train"]
  d = exp.config.dataset
  where = ", ".join(f"dataset.{k}={d[k]}" for k in config_lib.DATA_LOCATIONS if d[k]) or "it"
  if train:
    raise ValueError(
      f"{workdir} was trained on other data than {where} now holds "
      f"({identity.describe_differences(diffs)}): its shot groups, class means and post-hoc "
      "selections would come from other images. Point --config.dataset.root (or lists_dir, "
      "packed_dir, data_dir) at the data the run was trained on."
    )
  if diffs:
    log.warning(
      "the data differs from what %s was validated and tested on when it was trained (%s): "
      "evaluating on the data as it is now; results.json records which.",
      workdir,
      identity.describe_differences(diffs),
    )


def restore_trained(
  config: ml_collections.ConfigDict, workdir: str, splits: DataSplits | None = None
) -> tuple[Experiment, TrainState]:
  """The experiment of ``config`` with the latest state saved in ``workdir``
  (``config.init_from`` is not read: the checkpoint holds every variable), on the splits
  the run was trained on (drawn with its recorded seed; another train split is refused,
  ``check_trained_data``)."""
  checkpoints = os.path.join(workdir, "checkpoints")
  recorded = (ckpt_lib.latest_meta(checkpoints) or {}).get("data") or {}
  seed = recorded.get("split_seed")
  config = copy.deepcopy(config)  # The caller's is left as it is.
  while True:
    try:
      exp, state = setup(config, splits, check_start=False, seed_of_splits=seed)
      break
    except components.UnreadOption as e:  # Saved before ltjax refused it: it did nothing.
      block, _, field = e.key.rpartition(".")
      if config[block][field] == e.default:
        raise
      log.warning(
        "%s: %s=%r was read by none of the run's components (%s); evaluating with it at "
        "its default, %r, which is the run that trained",
        workdir,
        e.key,
        config[block][field],
        e,
        e.default,
      )
      config[block][field] = e.default
  state, _, meta, step = restore_state(exp, state, checkpoints)
  check_trained_data(exp, meta, workdir)
  log.info("restored step %d from %s", step, workdir)
  return exp, state


def epoch_of(exp: Experiment, step: int) -> float:
  """The epochs trained after ``step`` steps (3 decimals; the last step completes the run's
  ``num_epochs``)."""
  return round(min(step / exp.steps_per_epoch, float(exp.config.num_epochs)), 3)


def tested_model(exp: Experiment, state: TrainState, workdir: str) -> tuple[TrainState, dict]:
  """The model ``config.eval.select`` tests, and what it is (results.json entries).

  ``final``: ``state`` as given, the run's last step. ``best_val``: the checkpoint the
  training loop kept in ``<workdir>/best/`` (``init_lib.BEST_DIR``) at the validation with
  the best overall accuracy, as the references test (a run imported from a reference
  checkpoint holds that model already: the references save their best epoch's weights).

  Returns:
    (state, {"selection", "selected_step", "selected_epoch", and for best_val
    "val_accuracy"}).

  Raises:
    ValueError: best_val and no best-validation checkpoint (the run never validated).
  """
  counts = {}
  if exp.config.model.get("peft"):  # What a parameter-efficient method trains, said.
    counts = {
      "trained_parameters": exp.parameters["trained"],
      "parameters": exp.parameters["total"],
    }
  if exp.config.eval.select != "best_val":
    step = int(jax.device_get(state.step))
    epoch = epoch_of(exp, step)
    return state, {"selection": "final", "selected_step": step, "selected_epoch": epoch} | counts
  best = os.path.join(workdir, init_lib.BEST_DIR)
  if ckpt_lib.latest_meta(best) is None:
    imported = ckpt_lib.latest_meta(os.path.join(workdir, "checkpoints")) or {}
    if "imported_from" in imported:
      step = int(jax.device_get(state.step))
      log.info("eval.select=best_val: the imported reference checkpoint is its run's best")
      return state, {
        "selection": "best_val",
        "selected_step": step,
        "selected_epoch": None,
      } | counts
    raise ValueError(
      f"--config.eval.select=best_val: {workdir} has no best-validation checkpoint "
      f"({best}/): the run has not validated yet (every --config.eval_every_epochs, on a "
      "non-empty validation split). Evaluate its last step with --config.eval.select=final."
    )
  state, _, meta, step = restore_state(exp, state, best)
  extra = {"selection": "best_val", "selected_step": step, "selected_epoch": epoch_of(exp, step)}
  extra["val_accuracy"] = meta.get("val_accuracy")
  extra |= counts
  log.info(
    "testing the best-validation model: step %d (epoch %g), validation accuracy %.4f",
    step,
    extra["selected_epoch"],
    extra["val_accuracy"] if extra["val_accuracy"] is not None else float("nan"),
  )
  return state, extra
