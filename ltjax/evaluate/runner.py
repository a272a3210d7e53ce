"""Running a model over a split and turning predictions into results files."""

from __future__ import annotations

import errno
import logging
import os

import jax
import numpy as np

from ltjax import files, sharding
from ltjax.data import pipeline
from ltjax.evaluate import metrics
from ltjax.stop import STOP

log = logging.getLogger(__name__)


def run_over(exp, state, source, step, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
  """``step(state, batch)`` over every record of ``source`` (sharded, evaluation
  transform, in order): the outputs ``keys`` concatenated to ``len(source)`` rows."""
  data_sharding = sharding.batch_sharding(exp.mesh)
  outs = {k: [] for k in keys}
  for batch in pipeline.eval_batches(
    source,
    exp.config.eval.batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    transform=exp.config.data.eval_transform,
    size=exp.config.data.crop_size,
  ):
    STOP.check()
    out = step(state, sharding.to_global({k: batch[k] for k in ("image", "label")}, data_sharding))
    for k in keys:
      outs[k].append(out[k])
  outs = jax.device_get(outs)
  return {k: np.concatenate(v)[: len(source)] for k, v in outs.items()}


PREDICTION_KEYS = ("pred", "max_prob", "top5", "nll")


def predict(exp, state, source) -> dict[str, np.ndarray]:
  """The eval step's per-record outputs (``PREDICTION_KEYS``: predicted class, max softmax
  probability, top-5 hit, negative log-likelihood) for every record of ``source``, and its
  labels."""
  out = run_over(exp, state, source, exp.eval_step, PREDICTION_KEYS)
  return {**out, "label": np.asarray(source.labels)}


def summarize(
  p: dict[str, np.ndarray], train_counts: np.ndarray, eval_cfg, val_max_prob=None
) -> dict:
  """One method's metrics from its predictions ``p`` (``predict``'s or
  ``metrics.from_logits``'s, with "label").

  Closed set (known test images): top-1 accuracy per shot group, overall and per class
  mean (``many``, ``medium``, ``few``, ``all``, ``mean_class``); top-5 accuracy the same way
  (``top5_many`` ... ``top5_all``); the expected calibration error of the max softmax
  probability over 15 bins (``ece``) and the mean negative log-likelihood (``nll``).
  Open set, when label -1 is present: ``open_f_measure`` at ``eval_cfg.open_threshold``
  (the paper's 0.1), ``open_auroc``, and, given the max probabilities of the (known)
  validation images, ``open_f_measure_val`` at ``open_threshold_val``, the threshold that
  keeps ``metrics.KEEP_KNOWN`` (95%) of them.
  """
  pred, max_prob, labels = p["pred"], p["max_prob"], p["label"]
  thresholds = (eval_cfg.many_threshold, eval_cfg.few_threshold)
  out = metrics.closed_set_summary(pred, labels, train_counts, *thresholds)
  top5 = metrics.closed_set_summary(
    metrics.top_k_predictions(p["top5"], labels), labels, train_counts, *thresholds
  )
  out |= {f"top5_{k}": top5[k] for k in ("many", "medium", "few", "all")}
  known = labels != -1
  out["ece"] = metrics.calibration(max_prob[known], pred[known] == labels[known])["ece"]
  out["nll"] = float(np.mean(p["nll"][known])) if known.any() else float("nan")
  if np.any(labels == -1):
    open_pred = metrics.reject_unconfident(pred, max_prob, eval_cfg.open_threshold)
    out["open_f_measure"] = metrics.open_set_f_measure(open_pred, labels)
    out["open_auroc"] = metrics.open_set_auroc(max_prob, labels)
    if val_max_prob is not None and len(val_max_prob):
      threshold = metrics.threshold_keeping(val_max_prob)
      open_pred = metrics.reject_unconfident(pred, max_prob, threshold)
      out["open_threshold_val"] = threshold
      out["open_f_measure_val"] = metrics.open_set_f_measure(open_pred, labels)
  return out


OPEN_THRESHOLDS = tuple(np.round(np.linspace(0.0, 1.0, 41), 3))


def open_set_curve(
  pred: np.ndarray, max_prob: np.ndarray, labels: np.ndarray, thresholds=OPEN_THRESHOLDS
) -> dict:
  """Open-set F-measure when rejecting (predicting -1) below each max-probability threshold."""
  f = metrics.f_measure_thresholds(pred, max_prob, labels, np.asarray(thresholds))
  return {"thresholds": list(thresholds), "f_measure": f.tolist()}


def evaluate_split(exp, state, source) -> dict:
  return summarize(predict(exp, state, source), exp.splits.train_counts, exp.config.eval)


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


def record(
  workdir: str,
  method: str,
  p: dict[str, np.ndarray],
  train_counts: np.ndarray,
  eval_cfg,
  val_max_prob: np.ndarray | None = None,
  extra: dict | None = None,
) -> dict:
  """Summarises one method's test predictions ``p`` (see ``summarize``) into results.json
  (with ``extra`` entries, e.g. the selected epoch), per_class.json and calibration.json
  (the reliability diagram's bins); ``val_max_prob``: its validation max probabilities, for
  ``open_f_measure_val``."""
  pred, max_prob, labels = p["pred"], p["max_prob"], p["label"]
  summary = summarize(p, train_counts, eval_cfg, val_max_prob) | (extra or {})
  acc, count = metrics.per_class_accuracy(pred, labels, len(train_counts))
  known = labels != -1
  reliability = metrics.calibration(max_prob[known], pred[known] == labels[known])
  if jax.process_index() == 0 and np.any(labels == -1):
    update_json(
      os.path.join(workdir, "open_set_curve.json"), method, open_set_curve(pred, max_prob, labels)
    )
  if jax.process_index() == 0:
    update_json(os.path.join(workdir, "results.json"), method, summary)
    update_json(os.path.join(workdir, "calibration.json"), method, reliability)
    update_json(
      os.path.join(workdir, "per_class.json"),
      method,
      {"accuracy": acc, "test_count": count, "train_count": train_counts},
    )
  shown = {k: round(float(v), 4) if isinstance(v, float) else v for k, v in summary.items()}
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


def write_meta(workdir: str, dataset: str, eval_cfg, class_names=None) -> None:
  """meta.json: the dataset, the shot thresholds and, where the dataset has them, the class
  names (for the report)."""
  if jax.process_index() == 0:
    entries = [
      ("dataset", dataset),
      ("many_threshold", eval_cfg.many_threshold),
      ("few_threshold", eval_cfg.few_threshold),
    ]
    if class_names is not None:
      entries.append(("class_names", list(class_names)))
    for key, value in entries:
      update_json(os.path.join(workdir, "meta.json"), key, value)


def evaluate_and_write(
  exp, state, workdir: str, method: str | None = None, extra: dict | None = None
) -> dict:
  """Evaluates on the test split; merges into results.json (with ``extra``),
  per_class.json, calibration.json and (for linear-type heads) weight_norms.json."""
  method = method or exp.config.method
  write_meta(workdir, exp.config.dataset.name, exp.config.eval, exp.splits.class_names)
  record_weight_norms(workdir, method, classifier_weights(state.params))
  p = predict(exp, state, exp.splits.test)
  val_max_prob = None
  if np.any(p["label"] == -1) and len(exp.splits.val):  # For open_f_measure_val.
    val_max_prob = predict(exp, state, exp.splits.val)["max_prob"]
  return record(workdir, method, p, exp.splits.train_counts, exp.config.eval, val_max_prob, extra)
