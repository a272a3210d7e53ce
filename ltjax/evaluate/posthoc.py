"""Post-hoc classifiers on extracted features: NCM and tau-normalisation (Kang et al.),
and post-hoc logit adjustment (Menon et al.).

All are selected on the validation split (never on test): NCM's feature type and
similarity, and each method's tau from a grid. Features are extracted once per split with
the jitted, sharded feature step and cached as ``features/<split>.npz`` in the work dir.
"""

from __future__ import annotations

import itertools
import json
import logging
import os

import jax
import numpy as np

from ltjax import config as config_lib
from ltjax import files, losses
from ltjax.data import identity
from ltjax.evaluate import metrics, runner
from ltjax.models import heads

log = logging.getLogger(__name__)

DEFAULT_TAUS = tuple(np.round(np.linspace(0.0, 2.0, 41), 3))


def extract(exp, state, source, cache: str | None = None) -> dict[str, np.ndarray]:
  """Features (N, D), logits (N, K) and labels (N,) of every record, in order.

  Uses the evaluation transform (no augmentation): on the training source this is the
  un-sampled "train_plain" set of the references. ``cache`` (an .npz path) is reused only
  if it was computed from the same checkpoint step and config (``config.fingerprint``) on
  the same records (``ltjax.data.identity``: a relabelled, added or removed image, or
  another dataset, is other data) and has one row per record; otherwise it is recomputed
  and rewritten, and the log says why.
  """
  key = json.dumps(
    {
      "step": int(jax.device_get(state.step)),
      "config": config_lib.fingerprint(exp.config),
      "data": identity.split_identity(source, exp.splits.class_names),
    }
  )
  cached = _read_cache(cache, key, len(source)) if cache else None
  if cached is not None:
    return cached
  out = runner.run_over(exp, state, source, exp.feature_step, ("features", "logits"))
  out["labels"] = np.asarray(source.labels)
  if cache and jax.process_index() == 0:
    try:
      os.makedirs(os.path.dirname(cache), exist_ok=True)
      with files.atomic_write(cache, "wb") as f:
        np.savez(f, **out, cache_key=np.asarray(key))
    except OSError as e:  # A read-only or full disk: the features are just not cached.
      log.warning("could not cache features in %s (%s)", cache, e.strerror or e)
  return out


def _read_cache(path: str, key: str, n: int) -> dict[str, np.ndarray] | None:
  """The cached features at ``path`` if they derive from ``key`` (step and config) and
  cover ``n`` records; None (with a log line when a cache is there) otherwise."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as f:
      data = dict(f)
  except (OSError, ValueError) as e:
    log.warning("feature cache %s is unreadable (%s): recomputing it", path, e)
    return None
  stored = str(data.pop("cache_key", ""))
  if stored != key or len(data.get("labels", ())) != n:
    was, now = json.loads(stored) if stored.startswith("{") else {}, json.loads(key)
    why = []
    if was.get("step") != now["step"]:
      why.append(f"of checkpoint step {was.get('step', '?')}, now {now['step']}")
    if was.get("config") != now["config"]:
      why.append("of another config")
    if was.get("data") != now["data"]:
      why.append(
        f"of other data ({identity.short(was.get('data'))}; now {identity.short(now['data'])})"
      )
    log.info("feature cache %s is %s: recomputing it", path, ", ".join(why) or "incomplete")
    return None
  return data


def _accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
  known = labels >= 0
  return float(np.mean(pred[known] == labels[known])) if known.any() else float("nan")


def ncm(train: dict, val: dict, test: dict, num_classes: int) -> dict:
  """Nearest class mean, feature type and similarity chosen by val accuracy.

  Returns:
    {"pred": test predictions, "logits": the NCM test logits (their softmax is what
    calibration, top-5 and NLL judge), "val_max_prob": max softmax on val, "feat_type",
    "distance", "val_accuracy": {combo: acc}}.
  """
  scores = {}
  for feat_type, distance in itertools.product(heads.NCM_FEATURE_TYPES, heads.NCM_DISTANCES):
    means, train_mean = heads.class_means(
      train["features"], train["labels"], num_classes, feat_type
    )
    logits = heads.ncm_logits(val["features"], means, train_mean, feat_type, distance)
    scores[(feat_type, distance)] = _accuracy(np.asarray(logits).argmax(-1), val["labels"])
  feat_type, distance = max(scores, key=scores.get)
  means, train_mean = heads.class_means(train["features"], train["labels"], num_classes, feat_type)
  logits = np.asarray(heads.ncm_logits(test["features"], means, train_mean, feat_type, distance))
  val_logits = heads.ncm_logits(val["features"], means, train_mean, feat_type, distance)
  log.info("NCM: %s/%s chosen on val (%.4f)", feat_type, distance, scores[feat_type, distance])
  return {
    "pred": logits.argmax(-1),
    "logits": logits,
    "val_max_prob": _softmax_max(np.asarray(val_logits)),
    "feat_type": feat_type,
    "distance": distance,
    "val_accuracy": {f"{f}/{d}": v for (f, d), v in scores.items()},
  }


def _predictions(method_out: dict, labels: np.ndarray) -> dict:
  """``runner.record``'s predictions of a post-hoc method: its own argmax (as selected) and
  the max probability, top-5 hit and NLL of its test logits."""
  p = metrics.from_logits(method_out["logits"], labels)
  return {
    **p,
    "pred": method_out["pred"],
    "max_prob": _softmax_max(method_out["logits"]),
    "label": labels,
  }


def _softmax_max(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(-1, keepdims=True)
  e = np.exp(z)
  return (e / e.sum(-1, keepdims=True)).max(-1)


def _sweep(taus, preds: dict, val: dict, test: dict, train_counts, eval_cfg) -> tuple[int, dict]:
  """(index of the best overall val accuracy, the curves {"taus", "val", "test"}) of a grid
  of predictions per split (``preds[split][i]`` at ``taus[i]``): tau-norm's and logit
  adjustment's selection, on val only (the test curve is for plots)."""
  curves: dict = {"taus": taus.tolist()}
  for split, data in (("val", val), ("test", test)):
    rows = [
      metrics.closed_set_summary(
        p, data["labels"], train_counts, eval_cfg.many_threshold, eval_cfg.few_threshold
      )
      for p in preds[split]
    ]
    curves[split] = {k: [r[k] for r in rows] for k in ("many", "medium", "few", "all")}
  return int(np.nanargmax(curves["val"]["all"])), curves


def tau_norm(
  weights: np.ndarray, val: dict, test: dict, train_counts: np.ndarray, eval_cfg, taus=DEFAULT_TAUS
) -> dict:
  """Sweeps tau on val (one matmul per split), picks the best overall val accuracy.

  Args:
    weights: (K, D) linear classifier weights of the joint model (bias dropped).
    val, test: extracted features/labels.
    train_counts: (K,) for the shot-group curves.
    eval_cfg: ``config.eval`` (shot thresholds).
    taus: the grid.

  Returns:
    {"tau": chosen, "pred": test predictions at tau, "logits", "val_max_prob", "curves":
    {"taus", "val": {many, medium, few, all}, "test": {...}}} — the test curve is for plots
    only.
  """
  taus = np.asarray(taus, np.float32)
  preds = {
    split: np.asarray(heads.tau_sweep_predictions(data["features"], weights, taus))
    for split, data in (("val", val), ("test", test))
  }
  best, curves = _sweep(taus, preds, val, test, train_counts, eval_cfg)
  tau = float(taus[best])
  log.info("tau-norm: tau=%.3f chosen on val (%.4f)", tau, curves["val"]["all"][best])
  logits = np.asarray(heads.tau_logits(test["features"], weights, tau))
  return {
    "tau": tau,
    "pred": preds["test"][best],
    "logits": logits,
    "val_max_prob": _softmax_max(np.asarray(heads.tau_logits(val["features"], weights, tau))),
    "curves": {**curves, "chosen_tau": tau},
  }


def logit_adjustment(
  val: dict, test: dict, train_counts: np.ndarray, eval_cfg, taus=DEFAULT_TAUS
) -> dict:
  """Post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment",
  ICLR 2021, Sec. 4, Eq. 9): predict ``argmax_y z_y - tau log pi_y``, pi the training class
  prior (``log(pi^tau + 1e-12)``, the official code's form), tau chosen on val from the
  grid by overall accuracy as tau-norm's (the paper reports tau = 1 and tunes it on a
  holdout). Costs no training: the model's own logits.

  Returns:
    {"tau", "pred", "logits", "val_max_prob", "curves": {"taus", "val": {...}, "test":
    {...}, "chosen_tau"}} (the test curve for plots only).
  """
  taus = np.asarray(taus, np.float32)
  adjust = [np.asarray(losses.log_prior(train_counts, float(t))) for t in taus]
  preds = {
    split: [(np.asarray(data["logits"], np.float32) - a).argmax(-1) for a in adjust]
    for split, data in (("val", val), ("test", test))
  }
  best, curves = _sweep(taus, preds, val, test, train_counts, eval_cfg)
  tau = float(taus[best])
  log.info("logit adjustment: tau=%.3f chosen on val (%.4f)", tau, curves["val"]["all"][best])
  return {
    "tau": tau,
    "pred": preds["test"][best],
    "logits": np.asarray(test["logits"], np.float32) - adjust[best],
    "val_max_prob": _softmax_max(np.asarray(val["logits"], np.float32) - adjust[best]),
    "curves": {**curves, "chosen_tau": tau},
  }


def evaluate_all(exp, state, workdir: str, features_dir: str) -> dict:
  """NCM, tau-norm and post-hoc logit adjustment on top of a joint model, recorded in
  ``workdir``'s results.

  Extracts (or reads cached) train/val/test features into ``features_dir``; writes the
  ``ncm``, ``tau_norm`` and ``logit_adjustment`` results, ``tau_sweep.json`` (with the
  logit-adjustment sweep under ``"logit_adjustment"``) and tau-norm's weight norms.

  Returns:
    {"ncm": summary, "tau_norm": summary, "logit_adjustment": summary}.
  """
  weights = runner.classifier_weights(state.params)
  if weights is None:
    raise ValueError(
      f"NCM/tau-norm need a joint model with a linear head (model.head={exp.config.model.head!r})."
    )
  counts, eval_cfg = exp.splits.train_counts, exp.config.eval
  if not len(exp.splits.val):
    raise ValueError(
      "NCM, tau-norm and logit adjustment are selected on the validation split, which is "
      "empty; set --config.dataset.val_per_class (or use a dataset with a val list)."
    )
  feats = {
    split: extract(
      exp, state, getattr(exp.splits, split), os.path.join(features_dir, f"{split}.npz")
    )
    for split in ("train", "val", "test")
  }
  labels = feats["test"]["labels"]
  # Computed from the tested model of the run's method: rows of another model go (runner).
  made = runner.computed_with(exp, int(jax.device_get(state.step)), exp.config.method)

  def record(method: str, out: dict) -> dict:
    p = _predictions(out, labels)
    return runner.record(workdir, method, p, counts, eval_cfg, out["val_max_prob"], provenance=made)

  out = {}
  out["ncm"] = record(
    "ncm", ncm(feats["train"], feats["val"], feats["test"], exp.splits.num_classes)
  )
  tau_out = tau_norm(weights, feats["val"], feats["test"], counts, eval_cfg)
  out["tau_norm"] = record("tau_norm", tau_out)
  la_out = logit_adjustment(feats["val"], feats["test"], counts, eval_cfg)
  out["logit_adjustment"] = record("logit_adjustment", la_out)
  if jax.process_index() == 0:
    sweeps = {**tau_out["curves"], "logit_adjustment": la_out["curves"]}
    runner.write_json(os.path.join(workdir, "tau_sweep.json"), sweeps)
  runner.record_weight_norms(workdir, "tau_norm", heads.tau_normalize(weights, tau_out["tau"]))
  return out
