"""Long-tail and open-set metrics, computed host-side in numpy.

Conventions (Liu et al. 2019, "Large-Scale Long-Tailed Recognition in an Open World",
and Kang et al. 2020, "Decoupling Representation and Classifier"):

* Shot groups are defined by the training count n_j of class j: "many" n_j > 100,
  "few" n_j < 20, "medium" otherwise (both thresholds configurable; n_j equal to a
  threshold is medium).
* A group's accuracy is the mean per-class accuracy over the group's classes that have
  at least one test sample; a group without any such class is ``nan``.
* Open-set samples carry the label -1 and an open-set prediction is -1. Closed-set
  metrics ignore samples labelled -1.
* Open-set F-measure follows the corrected OLTR reference: TP = pred == label != -1;
  FP = pred != label, label != -1, pred != -1; FN = label == -1, pred != -1. A known
  sample rejected as open (pred == -1) counts as neither TP, FP nor FN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ltjax.data.longtail import check_train_counts, shot_groups

SHOT_GROUPS = ("many", "medium", "few")


# --------------------------------------------------------------------------- checks


def _int_array(x: Any, what: str) -> np.ndarray:
  """`x` as a 1-D int64 array; raises if it is not 1-D or not integer."""
  a = np.asarray(x)
  if a.ndim != 1:
    raise ValueError(f"{what} must be 1-D, got shape {a.shape}; pass one entry per sample.")
  if a.size and not (np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_):
    raise ValueError(f"{what} must be integers, got dtype {a.dtype}; cast class ids to int.")
  return a.astype(np.int64)


def _check_range(a: np.ndarray, what: str, num_classes: int | None, k_hint: str) -> None:
  """Raises unless every entry of `a` is in [-1, num_classes) (or >= -1 if None)."""
  bad_mask = a < -1
  if num_classes is not None:
    bad_mask |= a >= num_classes
  bad = np.flatnonzero(bad_mask)
  if bad.size:
    i = int(bad[0])
    upper = f"{num_classes}{k_hint}" if num_classes is not None else "inf"
    raise ValueError(
      f"{what}[{i}] = {int(a[i])} is outside [-1, {upper}) (-1 is the open-set class); "
      f"{bad.size} bad value(s) in all. Check the class count or the label mapping."
    )


def _check_preds_labels(
  preds: Any, labels: Any, num_classes: int | None, k_hint: str = ""
) -> tuple[np.ndarray, np.ndarray]:
  """Validated (preds, labels) int64 arrays of equal length with values in [-1, K)."""
  preds = _int_array(preds, "preds")
  labels = _int_array(labels, "labels")
  if len(preds) != len(labels):
    raise ValueError(
      f"preds has {len(preds)} entries but labels has {len(labels)}; "
      "pass one prediction per test sample."
    )
  _check_range(labels, "labels", num_classes, k_hint)
  _check_range(preds, "preds", num_classes, k_hint)
  return preds, labels


def _check_probs(probs: Any) -> np.ndarray:
  """(N, K) floating array with finite entries; integer input is cast to float64."""
  probs = np.asarray(probs)
  if probs.ndim != 2 or probs.shape[1] == 0:
    raise ValueError(
      f"probs must be (N, K) with K >= 1 (softmax probabilities per sample), got shape "
      f"{probs.shape}."
    )
  if not np.issubdtype(probs.dtype, np.floating):
    probs = probs.astype(np.float64)
  if not np.all(np.isfinite(probs)):
    i = int(np.flatnonzero(~np.all(np.isfinite(probs), axis=1))[0])
    raise ValueError(f"probs row {i} has a non-finite entry; check the model outputs for nan/inf.")
  return probs


def _check_threshold(threshold: Any, what: str = "threshold") -> None:
  if not np.all(np.isfinite(np.asarray(threshold, dtype=np.float64))):
    raise ValueError(f"{what} must be finite, got {threshold!r}.")


def _mean_or_nan(values: np.ndarray) -> float:
  return float(np.mean(values)) if values.size else float("nan")


# ------------------------------------------------------------------------ closed set


def per_class_accuracy(preds: Any, labels: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """Top-1 accuracy of each class over the known test samples.

  Samples labelled -1 (open set) are ignored. A prediction of -1 (rejected as open)
  on a known sample counts as wrong.

  Args:
    preds: (N,) predicted class ids in [-1, num_classes).
    labels: (N,) true class ids in [-1, num_classes).
    num_classes: K.

  Returns:
    (acc, count): acc is (K,) float64 with nan for classes without a test sample;
    count is (K,) int64, the number of test samples of each class.

  Raises:
    ValueError: on length mismatch or ids outside [-1, num_classes).
  """
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
  preds, labels = _check_preds_labels(preds, labels, num_classes)
  known = labels != -1
  count = np.bincount(labels[known], minlength=num_classes).astype(np.int64)
  hits = np.bincount(labels[known & (preds == labels)], minlength=num_classes)
  with np.errstate(invalid="ignore", divide="ignore"):
    acc = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
  return acc.astype(np.float64), count


def _per_class_from_counts(
  preds: Any, labels: Any, train_counts: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  counts = check_train_counts(train_counts)
  k = len(counts)
  preds, labels = _check_preds_labels(preds, labels, k, k_hint=" = len(train_counts)")
  acc, count = per_class_accuracy(preds, labels, k)
  return preds, labels, acc, count


def _group_means(
  acc: np.ndarray, count: np.ndarray, groups: dict[str, np.ndarray]
) -> dict[str, float]:
  has_test = count > 0
  return {name: _mean_or_nan(acc[groups[name] & has_test]) for name in SHOT_GROUPS}


def shot_accuracy(
  preds: Any,
  labels: Any,
  train_counts: Any,
  many_threshold: int = 100,
  few_threshold: int = 20,
) -> dict[str, float]:
  """Mean per-class accuracy of the many-, medium- and few-shot groups.

  Args:
    preds: (N,) predicted class ids in [-1, K).
    labels: (N,) true class ids in [-1, K); samples labelled -1 are ignored.
    train_counts: (K,) training images per class; K = len(train_counts).
    many_threshold: see `shot_groups`.
    few_threshold: see `shot_groups`.

  Returns:
    {"many", "medium", "few"} -> float in [0, 1], or nan when no class of the group
    has a test sample. Classes without a test sample are left out of the mean.

  Raises:
    ValueError: on malformed inputs (see `per_class_accuracy`, `shot_groups`).
  """
  groups = shot_groups(train_counts, many_threshold, few_threshold)
  _, _, acc, count = _per_class_from_counts(preds, labels, train_counts)
  return _group_means(acc, count, groups)


def closed_set_summary(
  preds: Any,
  labels: Any,
  train_counts: Any,
  many_threshold: int = 100,
  few_threshold: int = 20,
) -> dict[str, float]:
  """Shot-group accuracies plus overall top-1 and mean per-class accuracy.

  Only samples with label != -1 count.

  Args:
    preds: (N,) predicted class ids in [-1, K).
    labels: (N,) true class ids in [-1, K).
    train_counts: (K,) training images per class.
    many_threshold: see `shot_groups`.
    few_threshold: see `shot_groups`.

  Returns:
    {"many", "medium", "few", "all", "mean_class"}: "all" is top-1 accuracy over the
    known test samples, "mean_class" the mean of the per-class accuracies over classes
    with a test sample. Any entry without a sample to average over is nan.

  Raises:
    ValueError: on malformed inputs (see `per_class_accuracy`, `shot_groups`).
  """
  groups = shot_groups(train_counts, many_threshold, few_threshold)
  preds, labels, acc, count = _per_class_from_counts(preds, labels, train_counts)
  out = _group_means(acc, count, groups)
  known = labels != -1
  out["all"] = _mean_or_nan((preds[known] == labels[known]).astype(np.float64))
  out["mean_class"] = _mean_or_nan(acc[count > 0])
  return out


# ---------------------------------------------------- top-5 accuracy and calibration

TOP_K = 5
ECE_BINS = 15  # Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.


def has_top_k(num_classes: int, k: int = TOP_K) -> bool:
  """Whether top-k accuracy says anything: with K <= k classes every label is among the k
  largest scores, so it is 100% whatever the model, and not reported."""
  return num_classes > k


def top_k_predictions(hits: Any, labels: Any) -> np.ndarray:
  """Predictions that make ``closed_set_summary`` a top-k summary: the label where it is
  among the top k (``hits``), -1 (wrong) elsewhere."""
  labels = np.asarray(labels)
  return np.where(np.asarray(hits, bool), labels, -1)


def calibration(max_probs: Any, correct: Any, bins: int = ECE_BINS) -> dict[str, Any]:
  """Reliability of the max softmax probability: ``bins`` equal-width bins over (0, 1]
  (bin b holds confidences in (b/B, (b+1)/B], as Guo et al.), each with its sample count,
  mean confidence and accuracy; the expected calibration error
  ``ECE = sum_b n_b / N |acc_b - conf_b|``.

  Args:
    max_probs: (N,) confidences in [0, 1].
    correct: (N,) whether each prediction is right.
    bins: number of bins.

  Returns:
    {"ece", "edges" (bins + 1), "count", "confidence", "accuracy" (nan for empty bins)}.
  """
  conf = np.asarray(max_probs, np.float64)
  if not np.all(np.isfinite(conf)):
    raise ValueError("max_probs has a non-finite entry; check the model outputs for nan/inf.")
  correct = np.asarray(correct, bool)
  if conf.shape != correct.shape:
    raise ValueError(f"max_probs {conf.shape} and correct {correct.shape} differ in shape.")
  edges = np.linspace(0.0, 1.0, bins + 1)
  which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
  count = np.bincount(which, minlength=bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_conf = np.bincount(which, conf, bins) / count
    accuracy = np.bincount(which, correct.astype(np.float64), bins) / count
  gap = np.where(count > 0, np.abs(accuracy - mean_conf), 0.0)
  ece = float(np.sum(count * gap) / len(conf)) if len(conf) else float("nan")
  return {
    "ece": ece,
    "edges": edges,
    "count": count,
    "confidence": mean_conf,
    "accuracy": accuracy,
  }


# -------------------------------------------------------------------------- open set


def reject_unconfident(preds: Any, max_probs: Any, threshold: float = 0.1) -> np.ndarray:
  """``preds`` with -1 (open) where the max probability is below ``threshold``.

  The comparison is done in the dtype of ``max_probs`` (the threshold is cast to it), so a
  max probability equal to the threshold as written is kept as known.

  Args:
    preds: (N,) predicted class ids (the argmax).
    max_probs: (N,) max softmax probability of each prediction.
    threshold: rejection threshold; the OLTR reference uses 0.1.

  Returns:
    (N,) int64 predictions, -1 where rejected.

  Raises:
    ValueError: on length mismatch, non-integer ids, or a non-finite threshold.
  """
  preds = _int_array(preds, "preds")
  max_probs = np.asarray(max_probs)
  if max_probs.shape != preds.shape:
    raise ValueError(
      f"max_probs has shape {max_probs.shape} but preds {preds.shape}; pass one max "
      "probability per prediction."
    )
  _check_threshold(threshold)
  preds = preds.copy()
  preds[max_probs < np.asarray(threshold, dtype=max_probs.dtype)] = -1
  return preds


def open_set_predictions(probs: Any, threshold: float = 0.1) -> np.ndarray:
  """Argmax predictions, with -1 (open) where the max probability is below threshold.

  ``reject_unconfident`` of the argmax and max of ``probs`` (the comparison in the dtype of
  ``probs``). Ties in the argmax go to the lowest class id.

  Args:
    probs: (N, K) softmax probabilities (any score where higher means more confident).
    threshold: rejection threshold; the OLTR reference uses 0.1.

  Returns:
    (N,) int64 predictions in [-1, K).

  Raises:
    ValueError: if probs is not (N, K) or not finite, or threshold is not finite.
  """
  probs = _check_probs(probs)
  preds = np.argmax(probs, axis=1).astype(np.int64)
  return reject_unconfident(preds, np.max(probs, axis=1, initial=-np.inf), threshold)


#: Share of the known validation images that the validation-chosen open-set threshold keeps
#: (``open_threshold_val``): a fixed rule, since validation has no open images to tune on.
KEEP_KNOWN = 0.95


def threshold_keeping(max_probs: Any, fraction: float = KEEP_KNOWN) -> float:
  """The largest threshold that keeps (does not reject) ``fraction`` of the samples.

  With the max probabilities of N known validation images sorted ascending, p_(1) <= ... <=
  p_(N), it is p_(N - ceil(fraction N) + 1): at least ceil(fraction N) of them are
  >= it, so `reject_unconfident` keeps them. Unlike the paper's fixed 0.1, it means
  something whatever the number of classes (with K classes the max softmax is >= 1/K).

  Args:
    max_probs: (N,) max softmax probabilities of known images, N >= 1.
    fraction: in (0, 1].

  Raises:
    ValueError: no samples, a fraction outside (0, 1], or non-finite scores.
  """
  p = np.sort(np.asarray(max_probs, np.float64).reshape(-1))
  if not p.size:
    raise ValueError("threshold_keeping needs at least one max probability.")
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
  if not np.all(np.isfinite(p)):
    raise ValueError("max_probs has a non-finite entry; check the model outputs.")
  keep = math.ceil(fraction * p.size - 1e-9)
  return float(p[p.size - keep])


def _f_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
  """F = 2PR / (P + R), with P, R and F set to 0 where their denominator is 0."""
  tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
  precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
  recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
  denom = precision + recall
  return np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)


def open_set_f_measure(preds: Any, labels: Any) -> float:
  """Open-set F-measure (corrected OLTR reference).

  TP = pred == label and label != -1; FP = pred != label, label != -1 and pred != -1;
  FN = label == -1 and pred != -1. A known sample predicted -1 counts as none of them,
  nor does an open sample predicted -1. P = TP / (TP + FP), R = TP / (TP + FN) and
  F = 2PR / (P + R); each is defined as 0 when its denominator is 0 (so F is 0 when
  there is no TP at all, e.g. when every sample is open and rejected).

  Args:
    preds: (N,) predicted ids, -1 for "open"; any id >= -1 is accepted.
    labels: (N,) true ids, -1 for open-set samples.

  Returns:
    F in [0, 1].

  Raises:
    ValueError: on length mismatch, non-integer ids or ids below -1.
  """
  preds, labels = _check_preds_labels(preds, labels, None)
  known, pred_known = labels != -1, preds != -1
  tp = np.sum(known & (preds == labels))
  fp = np.sum(known & pred_known & (preds != labels))
  fn = np.sum(~known & pred_known)
  return float(_f_from_counts(tp, fp, fn))


def open_set_auroc(max_probs: Any, labels: Any) -> float:
  """AUROC of a confidence score separating known (positive) from open (negative).

  Mann-Whitney formula with average ranks for ties, so a tied (known, open) pair
  counts 1/2; equals sklearn.metrics.roc_auc_score(labels != -1, max_probs).

  Args:
    max_probs: (N,) score, higher meaning "known" (typically the max softmax prob).
    labels: (N,) true ids; -1 marks open-set (negative) samples.

  Returns:
    AUROC in [0, 1], or nan if there is no known or no open sample.

  Raises:
    ValueError: on length mismatch, non-1-D or nan scores, or labels below -1.
  """
  scores = np.asarray(max_probs)
  if scores.ndim != 1:
    raise ValueError(f"max_probs must be 1-D (one score per sample), got shape {scores.shape}.")
  if scores.size and not (np.issubdtype(scores.dtype, np.number) and scores.dtype != np.bool_):
    raise ValueError(f"max_probs must be numeric, got dtype {scores.dtype}.")
  labels = _int_array(labels, "labels")
  if len(scores) != len(labels):
    raise ValueError(
      f"max_probs has {len(scores)} entries but labels has {len(labels)}; "
      "pass one score per test sample."
    )
  _check_range(labels, "labels", None, "")
  if np.any(np.isnan(scores)):
    i = int(np.flatnonzero(np.isnan(scores))[0])
    raise ValueError(f"max_probs[{i}] is nan; check the model outputs.")
  positive = labels != -1
  n_pos = int(np.sum(positive))
  n_neg = len(labels) - n_pos
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  _, inverse, tie_counts = np.unique(scores, return_inverse=True, return_counts=True)
  # 1-based average rank of each distinct value: end of its run minus half the run.
  avg_rank = np.cumsum(tie_counts) - (tie_counts - 1) / 2.0
  rank_sum = float(np.sum(avg_rank[inverse.reshape(-1)][positive]))
  u = rank_sum - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


def f_measure_curve(probs: Any, labels: Any, thresholds: Any) -> np.ndarray:
  """Open-set F-measure at each rejection threshold.

  Equivalent to ``[open_set_f_measure(open_set_predictions(probs, t), labels) for t in
  thresholds]`` (thresholds are likewise cast to the dtype of probs), in
  O((N + T) log N); `f_measure_thresholds` of the argmax and max of ``probs``.

  Args:
    probs: (N, K) softmax probabilities.
    labels: (N,) true ids in [-1, K).
    thresholds: (T,) rejection thresholds (a scalar is treated as (1,)).

  Returns:
    (T,) float64 F-measures.

  Raises:
    ValueError: on malformed probs, labels or thresholds.
  """
  probs = _check_probs(probs)
  k = probs.shape[1]
  labels = _int_array(labels, "labels")
  if len(labels) != len(probs):
    raise ValueError(
      f"probs has {len(probs)} rows but labels has {len(labels)} entries; "
      "pass one label per sample."
    )
  _check_range(labels, "labels", k, " = probs.shape[1]")
  preds = np.argmax(probs, axis=1).astype(np.int64)
  return f_measure_thresholds(preds, np.max(probs, axis=1, initial=-np.inf), labels, thresholds)


def f_measure_thresholds(preds: Any, max_probs: Any, labels: Any, thresholds: Any) -> np.ndarray:
  """Open-set F-measure of ``reject_unconfident(preds, max_probs, t)`` at each threshold t.

  Equivalent to ``[open_set_f_measure(reject_unconfident(preds, max_probs, t), labels) for t
  in thresholds]`` (thresholds cast to the dtype of ``max_probs``), in O((N + T) log N).

  Args:
    preds: (N,) predicted class ids (the argmax).
    max_probs: (N,) max softmax probability of each prediction.
    labels: (N,) true ids, -1 for open-set samples.
    thresholds: (T,) rejection thresholds (a scalar is treated as (1,)).

  Returns:
    (T,) float64 F-measures.

  Raises:
    ValueError: on malformed inputs.
  """
  preds, labels = _check_preds_labels(preds, labels, None)
  max_probs = np.asarray(max_probs)
  if max_probs.shape != preds.shape:
    raise ValueError(
      f"max_probs has shape {max_probs.shape} but preds {preds.shape}; pass one max "
      "probability per prediction."
    )
  thresholds = np.atleast_1d(np.asarray(thresholds))
  if thresholds.ndim != 1:
    raise ValueError(f"thresholds must be 1-D, got shape {thresholds.shape}.")
  _check_threshold(thresholds, "thresholds")
  thresholds = thresholds.astype(max_probs.dtype)
  known = labels != -1

  def accepted(mask: np.ndarray) -> np.ndarray:
    """For each threshold, how many samples in `mask` have max prob >= threshold."""
    s = np.sort(max_probs[mask])
    return len(s) - np.searchsorted(s, thresholds, side="left")

  tp = accepted(known & (preds == labels))
  fp = accepted(known & (preds != labels))
  fn = accepted(~known)
  return _f_from_counts(tp, fp, fn)


# ---------------------------------------------------------------------------- export


def _jsonable(x: Any) -> Any:
  if isinstance(x, Mapping):
    return {_jsonable_key(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if x is None or isinstance(x, (str, bool)):
    return x
  if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
    a = np.asarray(x)
    return _jsonable(a.tolist()) if a.ndim else _jsonable(a.item())
  if isinstance(x, np.generic):
    return _jsonable(x.item())
  if isinstance(x, int):
    return int(x)
  if isinstance(x, float):
    return float(x) if math.isfinite(x) else None
  raise TypeError(
    f"to_jsonable cannot convert {type(x).__name__} ({x!r}); convert it to a number, "
    "string, list or dict first."
  )


def _jsonable_key(k: Any) -> Any:
  if isinstance(k, np.generic):
    k = k.item()
  if k is None or isinstance(k, (str, int, float, bool)):
    return k
  raise TypeError(f"to_jsonable cannot use a {type(k).__name__} ({k!r}) as a JSON key.")


def to_jsonable(d: Any) -> Any:
  """Recursively converts metrics to plain python for strict JSON.

  Numpy scalars become python scalars, arrays (and array-likes) become nested lists,
  tuples become lists, and non-finite floats (nan, which marks an empty shot group, and
  +-inf) become None, so ``json.dumps(out, allow_nan=False)`` succeeds.

  Args:
    d: usually a dict of metrics (e.g. from `closed_set_summary`); any nesting of
      mappings, lists, tuples, arrays and scalars is accepted.

  Returns:
    The converted value: a dict when given a mapping.

  Raises:
    TypeError: for a value or key that has no JSON equivalent.
  """
  return _jsonable(d)
