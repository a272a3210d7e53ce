"""Tests for ltjax.evaluate.metrics: exact values on hand-built predictions."""

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ltjax.evaluate import metrics as M

# A hand-built long-tailed setup: 7 classes, many = {0, 1}, medium = {2, 3, 4},
# few = {5, 6} under the default thresholds (> 100 many, < 20 few).
TRAIN_COUNTS = np.array([500, 200, 100, 50, 20, 19, 5])
# Test samples per class: 3, 2, 2, 1, 1, 1, 2 (12 known), plus 2 open samples.
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 6, -1, -1])


# ------------------------------------------------------------------------ shot groups


def test_shot_groups_default_split():
  g = M.shot_groups(TRAIN_COUNTS)
  assert set(g) == {"many", "medium", "few"}
  np.testing.assert_array_equal(np.flatnonzero(g["many"]), [0, 1])
  np.testing.assert_array_equal(np.flatnonzero(g["medium"]), [2, 3, 4])
  np.testing.assert_array_equal(np.flatnonzero(g["few"]), [5, 6])
  assert all(m.dtype == bool and m.shape == (7,) for m in g.values())


def test_shot_groups_threshold_boundaries():
  g = M.shot_groups([101, 100, 20, 19])
  np.testing.assert_array_equal(g["many"], [True, False, False, False])
  np.testing.assert_array_equal(g["medium"], [False, True, True, False])
  np.testing.assert_array_equal(g["few"], [False, False, False, True])


def test_shot_groups_custom_thresholds():
  g = M.shot_groups([11, 10, 5, 4], many_threshold=10, few_threshold=5)
  np.testing.assert_array_equal(g["many"], [True, False, False, False])
  np.testing.assert_array_equal(g["medium"], [False, True, True, False])
  np.testing.assert_array_equal(g["few"], [False, False, False, True])


# ------------------------------------------------------------------------ closed set


def test_per_class_accuracy_ignores_open_and_marks_missing_classes():
  preds = np.array([0, 1, 2, 2, -1, 0])
  labels = np.array([0, 0, 2, 2, 2, -1])
  acc, count = M.per_class_accuracy(preds, labels, num_classes=4)
  np.testing.assert_array_equal(count, [2, 0, 3, 0])
  assert count.dtype == np.int64
  np.testing.assert_allclose(acc[[0, 2]], [0.5, 2 / 3])
  assert np.isnan(acc[1]) and np.isnan(acc[3])


def test_always_class_zero_model():
  preds = np.zeros_like(LABELS)
  out = M.closed_set_summary(preds, LABELS, TRAIN_COUNTS)
  assert set(out) == {"many", "medium", "few", "all", "mean_class"}
  # Per-class accuracy: class 0 -> 1, every other class -> 0.
  assert out["many"] == pytest.approx(0.5)  # (1 + 0) / 2
  assert out["medium"] == 0.0
  assert out["few"] == 0.0
  assert out["all"] == pytest.approx(3 / 12)  # the two open samples do not count
  assert out["mean_class"] == pytest.approx(1 / 7)
  assert M.shot_accuracy(preds, LABELS, TRAIN_COUNTS) == {
    k: out[k] for k in ("many", "medium", "few")
  }


def test_mixed_predictions_and_class_without_test_sample():
  # Class 3 has no test sample: left out of the medium mean and of mean_class.
  labels = np.array([0, 0, 0, 1, 1, 2, 2, 4, 5, 6, 6, -1])
  preds = np.array([0, 0, 1, 1, 0, 2, -1, 4, 5, 6, 0, 3])
  out = M.closed_set_summary(preds, labels, TRAIN_COUNTS)
  # acc: c0 2/3, c1 1/2, c2 1/2, c3 nan, c4 1, c5 1, c6 1/2.
  assert out["many"] == pytest.approx((2 / 3 + 1 / 2) / 2)
  assert out["medium"] == pytest.approx((1 / 2 + 1) / 2)
  assert out["few"] == pytest.approx((1 + 1 / 2) / 2)
  assert out["all"] == pytest.approx(7 / 11)
  assert out["mean_class"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2 + 1 + 1 + 1 / 2) / 6)


def test_empty_shot_group_is_nan_and_null_in_json():
  train_counts = np.array([300, 150, 60, 20])  # no class has n_j < 20
  labels = np.array([0, 1, 2, 3])
  out = M.closed_set_summary(labels, labels, train_counts)
  assert math.isnan(out["few"])
  assert out["many"] == 1.0 and out["medium"] == 1.0 and out["all"] == 1.0
  js = M.to_jsonable(out)
  assert js["few"] is None
  json.dumps(js, allow_nan=False)  # strict JSON


def test_group_with_classes_but_no_test_samples_is_nan():
  # Few-shot classes exist (5, 6) but none has a test sample.
  labels = np.array([0, 1, 2])
  out = M.shot_accuracy(labels, labels, TRAIN_COUNTS)
  assert out["many"] == 1.0 and out["medium"] == 1.0 and math.isnan(out["few"])


def test_no_known_sample_gives_nan_overall():
  out = M.closed_set_summary([0, 1], [-1, -1], [5, 500])
  assert all(math.isnan(v) for v in out.values())


# -------------------------------------------------------------------------- open set


def test_open_set_predictions_thresholding_and_boundary():
  probs = np.array(
    [
      [0.5, 0.3, 0.2],  # confident -> 0
      [0.09, 0.05, 0.06],  # max 0.09 < 0.1 -> open
      [0.1, 0.05, 0.05],  # max == threshold: not below, kept as known
      [0.2, 0.4, 0.4],  # argmax tie -> lowest id
    ]
  )
  np.testing.assert_array_equal(M.open_set_predictions(probs), [0, -1, 0, 1])
  np.testing.assert_array_equal(M.open_set_predictions(probs, threshold=0.45), [0, -1, -1, -1])
  # float32 probs: equality with the threshold as written is also kept as known.
  np.testing.assert_array_equal(
    M.open_set_predictions(probs.astype(np.float32), threshold=0.4), [0, -1, -1, 1]
  )
  assert M.open_set_predictions(np.zeros((0, 3))).shape == (0,)


def test_open_set_f_measure_hand_example():
  labels = np.array([0, 1, 2, 0, 1, 2, -1, -1, -1])
  preds = np.array([0, 1, 2, 1, 0, -1, 2, -1, -1])
  # TP: samples 0-2 (3). FP: samples 3-4 (2; known, wrong, predicted known).
  # Sample 5 (known, rejected as open) is neither TP nor FP nor FN.
  # FN: sample 6 (open, predicted known) (1). Samples 7-8 (open, rejected) count nowhere.
  p, r = 3 / (3 + 2), 3 / (3 + 1)
  expected = 2 * p * r / (p + r)
  assert expected == pytest.approx(2 / 3)
  assert M.open_set_f_measure(preds, labels) == pytest.approx(expected)


def test_open_set_f_measure_rejected_known_counts_nowhere():
  labels = np.array([0, 1, -1])
  base = M.open_set_f_measure([0, 0, 1], labels)  # TP 1, FP 1, FN 1 -> F 0.5
  assert base == pytest.approx(0.5)
  # Adding known samples rejected as open changes neither P nor R.
  more = M.open_set_f_measure([0, 0, 1, -1, -1], [0, 1, -1, 2, 0])
  assert more == pytest.approx(base)


def test_open_set_f_measure_extremes():
  labels = np.array([0, 1, 2, -1, -1])
  assert M.open_set_f_measure(labels, labels) == 1.0
  assert M.open_set_f_measure([1, 2, 0, -1, -1], labels) == 0.0  # no TP
  assert M.open_set_f_measure([-1, -1], [-1, -1]) == 0.0  # all denominators 0
  assert M.open_set_f_measure([], []) == 0.0


def test_open_set_auroc_matches_sklearn_with_ties():
  rng = np.random.default_rng(0)
  for _ in range(5):
    n = 300
    scores = rng.integers(0, 6, size=n) / 5.0  # heavy ties
    labels = rng.integers(-1, 4, size=n)
    ours = M.open_set_auroc(scores, labels)
    assert ours == pytest.approx(roc_auc_score(labels != -1, scores), abs=1e-12)
  scores = rng.random(200).astype(np.float32)
  labels = rng.integers(-1, 2, size=200)
  assert M.open_set_auroc(scores, labels) == pytest.approx(
    roc_auc_score(labels != -1, scores), abs=1e-12
  )


def test_open_set_auroc_extremes():
  labels = np.array([0, 3, 1, -1, -1])
  assert M.open_set_auroc([0.9, 0.8, 0.7, 0.2, 0.1], labels) == 1.0
  assert M.open_set_auroc([0.1, 0.2, 0.3, 0.8, 0.9], labels) == 0.0
  assert M.open_set_auroc([0.5] * 5, labels) == 0.5
  assert math.isnan(M.open_set_auroc([0.2, 0.3], [0, 1]))
  assert math.isnan(M.open_set_auroc([0.2, 0.3], [-1, -1]))


def test_f_measure_curve_matches_pointwise():
  rng = np.random.default_rng(1)
  n, k = 200, 5
  logits = rng.normal(size=(n, k)) * 2
  probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  labels = rng.integers(-1, k, size=n)
  max_probs = probs.max(axis=1)
  # Include thresholds exactly equal to some max probs to exercise the boundary.
  thresholds = np.concatenate([np.linspace(0.0, 1.0, 21), max_probs[:10]])
  curve = M.f_measure_curve(probs, labels, thresholds)
  assert curve.shape == thresholds.shape and curve.dtype == np.float64
  expected = [M.open_set_f_measure(M.open_set_predictions(probs, t), labels) for t in thresholds]
  np.testing.assert_allclose(curve, expected, rtol=0, atol=1e-12)
  # float32 probs with python-float thresholds stay consistent too.
  p32 = probs.astype(np.float32)
  t32 = [float(t) for t in p32.max(axis=1)[:10]] + [0.1, 0.3, 0.7]
  expected32 = [M.open_set_f_measure(M.open_set_predictions(p32, t), labels) for t in t32]
  np.testing.assert_allclose(M.f_measure_curve(p32, labels, t32), expected32, atol=1e-12)
  assert M.f_measure_curve(probs, labels, 0.1).shape == (1,)


# ---------------------------------------------------------------------------- export


def test_to_jsonable_converts_numpy_and_nan():
  d = {
    "a": np.float32(0.5),
    "b": np.int64(3),
    "c": np.array([1.0, np.nan]),
    "d": {"e": np.bool_(True), "f": (np.float64("nan"), np.inf)},
    "g": float("nan"),
    "h": [np.arange(2)],
    "i": "text",
    "j": None,
  }
  out = M.to_jsonable(d)
  assert out == {
    "a": 0.5,
    "b": 3,
    "c": [1.0, None],
    "d": {"e": True, "f": [None, None]},
    "g": None,
    "h": [[0, 1]],
    "i": "text",
    "j": None,
  }
  assert type(out["b"]) is int and type(out["a"]) is float and type(out["d"]["e"]) is bool
  json.dumps(out, allow_nan=False)
  with pytest.raises(TypeError, match="object"):
    M.to_jsonable({"x": object()})


# ------------------------------------------------------------------------ validation


def test_length_mismatch_errors():
  with pytest.raises(ValueError, match="preds has 3 entries but labels has 2"):
    M.per_class_accuracy([0, 1, 0], [0, 1], 2)
  with pytest.raises(ValueError, match="preds has 1 entries but labels has 2"):
    M.open_set_f_measure([0], [0, 1])
  with pytest.raises(ValueError, match="max_probs has 2 entries but labels has 3"):
    M.open_set_auroc([0.1, 0.2], [0, 1, -1])
  with pytest.raises(ValueError, match="probs has 2 rows but labels has 3"):
    M.f_measure_curve(np.full((2, 3), 1 / 3), [0, 1, 2], [0.1])


def test_label_range_errors():
  with pytest.raises(ValueError, match=r"labels\[1\] = 3 is outside \[-1, 3\)"):
    M.per_class_accuracy([0, 0], [0, 3], 3)
  with pytest.raises(ValueError, match=r"labels\[0\] = -2 is outside"):
    M.open_set_f_measure([0], [-2])
  with pytest.raises(ValueError, match=r"preds\[0\] = 5 is outside"):
    M.per_class_accuracy([5], [0], 3)
  # K comes from train_counts: a label >= len(train_counts) is reported as such.
  with pytest.raises(ValueError, match=r"labels\[2\] = 3 is outside \[-1, 3 = len\(train_counts\)"):
    M.closed_set_summary([0, 1, 2], [0, 1, 3], [500, 50, 5])
  with pytest.raises(ValueError, match=r"= probs\.shape\[1\]"):
    M.f_measure_curve(np.full((1, 2), 0.5), [2], [0.1])
  with pytest.raises(ValueError, match="must be integers"):
    M.per_class_accuracy([0.0, 1.0], [0, 1], 2)
  with pytest.raises(ValueError, match="must be 1-D"):
    M.per_class_accuracy([[0]], [[0]], 2)


def test_other_validation_errors():
  with pytest.raises(ValueError, match=r"few_threshold \(200\) must be <= many_threshold \(100\)"):
    M.shot_groups([5, 50], many_threshold=100, few_threshold=200)
  with pytest.raises(ValueError, match=r"train_counts\[1\] = -1"):
    M.shot_groups([5, -1])
  with pytest.raises(ValueError, match="non-empty 1-D"):
    M.shot_groups([])
  with pytest.raises(ValueError, match="probs must be \\(N, K\\)"):
    M.open_set_predictions(np.ones(3))
  with pytest.raises(ValueError, match="non-finite"):
    M.open_set_predictions(np.array([[0.5, np.nan]]))
  with pytest.raises(ValueError, match="threshold must be finite"):
    M.open_set_predictions(np.ones((1, 2)), threshold=float("nan"))
  with pytest.raises(ValueError, match="max_probs\\[1\\] is nan"):
    M.open_set_auroc([0.1, np.nan], [0, -1])
  with pytest.raises(ValueError, match="num_classes must be >= 1"):
    M.per_class_accuracy([], [], 0)


def test_threshold_keeping_keeps_the_fraction_of_known_images():
  p = np.array([0.9, 0.2, 0.5, 0.35, 0.8, 0.6, 0.3, 0.7, 0.4, 0.95])
  t = M.threshold_keeping(p, 0.8)  # 8 of 10 kept: the 3rd smallest, 0.35.
  assert t == 0.35 and np.sum(p >= t) == 8
  assert M.threshold_keeping(p, 1.0) == 0.2
  assert M.threshold_keeping(np.linspace(0, 1, 20), 0.95) == pytest.approx(1 / 19)  # 19 kept.
  with pytest.raises(ValueError, match="fraction"):
    M.threshold_keeping(p, 0.0)
  with pytest.raises(ValueError, match="at least one"):
    M.threshold_keeping([], 0.5)


def test_summary_reports_the_f_measure_at_the_validation_threshold():
  from ltjax.evaluate import evaluators

  default = evaluators.DEFAULT

  class Eval:
    many_threshold, few_threshold, open_threshold = 100, 20, 0.1
    evaluators = default

  labels = np.array([0, 0, 1, 1, -1, -1])
  pred = np.array([0, 1, 1, 1, 0, 1])
  max_prob = np.array([0.9, 0.4, 0.8, 0.3, 0.35, 0.5])
  val_max_prob = np.linspace(0.3, 0.9, 20)  # 95% kept: threshold = the 2nd smallest.
  p = {"pred": pred, "max_prob": max_prob, "label": labels, "top5": labels >= 0}
  p["nll"] = np.zeros(labels.size)
  out = evaluators.Evaluation.from_config(Eval).summarize(p, np.array([200, 5]), val_max_prob)
  t = out["open_threshold_val"]
  assert t == pytest.approx(0.3 + 0.6 / 19)
  # At t: 0.3 (a known, correct) is rejected, 0.35 (open) kept -> TP 2, FP 1, FN 2.
  expected = M.open_set_f_measure(M.reject_unconfident(pred, max_prob, t), labels)
  assert out["open_f_measure_val"] == pytest.approx(expected)
  assert out["open_f_measure_val"] == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
  # At the paper's 0.1 nothing is rejected: TP 3, FP 1, FN 2.
  assert out["open_f_measure"] == pytest.approx(2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5))
