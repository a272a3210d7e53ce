"""Running a model over a split and turning predictions into results files."""

from __future__ import annotations

import errno
import logging
import os

import jax
import numpy as np

from ltjax import files, sharding
from ltjax.data import pipeline
from ltjax.evaluate import evaluators, methods, metrics
from ltjax.models import heads
from ltjax.stop import STOP

log = logging.getLogger(__name__)


def run_over(exp, state, source, step, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
  """``step(state, batch)`` over every record of ``source`` (sharded, evaluation
  transform, in order): the outputs ``keys`` concatenated to ``len(source)`` rows (one per
  record: with ``five_crop`` a batch holds each record's crops, and the step averages
  over them).

  Each batch's outputs reach the host (every process, ``sharding.to_host``) while the next
  batch runs: the devices hold at most two batches' outputs, whatever the split's size.
  """
  if not len(source):
    raise ValueError("cannot evaluate an empty split.")
  data_sharding = sharding.batch_sharding(exp.mesh)
  outs: dict[str, list] = {k: [] for k in keys}
  pending = None

  def fetch(out) -> None:
    for k, v in sharding.to_host(out).items():
      outs[k].append(v)

  for batch in pipeline.eval_batches(
    source,
    exp.config.eval.batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    transform=exp.eval_transform,
  ):
    STOP.check()
    out = step(state, sharding.to_global({k: batch[k] for k in ("image", "label")}, data_sharding))
    if pending is not None:
      fetch(pending)
    pending = {k: out[k] for k in keys}
    del out
  fetch(pending)
  return {k: np.concatenate(v)[: len(source)] for k, v in outs.items()}


def features(exp, state, source) -> dict[str, np.ndarray]:
  """Features (N, D), logits (N, K) and labels (N,) of every record of ``source``, in
  order, with the evaluation transform (on the training source: the references'
  un-sampled "train_plain" set)."""
  out = run_over(exp, state, source, exp.feature_step, ("features", "logits"))
  return {**out, "labels": np.asarray(source.labels)}


def training_class_means(exp, state) -> tuple[np.ndarray, int]:
  """The (K, D) float32 class means of the features of the model in ``state`` over the
  un-sampled training set with the evaluation transform, as they are (``feat_type="un"``),
  and the number of features: where ``model.head_init='class_mean'`` starts a head and
  OLTR its centroids."""
  train = features(exp, state, exp.splits.train)
  means, _ = heads.class_means(train["features"], train["labels"], exp.splits.num_classes, "un")
  return np.asarray(means, np.float32), len(train["labels"])


def predict(exp, state, source) -> dict[str, np.ndarray]:
  """The eval step's per-record outputs for every record of ``source`` (those the run's
  evaluators need: ``exp.evaluation.outputs``), and its labels (``"label"``)."""
  out = run_over(exp, state, source, exp.eval_step, tuple(exp.evaluation.outputs))
  return {**out, "label": np.asarray(source.labels)}


def evaluate_split(exp, state, source) -> dict:
  """The results row of the model ``state`` on ``source`` (validation, during training)."""
  return exp.evaluation.summarize(predict(exp, state, source), exp.splits.train_counts)


#: Errors of a file system that cannot take a results file: reported, not raised, so
#: evaluating a finished run on a read-only (or full) disk still prints its results.
_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)


def write_json(path: str, obj) -> None:
  """Atomic write: a crash never leaves a half-written results file. On a read-only or
  full file system it warns and writes nothing."""
  try:
    files.write_json(path, metrics.to_jsonable(obj))
  except OSError as e:
    if e.errno not in _UNWRITABLE:
      raise
    log.warning("could not write %s (%s): the results are printed, not saved.", path, e.strerror)


def update_json(path: str, key: str, value) -> dict:
  data = {}
  if os.path.exists(path):
    data = files.read_json(path, "delete it to start the file anew (the other runs' entries go)")
  data[key] = value
  write_json(path, data)
  return data


def method_files() -> tuple[str, ...]:
  """The files that hold one entry per method (``record`` writes them, the evaluators
  theirs; a removed row leaves them all). tau_sweep.json holds the post-hoc methods'
  selection curves."""
  return ("results", *evaluators.method_files(), "weight_norms")


def computed_with(exp, step: int, source_method: str | None = None) -> dict:
  """What a results row was computed with: the tested model's checkpoint ``step`` (and for
  a post-hoc method the method whose model it starts from, ``from``), the data
  (``ltjax.data.identity``: digests of the train, val and test splits) and the evaluation
  settings (shot and open-set thresholds, the test views, the evaluators' options), which
  the rows of one results.json must share (``reconcile``)."""
  ident = exp.splits.identity()
  e = exp.evaluation  # The settings the row's evaluators were built with.
  record = {
    "step": int(step),
    "from": source_method,
    "data": {split: ident[split]["digest"][:16] for split in ("train", "val", "test")},
    "many_threshold": e.many_threshold,
    "few_threshold": e.few_threshold,
    "open_threshold": e.open_threshold,
  }
  views = test_views(exp.config.data)
  # An evaluator's option (ECE bins, ...) only where it is not the default: rows of
  # default settings read as they always have.
  return record | ({"test_views": views} if views else {}) | exp.evaluation.options


def test_views(data) -> str | None:
  """What a row's test images were when it averaged several views of each (the
  ``five_crop`` test-time ensemble: ``"five_crop+24"``), or None for one view."""
  if data.eval_transform != "five_crop":
    return None
  return f"five_crop+{int(data.tte_expand)}"


def _setting_changes(old: dict, new: dict) -> list[str]:
  """How two ``computed_with`` records differ in what the numbers mean, in words."""
  out = []
  if (old.get("many_threshold"), old.get("few_threshold")) != (
    new["many_threshold"],
    new["few_threshold"],
  ):
    out.append(
      f"shot thresholds many > {old.get('many_threshold')} / few < {old.get('few_threshold')}, "
      f"now {new['many_threshold']} / {new['few_threshold']}"
    )
  if old.get("open_threshold") != new["open_threshold"]:
    out.append(f"open threshold {old.get('open_threshold')}, now {new['open_threshold']}")
  if old.get("test_views") != new.get("test_views"):
    out.append(f"test views {old.get('test_views') or 'one'}, now {new.get('test_views') or 'one'}")
  for option, default in evaluators.option_defaults().items():
    before, now = old.get(option, default), new.get(option, default)
    if before != now:
      out.append(f"eval.{option} {before}, now {now}")
  old_data = old.get("data") or {}
  for split in ("train", "val", "test"):
    if old_data.get(split) != new["data"][split]:
      out.append(
        f"other {split} data ({str(old_data.get(split))[:8]}, now {new['data'][split][:8]})"
      )
  return out


def _stale_rows(results: dict, method: str, new: dict) -> dict[str, str]:
  """The rows of ``results`` that cannot stay beside ``method``'s new row of ``new``
  (``computed_with``), with why: other settings or data, or a post-hoc row computed from
  another model of ``method``."""
  stale = {}
  for other, row in results.items():
    if other == method:
      continue
    old = row.get("computed_with") if isinstance(row, dict) else None
    if not isinstance(old, dict):
      stale[other] = "it does not record what it was computed with (an older ltjax)"
      continue
    changes = _setting_changes(old, new)
    if changes:
      stale[other] = "; ".join(changes)
    elif old.get("from") == method and old.get("step") != new["step"]:
      stale[other] = (
        f"computed from {method}'s model of step {old.get('step')}, which is now step {new['step']}"
      )
  return stale


def _remove_rows(workdir: str, gone: list[str]) -> None:
  """Removes the methods ``gone`` from every per-method results file of ``workdir``."""
  for name in method_files():
    path = os.path.join(workdir, f"{name}.json")
    if not os.path.exists(path):
      continue
    data = files.read_json(path, "delete it to start the file anew")
    if any(m in data for m in gone):
      write_json(path, {k: v for k, v in data.items() if k not in gone})
  sweep = os.path.join(workdir, "tau_sweep.json")
  if not os.path.exists(sweep):
    return
  data = files.read_json(sweep, "delete it; `ltjax evaluate --posthoc` writes it anew")
  # The top level is one method's sweep (``methods.TOP_LEVEL_SWEEP``); every other method's
  # is a sweep of its own (with its "taus") under its name.
  top_gone = methods.TOP_LEVEL_SWEEP in gone
  kept = {
    k: v
    for k, v in data.items()
    if k not in gone and not (top_gone and not (isinstance(v, dict) and "taus" in v))
  }
  if kept == data:
    return
  if kept:
    write_json(sweep, kept)
  else:
    os.remove(sweep)


def reconcile(workdir: str, method: str, row: dict) -> None:
  """Before ``method``'s ``row`` goes into ``workdir``'s results: removes (and says so) the
  rows that would sit beside it with other settings or data, or that were computed from
  another model of ``method``; says when the row replaces one that tested another model."""
  path = os.path.join(workdir, "results.json")
  if jax.process_index() != 0 or not os.path.exists(path):
    return
  results = files.read_json(path, "delete it to start the file anew (the other runs' entries go)")
  new = row["computed_with"]
  old_row = results.get(method)
  if isinstance(old_row, dict) and isinstance(old_row.get("computed_with"), dict):
    old = (old_row.get("selection"), old_row["computed_with"].get("step"))
    if old != (row.get("selection"), new["step"]) and old != (None, None):
      log.warning(
        "results.json: %s's row tested the %s model of step %s; it is replaced by the %s "
        "model of step %s.",
        method,
        old[0] or "",
        old[1],
        row.get("selection") or "",
        new["step"],
      )
  stale = _stale_rows(results, method, new)
  if not stale:
    return
  _remove_rows(workdir, list(stale))
  by_reason: dict[str, list[str]] = {}
  for m, why in stale.items():
    by_reason.setdefault(why, []).append(m)
  log.warning(
    "results.json: removed the rows of %s, which would sit beside %s's new row: %s. "
    "Evaluate them again to have them back (post-hoc rows: `ltjax evaluate --workdir=%s "
    "--posthoc`).",
    ", ".join(stale),
    method,
    "; ".join(f"{', '.join(ms)}: {why}" for why, ms in by_reason.items()),
    workdir,
  )


def record(
  workdir: str,
  method: str,
  p: dict[str, np.ndarray],
  train_counts: np.ndarray,
  evaluation: evaluators.Evaluation,
  val_max_prob: np.ndarray | None = None,
  extra: dict | None = None,
  provenance: dict | None = None,
) -> dict:
  """Summarises one method's test outputs ``p`` (``evaluation.summarize``) into
  results.json (with ``extra`` entries, e.g. the selected epoch, and ``provenance``,
  ``computed_with``'s record, under "computed_with") and the evaluators' own files
  (``evaluation.records``: per_class.json, calibration.json's reliability bins,
  open_set_curve.json); ``val_max_prob``: its validation max probabilities, for
  ``open_f_measure_val``. Rows of other settings are removed first (``reconcile``)."""
  summary = evaluation.summarize(p, train_counts, val_max_prob) | (extra or {})
  entries = evaluation.records(p, train_counts, val_max_prob)
  if provenance is not None:
    summary["computed_with"] = provenance
    reconcile(workdir, method, summary)
  if jax.process_index() == 0:
    update_json(os.path.join(workdir, "results.json"), method, summary)
    for name, entry in entries.items():
      update_json(os.path.join(workdir, f"{name}.json"), method, entry)
  shown = {
    k: round(float(v), 4) if isinstance(v, float) else v
    for k, v in summary.items()
    if k != "computed_with"
  }
  log.info("%s test: %s", method, shown)
  return summary


def classifier_weights(params) -> np.ndarray | None:
  """(K, D) weights of a linear or LWS head (scales folded in), None for other heads."""
  head = jax.device_get(params.get("head", {}))
  if "fc" not in head:
    return None
  weights = np.asarray(head["fc"]["kernel"]).T
  if "scales" in head:
    weights = weights * np.asarray(head["scales"])[:, None]
  return weights


def record_weight_norms(workdir: str, method: str, weights: np.ndarray | None) -> None:
  """Per-class classifier weight norms into weight_norms.json (for the report's figure)."""
  if weights is not None and jax.process_index() == 0:
    norms = np.linalg.norm(np.asarray(weights, np.float64), axis=1)
    update_json(os.path.join(workdir, "weight_norms.json"), method, norms)


def write_meta(workdir: str, exp) -> None:
  """meta.json: the dataset, the shot thresholds, the data's identity (``"data"``: each
  split's record count and digest, ``ltjax.data.identity``) and, where the dataset has
  them, the class names (for the report)."""
  if jax.process_index() == 0:
    e = exp.config.eval
    entries = [
      ("dataset", exp.config.dataset.name),
      ("many_threshold", e.many_threshold),
      ("few_threshold", e.few_threshold),
      ("data", exp.splits.identity()),
    ]
    if exp.splits.class_names is not None:
      entries.append(("class_names", list(exp.splits.class_names)))
    path = os.path.join(workdir, "meta.json")
    data = {}
    if os.path.exists(path):
      data = files.read_json(path, "delete it; evaluation writes it anew")
    write_json(path, data | dict(entries))


def evaluate_and_write(
  exp, state, workdir: str, method: str | None = None, extra: dict | None = None
) -> dict:
  """Evaluates on the test split; merges into results.json (with ``extra``),
  per_class.json, calibration.json and (for linear-type heads) weight_norms.json."""
  method = method or exp.config.method
  p = predict(exp, state, exp.splits.test)
  val_max_prob = None
  wanted = exp.evaluation.uses_val_max_prob
  if wanted and np.any(p["label"] == -1) and len(exp.splits.val):  # open_f_measure_val.
    val_max_prob = predict(exp, state, exp.splits.val)["max_prob"]
  step = (extra or {}).get("selected_step", int(jax.device_get(state.step)))
  counts, provenance = exp.splits.train_counts, computed_with(exp, step)
  summary = record(workdir, method, p, counts, exp.evaluation, val_max_prob, extra, provenance)
  write_meta(workdir, exp)
  record_weight_norms(workdir, method, classifier_weights(state.params))
  return summary
