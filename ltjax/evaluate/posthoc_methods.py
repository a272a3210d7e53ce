"""The post-hoc methods, one registered class each: NCM and tau-normalisation (Kang et al.
2020) and post-hoc logit adjustment (Menon et al. 2021).

A post-hoc method turns a trained model's extracted features and logits into test logits
and predictions, choosing its settings on the validation split (never on test). Its class
says how its row is shown (``label``, ``color``, ``rank``: it is its own
``ltjax.evaluate.methods`` entry) and holds its options as fields; ``register`` adds it to
``methods.METHODS``, and ``ltjax.evaluate.posthoc.evaluate_all`` runs those
``config.eval.posthoc`` chooses (by default every registered one, in registration order).
Adding a method is one class here (or anywhere that registers it).

This module imports no JAX until a method runs, so that ``ltjax report`` can read the
labels and colours of the post-hoc rows without it.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Any, ClassVar

import numpy as np

from ltjax.config import components
from ltjax.evaluate import methods, metrics
from ltjax.evaluate.outputs import softmax_max  # The methods' val max probabilities.

log = logging.getLogger(__name__)

DEFAULT_TAUS = tuple(np.round(np.linspace(0.0, 2.0, 41), 3))


@dataclasses.dataclass(frozen=True)
class PosthocInputs:
  """What a post-hoc method starts from.

  Attributes:
    train, val, test: each split's ``{"features" (N, D), "logits" (N, K), "labels" (N,)}``
      (``ltjax.evaluate.posthoc.extract``; train with the evaluation transform).
    weights: (K, D) linear classifier weights of the model (bias dropped, LWS scales
      folded in), None for other heads.
    train_counts: (K,) training images per class.
    eval_cfg: ``config.eval`` (the shot thresholds of the selection curves).
    text_features: the run's CLIP text features of its class names
      (``ltjax.models.text_features.TextFeatures``), None without.
    pretrained_backbone: the backbone is a CLIP image tower from ``model.pretrained``,
      untouched by training (a frozen backbone that did not come from an earlier run).
  """

  train: dict
  val: dict
  test: dict
  weights: np.ndarray | None
  train_counts: np.ndarray
  eval_cfg: Any
  text_features: Any = None
  pretrained_backbone: bool = False

  @property
  def num_classes(self) -> int:
    return len(self.train_counts)


class PosthocMethod:
  """A post-hoc method: ``run`` returns its test predictions and what the results keep.

  ``run(inputs) -> {"pred": (N,) test predictions, "logits": (N, K) test logits (their
  softmax is what calibration, top-5 and NLL judge), "val_max_prob": (N_val,) max softmax
  on val (the open-set threshold kept on val)}``, and optionally ``"curves"`` (its
  selection sweep, into ``tau_sweep.json``) and ``"weights"`` (its (K, D) classifier, into
  ``weight_norms.json``).
  """

  name: ClassVar[str]
  label: ClassVar[str]
  color: ClassVar[str | None] = None
  rank: ClassVar[float] = 100.0
  note: ClassVar[str] = ""
  #: Whether it needs the model's linear classifier (``PosthocInputs.weights``).
  needs_weights: ClassVar[bool] = False

  def run(self, inputs: PosthocInputs) -> dict:
    raise NotImplementedError

  def skip_reason(self, inputs: PosthocInputs) -> str | None:
    """Why this method has no row for ``inputs`` (logged), or None to run it."""
    del inputs
    return None


def register(cls: type[PosthocMethod]) -> type[PosthocMethod]:
  """Class decorator: ``cls`` becomes the ``methods.METHODS`` entry of its name."""
  methods.register(cls)
  return cls


def registered() -> list[type[PosthocMethod]]:
  """The post-hoc methods of ``methods.METHODS``, in registration order."""
  return [
    m for m in methods.METHODS.values() if isinstance(m, type) and issubclass(m, PosthocMethod)
  ]


def chosen(names) -> list[type[PosthocMethod]]:
  """The post-hoc methods ``config.eval.posthoc`` names, in its order; empty: every
  registered one, in registration order.

  Raises:
    ValueError: an unknown name or one listed twice, naming the valid ones.
  """
  names = tuple(names)
  if not names:
    return registered()
  by_name = {m.name: m for m in registered()}
  unknown = [n for n in names if n not in by_name]
  if unknown:
    raise ValueError(
      f"--config.eval.posthoc: no post-hoc method {unknown[0]!r}; valid: "
      f"{', '.join(by_name)} (empty: all of them)."
      + components.tuple_hint("eval.posthoc", unknown[0])
    )
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ValueError(f"--config.eval.posthoc lists {', '.join(twice)} more than once.")
  return [by_name[n] for n in names]


def _accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
  known = labels >= 0
  return float(np.mean(pred[known] == labels[known])) if known.any() else float("nan")


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


def ncm(train: dict, val: dict, test: dict, num_classes: int) -> dict:
  """Nearest class mean, feature type and similarity chosen by val accuracy.

  Returns:
    {"pred": test predictions, "logits": the NCM test logits, "val_max_prob": max softmax
    on val, "feat_type", "distance", "val_accuracy": {combo: acc}}.
  """
  from ltjax.models import heads

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
    "val_max_prob": softmax_max(np.asarray(val_logits)),
    "feat_type": feat_type,
    "distance": distance,
    "val_accuracy": {f"{f}/{d}": v for (f, d), v in scores.items()},
  }


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
    {"taus", "val": {many, medium, few, all}, "test": {...}, "chosen_tau"}, "weights": the
    tau-normalised classifier} — the test curve is for plots only.
  """
  from ltjax.models import heads

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
    "val_max_prob": softmax_max(np.asarray(heads.tau_logits(val["features"], weights, tau))),
    "curves": {**curves, "chosen_tau": tau},
    "weights": heads.tau_normalize(weights, tau),
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
  from ltjax import losses

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
    "val_max_prob": softmax_max(np.asarray(val["logits"], np.float32) - adjust[best]),
    "curves": {**curves, "chosen_tau": tau},
  }


@register
@dataclasses.dataclass(frozen=True)
class NCM(PosthocMethod):
  """Nearest class mean on the features (Kang et al. 2020, Sec. 4), its feature
  normalisation and similarity chosen on val."""

  name: ClassVar[str] = "ncm"
  label: ClassVar[str] = "NCM"
  color: ClassVar[str] = "tab:purple"
  rank: ClassVar[float] = 3

  def run(self, inputs: PosthocInputs) -> dict:
    return ncm(inputs.train, inputs.val, inputs.test, inputs.num_classes)


@register
@dataclasses.dataclass(frozen=True)
class TauNorm(PosthocMethod):
  """tau-normalised classifier weights (Kang et al. 2020, Sec. 4), tau chosen on val from
  ``taus``. Its sweep is ``tau_sweep.json``'s top level (``methods.TOP_LEVEL_SWEEP``)."""

  name: ClassVar[str] = "tau_norm"
  label: ClassVar[str] = "τ-norm"
  color: ClassVar[str] = "tab:orange"
  rank: ClassVar[float] = 5
  needs_weights: ClassVar[bool] = True
  taus: tuple[float, ...] = DEFAULT_TAUS

  def run(self, inputs: PosthocInputs) -> dict:
    return tau_norm(
      inputs.weights, inputs.val, inputs.test, inputs.train_counts, inputs.eval_cfg, self.taus
    )


@register
@dataclasses.dataclass(frozen=True)
class LogitAdjustment(PosthocMethod):
  """Post-hoc logit adjustment (Menon et al. 2021, Sec. 4): logits - tau log prior, tau
  chosen on val from ``taus``."""

  name: ClassVar[str] = "logit_adjustment"
  label: ClassVar[str] = "Logit adj. (post-hoc)"
  color: ClassVar[str] = "tab:pink"
  rank: ClassVar[float] = 6
  note: ClassVar[str] = "logits − τ log prior, Menon et al. 2021"
  taus: tuple[float, ...] = DEFAULT_TAUS

  def run(self, inputs: PosthocInputs) -> dict:
    return logit_adjustment(
      inputs.val, inputs.test, inputs.train_counts, inputs.eval_cfg, self.taus
    )


@register
@dataclasses.dataclass(frozen=True)
class ZeroShot(PosthocMethod):
  """Zero-shot CLIP (Radford et al. 2021): ``logit_scale * cos(image embedding, text
  embedding of "a photo of a {class}.")``, nothing trained or chosen: the row beside the
  trained ones that shows, per shot group, what training adds. Only on a backbone that is
  still the pretrained CLIP tower (a run whose backbone trained has other features)."""

  name: ClassVar[str] = "zero_shot"
  label: ClassVar[str] = "Zero-shot CLIP"
  color: ClassVar[str] = "tab:gray"
  rank: ClassVar[float] = -1
  note: ClassVar[str] = "CLIP text features of the class names, nothing trained"

  def skip_reason(self, inputs: PosthocInputs) -> str | None:
    if inputs.text_features is None:
      return "no text features (--config.model.text_features, 'ltjax clip-text')"
    if not inputs.pretrained_backbone:
      return (
        "the backbone is not a CLIP tower from model.pretrained, untouched (it trained, came "
        "from init_from, or is no CLIP tower): its features are not the CLIP tower's"
      )
    return None

  def run(self, inputs: PosthocInputs) -> dict:
    from ltjax.models import text_features

    tf = inputs.text_features
    logits = text_features.zero_shot_logits(tf, inputs.test["features"])
    val_logits = text_features.zero_shot_logits(tf, inputs.val["features"])
    return {
      "pred": logits.argmax(-1),
      "logits": logits,
      "val_max_prob": softmax_max(val_logits),
    }
