"""The evaluators, one registered class each: what a results row holds, and how it is computed.

An evaluator names the per-example arrays it needs of a model's test logits (``outputs``: a
name -> ``Output`` mapping), turns those arrays into entries of a results row
(``summarize``) and, optionally, into per-method results files (``records``:
``calibration.json``'s reliability bins, ...); its ``columns`` tell the report which of its
entries to show, its ``figures`` which sections its files draw (``Figure``). Its fields are
its options (``ece_bins``, ``keep_known``), set in ``config.eval``.
``config.eval.evaluators`` chooses them by name, in order (``Evaluation``, built once per
run): the eval step computes exactly the union of their outputs, on the device, and
``Evaluation.summarize`` runs them one after the other, each adding its entries to the row.
Adding one is one class here (or in any module that calls ``register``);
``tests/evaluate/test_evaluator_extension.py`` shows one.

Each output (``ltjax.evaluate.outputs``) is computed on the device in the eval step, and on
the host for the post-hoc methods' logits where its device function would change their
values (see there).

This module imports no JAX until an output is computed, so that ``ltjax report`` reads the
evaluators' columns without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ltjax.config import components
from ltjax.evaluate import metrics, posthoc_methods
from ltjax.evaluate.outputs import MAX_PROB, NLL, PRED, TOP5, Output  # An evaluator's API.

# ------------------------------------------------------------------------- evaluators


@dataclasses.dataclass(frozen=True)
class Column:
  """A column of the report's results table: the row's ``key`` under ``header``, in
  percent (one decimal) when ``percent``, else with three decimals; ``always``: shown even
  when no row has it (an empty shot group shows "–")."""

  key: str
  header: str
  percent: bool = False
  always: bool = False


@dataclasses.dataclass(frozen=True)
class Context:
  """What an evaluator knows of the run besides the test outputs.

  Attributes:
    train_counts: (K,) training images per class.
    many_threshold, few_threshold: the shot groups (``config.eval``).
    open_threshold: the paper's open-set threshold (``config.eval.open_threshold``).
    val_max_prob: the max probabilities of the (known) validation images, or None
      (evaluators with ``uses_val_max_prob`` receive them).
  """

  train_counts: np.ndarray
  many_threshold: float
  few_threshold: float
  open_threshold: float
  val_max_prob: np.ndarray | None = None

  @property
  def num_classes(self) -> int:
    return len(self.train_counts)


@dataclasses.dataclass(frozen=True)
class Figure:
  """A section of the report that one of an evaluator's files draws: its ``title``, the
  image's ``alt`` text and file name ``png``, the ``caption`` under it (the run's settings
  in braces: ``report_settings``) and ``draw``, "module:function" of the function that
  draws it, ``function(entries, path, out, context) -> the written image's path``:
  ``entries`` the file's ``{method: entry}``, ``path`` the file (for its messages), ``out``
  the image, ``context`` a ``ltjax.evaluate.report.plots.FigureContext``. The drawing
  module is imported only when a report is drawn (it needs matplotlib)."""

  file: str
  title: str
  alt: str
  png: str
  caption: str
  draw: str


class Evaluator:
  """An evaluator: its fields are its options; ``name`` is what ``config.eval.evaluators``
  lists.

  ``outputs``: the per-example arrays it needs (name -> ``Output``); an output that several
  evaluators need is the same ``Output`` object in each (``PRED``, ``MAX_PROB``).
  ``summarize(outputs, labels, context)``: its entries of the results row, in the order the
  row shows them. ``records``: its entries of per-method results files (``{file stem:
  this method's entry}``; every stem it may write is in ``files``). ``columns``, ``note``:
  how the report's table shows its entries and the sentence that says what they are;
  ``figures``: the report's sections its files draw.
  """

  name: ClassVar[str]
  columns: ClassVar[tuple[Column, ...]] = ()
  note: ClassVar[str] = ""
  files: ClassVar[tuple[str, ...]] = ()
  #: The report's sections drawn from its files, in order.
  figures: ClassVar[tuple[Figure, ...]] = ()
  #: Whether ``summarize`` reads ``context.val_max_prob`` (evaluation then runs the model
  #: over the validation split as well).
  uses_val_max_prob: ClassVar[bool] = False

  @property
  def outputs(self) -> Mapping[str, Output]:
    raise NotImplementedError

  def summarize(self, outputs: Mapping, labels: np.ndarray, context: Context) -> dict:
    raise NotImplementedError

  def records(self, outputs: Mapping, labels: np.ndarray, context: Context) -> dict:
    del outputs, labels, context
    return {}


#: Every evaluator, by name, in registration order (the order of ``DEFAULT``).
EVALUATORS: components.Registry = components.Registry("evaluator", "eval.evaluators", many=True)
#: Class decorator: ``cls`` becomes the evaluator of its name.
register = EVALUATORS.register
#: The evaluator class registered as ``name``; a ValueError listing the valid names otherwise.
get = EVALUATORS.lookup


def option_defaults() -> dict[str, Any]:
  """``{option: default}`` of every registered evaluator's options (its fields), which
  ``config.eval`` holds beside the evaluators' names."""
  return {k: v for cls in EVALUATORS.values() for k, v in components.options(cls).items()}


def chosen(eval_cfg) -> list[Evaluator]:
  """The evaluators ``eval_cfg.evaluators`` names, in its order, each built with its options
  from ``eval_cfg`` (``ece_bins``, ``keep_known``).

  Raises:
    ValueError: an unknown name or one listed twice (naming the valid ones), or an option
      set away from its default whose evaluators are not chosen (it would do nothing).
  """
  names = tuple(eval_cfg.evaluators)
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ValueError(f"--config.eval.evaluators lists {', '.join(twice)} more than once.")
  classes = [get(n) for n in names]
  block = {k: getattr(eval_cfg, k) for k in option_defaults() if hasattr(eval_cfg, k)}
  chosen_names = [(EVALUATORS, cls.name) for cls in classes] or [(EVALUATORS, None)]
  found = components.unread_option(block, chosen_names)
  if found is not None:
    option, value, default, owners = found
    raise components.UnreadOption(
      f"--config.eval.{option}={value!r} is an option of the "
      f"{' / '.join(cls.name for _, cls in owners)} evaluator, which --config.eval.evaluators "
      f"does not choose: leave it {default!r} or choose that evaluator.",
      f"eval.{option}",
      default,
    )
  return [components.build(cls, block) for cls in classes]


def outputs_of(evaluators: Sequence[Evaluator]) -> dict[str, Output]:
  """The union of the evaluators' outputs; two outputs of one name must be the same."""
  out: dict[str, Output] = {}
  for e in evaluators:
    for key, output in e.outputs.items():
      if out.setdefault(key, output) is not output and out[key] != output:
        raise ValueError(f"evaluator {e.name!r} defines output {key!r} anew; share the one.")
  return out


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """A run's evaluation, built once from ``config.eval`` (``from_config``): the evaluators
  it chooses, in order, and the settings every row is computed with. The eval step computes
  its ``outputs``; ``summarize`` and ``records`` run the evaluators over them, each adding
  its entries."""

  evaluators: tuple[Evaluator, ...]
  many_threshold: float
  few_threshold: float
  open_threshold: float
  #: The post-hoc methods ``ltjax evaluate --posthoc`` runs, in order (``eval.posthoc``).
  posthoc: tuple[type[posthoc_methods.PosthocMethod], ...] = ()

  @classmethod
  def from_config(cls, eval_cfg) -> Evaluation:
    """Raises ValueError for an unknown evaluator or post-hoc method, or one listed twice
    (``chosen``, ``posthoc_methods.chosen``): before any work."""
    e = eval_cfg
    return cls(
      tuple(chosen(e)),
      e.many_threshold,
      e.few_threshold,
      e.open_threshold,
      tuple(posthoc_methods.chosen(getattr(e, "posthoc", ()))),
    )

  @property
  def outputs(self) -> dict[str, Output]:
    """The per-example arrays the evaluators need (``outputs_of``)."""
    return outputs_of(self.evaluators)

  @property
  def device_functions(self) -> dict[str, Callable]:
    """``{output name: device function}``: what the eval step computes."""
    return {k: o.device for k, o in self.outputs.items()}

  @property
  def options(self) -> dict[str, Any]:
    """The chosen evaluators' options set away from their defaults (``computed_with``
    records them: a row's numbers mean something else with other ECE bins)."""
    defaults = option_defaults()
    return {
      k: v for e in self.evaluators for k, v in dataclasses.asdict(e).items() if v != defaults[k]
    }

  @property
  def uses_val_max_prob(self) -> bool:
    """An evaluator reads the validation images' max probabilities (the open-set threshold
    chosen on them): evaluation runs the model over the validation split too."""
    return any(e.uses_val_max_prob for e in self.evaluators)

  def context(self, train_counts, val_max_prob=None) -> Context:
    return Context(
      np.asarray(train_counts),
      self.many_threshold,
      self.few_threshold,
      self.open_threshold,
      val_max_prob,
    )

  def summarize(self, p: Mapping, train_counts, val_max_prob=None) -> dict:
    """One method's results row from its outputs ``p`` (with ``"label"``): each evaluator's
    entries in its order (shot-group accuracies, top-5, ECE and NLL, open-set F-measures and
    AUROC). ``val_max_prob``: the max probabilities of the (known) validation images, for
    the open-set threshold chosen on them."""
    context = self.context(train_counts, val_max_prob)
    out: dict = {}
    for evaluator in self.evaluators:
      out |= evaluator.summarize(p, p["label"], context)
    return out

  def records(self, p: Mapping, train_counts, val_max_prob=None) -> dict:
    """``{file stem: this method's entry}`` of the evaluators' own results files
    (per_class.json, calibration.json's reliability bins, open_set_curve.json)."""
    context = self.context(train_counts, val_max_prob)
    out: dict = {}
    for evaluator in self.evaluators:
      out |= evaluator.records(p, p["label"], context)
    return out


def _known(labels: np.ndarray) -> np.ndarray:
  return labels != -1


def _thresholds(context: Context) -> tuple[float, float]:
  return context.many_threshold, context.few_threshold


# -------------------------------------------------------------- the evaluators of ltjax


@register
@dataclasses.dataclass(frozen=True)
class ClosedSet(Evaluator):
  """Top-1 accuracy of the known test images per shot group, overall and as the mean of
  the per-class accuracies (``many``, ``medium``, ``few``, ``all``, ``mean_class``);
  ``per_class.json``: each class's accuracy, test and train count."""

  name: ClassVar[str] = "closed_set"
  columns: ClassVar[tuple[Column, ...]] = tuple(
    Column(key, header, percent=True, always=True)
    for key, header in (
      ("many", "Many"),
      ("medium", "Medium"),
      ("few", "Few"),
      ("all", "All"),
      ("mean_class", "Mean class"),
    )
  )
  files: ClassVar[tuple[str, ...]] = ("per_class",)
  figures: ClassVar[tuple[Figure, ...]] = (
    Figure(
      "per_class",
      "Per-class accuracy",
      "Per-class accuracy",
      "per_class_accuracy.png",
      (
        "Per-class test accuracy against training count: the per-class view behind the "
        "many/medium/few numbers of Kang et al. 2020 and Liu et al. 2019; re-balancing should lift "
        "the tail (left) at some cost to the head (right)."
      ),
      "ltjax.evaluate.report.plots:plot_per_class",
    ),
  )

  @property
  def outputs(self) -> Mapping[str, Output]:
    return {"pred": PRED}

  def summarize(self, outputs, labels, context) -> dict:
    return metrics.closed_set_summary(
      outputs["pred"], labels, context.train_counts, *_thresholds(context)
    )

  def records(self, outputs, labels, context) -> dict:
    acc, count = metrics.per_class_accuracy(outputs["pred"], labels, context.num_classes)
    return {
      "per_class": {"accuracy": acc, "test_count": count, "train_count": context.train_counts}
    }


@register
@dataclasses.dataclass(frozen=True)
class Top5(Evaluator):
  """Top-5 accuracy per shot group and overall (``top5_many`` ... ``top5_all``): the label
  among the 5 largest logits. Not reported with 5 classes or fewer (always 100%)."""

  name: ClassVar[str] = "top5"
  columns: ClassVar[tuple[Column, ...]] = (Column("top5_all", "Top-5", percent=True),)
  note: ClassVar[str] = (
    "Top-5: the label among the 5 largest scores, over the known test images as All."
  )

  @property
  def outputs(self) -> Mapping[str, Output]:
    return {"top5": TOP5}

  def summarize(self, outputs, labels, context) -> dict:
    if not metrics.has_top_k(context.num_classes):
      return {}
    hits = metrics.top_k_predictions(outputs["top5"], labels)
    top5 = metrics.closed_set_summary(hits, labels, context.train_counts, *_thresholds(context))
    return {f"top5_{k}": top5[k] for k in ("many", "medium", "few", "all")}


@register
@dataclasses.dataclass(frozen=True)
class Calibration(Evaluator):
  """The expected calibration error of the max softmax probability over ``ece_bins`` bins
  (``ece``; Guo et al. 2017) and the mean negative log-likelihood of the label (``nll``),
  over the known test images; ``calibration.json``: the reliability diagram's bins.

  Attributes:
    ece_bins: equal-width confidence bins of the ECE and the reliability diagram (Guo et al.
      2017: 15).
  """

  name: ClassVar[str] = "calibration"
  columns: ClassVar[tuple[Column, ...]] = (Column("ece", "ECE"), Column("nll", "NLL"))
  note: ClassVar[str] = (
    "ECE: expected calibration error of the max softmax probability, {ece_bins} bins; NLL: mean"
    " negative log-likelihood of the label (known test images)."
  )
  files: ClassVar[tuple[str, ...]] = ("calibration",)
  figures: ClassVar[tuple[Figure, ...]] = (
    Figure(
      "calibration",
      "Calibration",
      "Reliability diagram",
      "reliability.png",
      (
        "Reliability diagram: the accuracy of the test images in each of {ece_bins} equal-width "
        "bins of confidence against the bin's mean confidence (Guo et al. 2017); below the "
        "diagonal a method is over-confident. A marker's area is its bin's share of the images "
        "(bins of a few images are noise); ECE is the count-weighted mean gap (the table's "
        "column); empty bins are left out."
      ),
      "ltjax.evaluate.report.plots:plot_reliability",
    ),
  )
  #: Equal-width confidence bins (``config.eval.ece_bins``; Guo et al.: 15).
  ece_bins: int = metrics.ECE_BINS

  @property
  def outputs(self) -> Mapping[str, Output]:
    return {"pred": PRED, "max_prob": MAX_PROB, "nll": NLL}

  def _reliability(self, outputs, labels) -> dict:
    known = _known(labels)
    correct = outputs["pred"][known] == labels[known]
    return metrics.calibration(outputs["max_prob"][known], correct, self.ece_bins)

  def summarize(self, outputs, labels, context) -> dict:
    known = _known(labels)
    nll = float(np.mean(outputs["nll"][known])) if known.any() else float("nan")
    return {"ece": self._reliability(outputs, labels)["ece"], "nll": nll}

  def records(self, outputs, labels, context) -> dict:
    return {"calibration": self._reliability(outputs, labels)}


#: The thresholds of ``open_set_curve.json``.
OPEN_THRESHOLDS = tuple(np.round(np.linspace(0.0, 1.0, 41), 3))


def open_set_curve(
  pred: np.ndarray, max_prob: np.ndarray, labels: np.ndarray, thresholds=OPEN_THRESHOLDS
) -> dict:
  """Open-set F-measure when rejecting (predicting -1) below each max-probability threshold."""
  f = metrics.f_measure_thresholds(pred, max_prob, labels, np.asarray(thresholds))
  return {"thresholds": list(thresholds), "f_measure": f.tolist()}


@register
@dataclasses.dataclass(frozen=True)
class OpenSet(Evaluator):
  """When the test split has open-set images (label -1), rejecting below a max softmax
  probability: the F-measure at ``context.open_threshold`` (``open_f_measure``, the
  paper's 0.1), the threshold-free ``open_auroc`` and, given the validation images' max
  probabilities, the F-measure ``open_f_measure_val`` at ``open_threshold_val``, the
  threshold that keeps ``keep_known`` of them; ``open_set_curve.json``: F across thresholds.

  Attributes:
    keep_known: ``open_f_measure_val`` rejects below the max probability that keeps this
      fraction of the known validation images.
  """

  name: ClassVar[str] = "open_set"
  columns: ClassVar[tuple[Column, ...]] = (
    Column("open_f_measure", "Open F ({open_threshold:g})"),
    Column("open_f_measure_val", "Open F (val {keep_known:.0%})"),
    Column("open_auroc", "Open AUROC"),
  )
  note: ClassVar[str] = (
    "Open-set F-measure and AUROC are fractions in [0, 1]: F at the threshold"
    " {open_threshold:g} on the max softmax probability (the paper's 0.1), and at the"
    " threshold that keeps {keep_known:.0%} of the known"
    " validation images (it means something with few classes, where the max softmax"
    " cannot fall below 1/K)."
  )
  files: ClassVar[tuple[str, ...]] = ("open_set_curve",)
  figures: ClassVar[tuple[Figure, ...]] = (
    Figure(
      "open_set_curve",
      "Open-set F-measure",
      "Open-set F-measure",
      "open_set_f_measure.png",
      (
        "Open-set F-measure against the rejection threshold, the trade-off behind the single "
        "open-set F-measure reported by Liu et al. 2019 (OLTR). As the corrected OLTR reference "
        "defines it, a rejected known image counts as neither a true nor a false positive, so "
        "raising the threshold removes false positives (wrong known predictions, open images taken "
        "for known) faster than true ones and F rises; at threshold 1 every image is rejected, no "
        "true positive is left and F falls to 0. The dotted line is the threshold of the table's "
        "Open F column ({open_threshold:g}; the paper's is 0.1, which rejects nothing when the "
        "max softmax cannot fall below 1/K: fewer than 10 classes); the dots mark the thresholds "
        "that keep {keep_known:.0%} of the known validation images (open_f_measure_val)."
      ),
      "ltjax.evaluate.report.plots:plot_open_set",
    ),
  )
  uses_val_max_prob: ClassVar[bool] = True
  #: The fraction of the known validation images the validation-chosen threshold keeps
  #: (``config.eval.keep_known``).
  keep_known: float = metrics.KEEP_KNOWN

  @property
  def outputs(self) -> Mapping[str, Output]:
    return {"pred": PRED, "max_prob": MAX_PROB}

  def summarize(self, outputs, labels, context) -> dict:
    if not np.any(labels == -1):
      return {}
    pred, max_prob = outputs["pred"], outputs["max_prob"]
    open_pred = metrics.reject_unconfident(pred, max_prob, context.open_threshold)
    out = {
      "open_f_measure": metrics.open_set_f_measure(open_pred, labels),
      "open_auroc": metrics.open_set_auroc(max_prob, labels),
    }
    val = context.val_max_prob
    if val is not None and len(val):
      threshold = metrics.threshold_keeping(val, self.keep_known)
      open_pred = metrics.reject_unconfident(pred, max_prob, threshold)
      out["open_threshold_val"] = threshold
      out["open_f_measure_val"] = metrics.open_set_f_measure(open_pred, labels)
    return out

  def records(self, outputs, labels, context) -> dict:
    if not np.any(labels == -1):
      return {}
    return {"open_set_curve": open_set_curve(outputs["pred"], outputs["max_prob"], labels)}


def report_settings(results: Mapping) -> dict[str, Any]:
  """The settings the report's headers and notes name (``{open_threshold:g}``,
  ``{keep_known:.0%}``, ``{ece_bins}``): those a row of ``results`` was computed with
  (``computed_with``; rows of one results.json agree on them, ``runner.reconcile``), or the
  defaults where no row records them."""
  from ltjax.config.schema import base_config  # JAX-free.

  out = {"open_threshold": base_config().eval.open_threshold, **option_defaults()}
  for row in results.values():
    record = row.get("computed_with") if isinstance(row, Mapping) else None
    if isinstance(record, Mapping):
      return out | {k: record[k] for k in out if k in record}
  return out


#: ``config.eval.evaluators``' default: every evaluator of ltjax, in the order of the row.
DEFAULT = tuple(EVALUATORS)


def figures() -> tuple[Figure, ...]:
  """The report's sections the registered evaluators draw, in registration order."""
  return tuple(f for cls in EVALUATORS.values() for f in cls.figures)


def method_files() -> tuple[str, ...]:
  """The per-method results files the registered evaluators write (besides results.json)."""
  return tuple(f for cls in EVALUATORS.values() for f in cls.files)
