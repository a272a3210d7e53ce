"""A markdown report with figures from the results files of a work directory.

`write_report` reads what training and evaluation left in a work directory and writes
``report.md`` next to them, with PNG figures in the style of Kang et al. 2020
("Decoupling Representation and Classifier for Long-Tailed Recognition"):

* ``results.json`` (required): the results table.
* ``meta.json``: dataset name and the shot-group thresholds.
* ``weight_norms.json`` (+ train counts from ``per_class.json``): ``weight_norms.png``.
* ``tau_sweep.json``: the chosen tau and ``tau_sweep.png``.
* ``per_class.json``: ``per_class_accuracy.png``.
* ``open_set_curve.json``: ``open_set_f_measure.png``.
* ``calibration.json``: ``reliability.png``, the reliability diagram.

Every file but ``results.json`` is optional: a missing one only drops its section.
A file that exists but cannot be read as expected raises a ValueError naming it.
Host-side only (numpy and matplotlib with the Agg backend).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ltjax.files import read_json, write_json, write_text

METHOD_ORDER = (
  "joint",
  "logit_adjusted",
  "ldam_drw",
  "ncm",
  "crt",
  "tau_norm",
  "logit_adjustment",
  "lws",
  "oltr",
)
METHOD_LABELS = {
  "joint": "Joint",
  "logit_adjusted": "Logit-adjusted loss",
  "ldam_drw": "LDAM-DRW",
  "ncm": "NCM",
  "crt": "cRT",
  "tau_norm": "τ-norm",
  "logit_adjustment": "Logit adj. (post-hoc)",
  "lws": "LWS",
  "oltr": "OLTR",
}
# (results key, column header, is an accuracy shown in percent).
ACCURACY_COLUMNS = (
  ("many", "Many", True),
  ("medium", "Medium", True),
  ("few", "Few", True),
  ("all", "All", True),
  ("mean_class", "Mean class", True),
)
# Shown when some method has them (results of ltjax before top-5 and calibration lack them).
CALIBRATION_COLUMNS = (
  ("top5_all", "Top-5", True),
  ("ece", "ECE", False),
  ("nll", "NLL", False),
)
OPEN_SET_COLUMNS = (
  ("open_f_measure", "Open F (0.1)", False),
  ("open_f_measure_val", "Open F (val 95%)", False),
  ("open_auroc", "Open AUROC", False),
)
GROUPS = ("many", "medium", "few", "all")
MISSING = "–"  # En dash: an empty shot group or a metric a method does not have.
DPI = 120

_GROUP_COLORS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:green", "all": "black"}
_METHOD_COLORS = {
  "joint": "tab:blue",
  "logit_adjusted": "tab:olive",
  "ldam_drw": "tab:cyan",
  "ncm": "tab:purple",
  "crt": "tab:green",
  "tau_norm": "tab:orange",
  "logit_adjustment": "tab:pink",
  "lws": "tab:brown",
  "oltr": "tab:red",
}
_OTHER_COLORS = ("tab:gray", "gold", "darkblue", "lime")
# Line styles, so that methods with equal curves (NCM and tau-norm often coincide) stay
# visible under each other: canonical methods first, then the rest in turn.
_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
# And a marker per method, so that a method drawn under another stays identifiable.
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h")
#: Fewer classes than this: no moving average (it would average most of the classes).
MIN_CLASSES_FOR_AVERAGE = 10


# ---------------------------------------------------------------------------- helpers


def ordered_methods(methods) -> list[str]:
  """Canonical methods first (``METHOD_ORDER``), then the rest as given."""
  methods = list(methods)
  return [m for m in METHOD_ORDER if m in methods] + [m for m in methods if m not in METHOD_ORDER]


def _label(method: str) -> str:
  return METHOD_LABELS.get(method, method)


def _colors(methods) -> dict[str, str]:
  others = iter(_OTHER_COLORS * (len(methods) // len(_OTHER_COLORS) + 1))
  return {m: _METHOD_COLORS[m] if m in _METHOD_COLORS else next(others) for m in methods}


def _styles(methods) -> dict[str, Any]:
  return {m: _STYLES[i % len(_STYLES)] for i, m in enumerate(methods)}


def _is_missing(v: Any) -> bool:
  return v is None or (isinstance(v, float) and math.isnan(v))


def _format_cell(value: Any, percent: bool, where: str) -> str:
  if _is_missing(value):
    return MISSING
  if isinstance(value, bool) or not isinstance(value, int | float | np.number):
    raise ValueError(f"{where} must be a number or null, got {value!r}.")
  return f"{100 * float(value):.1f}" if percent else f"{float(value):.3f}"


def _escape(text: str) -> str:
  return str(text).replace("|", "\\|")


def _read_json(path: str) -> Any:
  """Parsed JSON of ``path``, None when it does not exist."""
  if not os.path.exists(path):
    return None
  return read_json(path, "rewrite or delete it")


def _mapping(obj: Any, path: str) -> Mapping:
  if not isinstance(obj, Mapping):
    raise ValueError(f"{path} must hold a JSON object, got {type(obj).__name__}.")
  return obj


def _floats(values: Any, path: str, what: str, size: int | None = None) -> np.ndarray:
  """A 1-D float array from a JSON list, null -> nan; a ValueError naming the file otherwise."""
  if not isinstance(values, list | tuple):
    raise ValueError(f"{path}: {what} must be a list of numbers, got {type(values).__name__}.")
  try:
    out = np.array([np.nan if v is None else float(v) for v in values], np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path}: {what} must be a list of numbers or nulls ({e}).") from e
  if size is not None and out.size != size:
    raise ValueError(f"{path}: {what} has {out.size} entries, expected {size}.")
  return out


def _pyplot():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _save(fig, path: str) -> None:
  plt = _pyplot()
  try:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
  finally:
    plt.close(fig)


def _thresholds(meta: Mapping | None) -> tuple[float, float] | None:
  """(many_threshold, few_threshold) from meta.json when both are numbers."""
  if not meta:
    return None
  many, few = meta.get("many_threshold"), meta.get("few_threshold")
  numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (many, few))
  return (float(many), float(few)) if numeric else None


def _train_counts(per_class: Mapping | None, path: str) -> np.ndarray | None:
  """Per-class training counts (class-id order) from the first method of per_class.json."""
  for entry in (per_class or {}).values():
    if isinstance(entry, Mapping) and "train_count" in entry:
      return _floats(entry["train_count"], path, "train_count")
  return None


# ---------------------------------------------------------------------------- table


def format_results_table(results: Mapping[str, Mapping[str, Any]]) -> str:
  """The markdown table of a results.json dict.

  Rows are methods in the canonical order (joint, ncm, crt, tau_norm, lws, oltr, then
  any others in the given order). Accuracy columns (many, medium, few, all, mean class)
  are in percent with one decimal; the open-set columns (F-measure, AUROC), shown only
  when some method has them, are plain numbers with three decimals. A null, nan or
  absent value renders as "–".

  Args:
    results: ``{method: {"many": float | None, ..., "mean_class": float, ...}}``.

  Returns:
    The table, one line per row, without a trailing newline.

  Raises:
    ValueError: a method entry is not a mapping or a value is not a number or null.
  """
  columns = list(ACCURACY_COLUMNS)
  optional = (*CALIBRATION_COLUMNS, *OPEN_SET_COLUMNS)
  columns += [c for c in optional if any(c[0] in r for r in results.values())]
  lines = [
    "| Method | " + " | ".join(header for _, header, _ in columns) + " |",
    "| :--- | " + " | ".join("---:" for _ in columns) + " |",
  ]
  for method in ordered_methods(results):
    row = results[method]
    if not isinstance(row, Mapping):
      raise ValueError(f"results[{method!r}] must be a mapping of metrics, got {row!r}.")
    cells = [
      _format_cell(row.get(key), percent, f"results[{method!r}][{key!r}]")
      for key, _, percent in columns
    ]
    lines.append(f"| {_escape(method)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


# ---------------------------------------------------------------------------- figures


def _group_boundaries(ax, positions: list[tuple[float, str, str]]) -> None:
  """Dashed vertical lines, each labelled at the bottom; side "left"/"right" of the line."""
  for x, label, side in positions:
    ax.axvline(x, color="gray", linestyle="--", linewidth=1)
    ax.annotate(
      label,
      (x, 0.0),
      xycoords=("data", "axes fraction"),
      xytext=(-3 if side == "left" else 3, 4),
      textcoords="offset points",
      ha="right" if side == "left" else "left",
      fontsize=8,
      color="dimgray",
    )


def _markers(methods) -> dict[str, str]:
  return {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(methods)}


def _count_axis(ax, counts: np.ndarray, what: str) -> None:
  """A class-size axis: log scale with plain labels (10, 100, 1000) over more than a
  decade; linear (plain numbers) over a smaller range, where a log axis would label
  "6x10^0"."""
  from matplotlib.ticker import NullFormatter, ScalarFormatter

  low, high = float(np.min(counts)), float(np.max(counts))
  if low > 0 and high / low > 10:
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"{what} (log scale)")
  else:
    ax.set_xlabel(what)


def _legend_outside(ax) -> None:
  ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)


def _moving_average(y: np.ndarray, window: int) -> np.ndarray:
  """Centred moving average; the window shrinks at the ends instead of padding."""
  if window <= 1:
    return y
  c = np.concatenate([[0.0], np.cumsum(y)])
  i = np.arange(y.size)
  lo = np.maximum(i - window // 2, 0)
  hi = np.minimum(i - window // 2 + window, y.size)
  return (c[hi] - c[lo]) / (hi - lo)


def _plot_weight_norms(
  norms: Mapping, path: str, out: str, counts: np.ndarray | None, thresholds
) -> str:
  plt = _pyplot()
  methods = ordered_methods(norms)
  arrays = {m: _floats(norms[m], path, f"weight norms of {m!r}") for m in methods}
  sizes = {a.size for a in arrays.values()}
  if len(sizes) != 1:
    raise ValueError(f"{path}: methods have different numbers of classes {sorted(sizes)}.")
  (k,) = sizes
  sort_by_count = counts is not None and counts.size == k and not np.isnan(counts).any()
  order = np.argsort(-counts, kind="stable") if sort_by_count else np.arange(k)
  empty = 0
  if sort_by_count:  # Classes without training images say nothing of re-balancing: out.
    empty = int(np.sum(counts == 0))
    order = order[counts[order] > 0]
  colors, markers = _colors(methods), _markers(methods)
  fig, ax = plt.subplots(figsize=(8.5, 4.5))
  rank = np.arange(1, order.size + 1)
  for m in methods:
    a = arrays[m][order]
    top = np.nanmax(a) if np.isfinite(a).any() else np.nan
    a = a / top if np.isfinite(top) and top > 0 else a
    ax.plot(
      rank,
      a,
      color=colors[m],
      label=_label(m),
      linewidth=1.5,
      marker=markers[m],
      markersize=4,
      markevery=max(1, order.size // 25),
    )
  k = order.size
  if sort_by_count and thresholds is not None:
    sorted_counts = counts[order]
    n_many = int(np.sum(sorted_counts > thresholds[0]))
    n_not_few = int(np.sum(sorted_counts >= thresholds[1]))
    _group_boundaries(
      ax,
      [
        (n + 0.5, name, "right")
        for n, name in ((n_many, "many | medium"), (n_not_few, "medium | few"))
        if 0 < n < k
      ],
    )
  ax.set_xlabel(
    "Class rank by training count (most frequent first)" if sort_by_count else "Class id"
  )
  from matplotlib.ticker import MaxNLocator

  ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # Ranks: 1, 2, 3, not 1.5.
  ax.set_ylabel("Weight norm / method's max norm")
  left_out = f"\n({empty} classes without training images left out)" if empty else ""
  ax.set_title(f"Per-class classifier weight norms{left_out}")
  ax.set_ylim(bottom=0)
  ax.grid(alpha=0.3)
  _legend_outside(ax)
  _save(fig, out)
  return out


def _plot_tau_sweep(sweep: Mapping, path: str, out: str) -> tuple[str, float | None]:
  plt = _pyplot()
  if "taus" not in sweep:
    raise ValueError(f"{path} has no 'taus' list.")
  taus = _floats(sweep["taus"], path, "taus")
  chosen = sweep.get("chosen_tau")
  if chosen is not None and (isinstance(chosen, bool) or not isinstance(chosen, int | float)):
    raise ValueError(f"{path}: chosen_tau must be a number, got {chosen!r}.")
  fig, ax = plt.subplots(figsize=(8.5, 4.5))
  plotted = False
  for split, style in (("val", "-"), ("test", "--")):
    curves = sweep.get(split)
    if curves is None:
      continue
    curves = _mapping(curves, f"{path} ({split!r})")
    for g in GROUPS:
      if g not in curves:
        continue
      acc = _floats(curves[g], path, f"{split}.{g}", size=taus.size)
      if np.isnan(acc).all():
        continue
      ax.plot(taus, 100 * acc, style, color=_GROUP_COLORS[g], label=f"{g} ({split})")
      plotted = True
  if not plotted:
    plt.close(fig)
    raise ValueError(f"{path} has no accuracy curves under 'val' or 'test'.")
  if chosen is not None:
    ax.axvline(chosen, color="red", linestyle=":", linewidth=1.5, label=f"chosen τ = {chosen:g}")
  ax.set_xlabel("τ (weight normalisation exponent)")
  ax.set_ylabel("Accuracy (%)")
  ax.set_title("τ-normalised classifier: accuracy against τ\n(val solid, test dashed)")
  ax.grid(alpha=0.3)
  _legend_outside(ax)
  _save(fig, out)
  return out, chosen


def _plot_per_class(per_class: Mapping, path: str, out: str, thresholds) -> str:
  plt = _pyplot()
  methods = ordered_methods(per_class)
  colors, styles, markers = _colors(methods), _styles(methods), _markers(methods)
  fig, ax = plt.subplots(figsize=(8.5, 4.5))
  plotted, window, all_x = False, 1, []
  for i, m in enumerate(methods):
    entry = _mapping(per_class[m], f"{path} ({m!r})")
    if "accuracy" not in entry or "train_count" not in entry:
      raise ValueError(f"{path}: {m!r} needs 'accuracy' and 'train_count' lists.")
    counts = _floats(entry["train_count"], path, f"{m}.train_count")
    acc = _floats(entry["accuracy"], path, f"{m}.accuracy", size=counts.size)
    keep = ~np.isnan(acc) & (counts > 0)  # No test sample, or not placeable on a log axis.
    order = np.argsort(counts[keep], kind="stable")
    x, y = counts[keep][order], 100 * acc[keep][order]
    if not x.size:
      continue
    # Points are classes; the line is a moving average over ~10% of the classes (>= 3),
    # or, with fewer than MIN_CLASSES_FOR_AVERAGE classes, joins the classes themselves.
    window = 1 if x.size < MIN_CLASSES_FOR_AVERAGE else min(x.size, max(3, x.size // 10))
    # Each method's points slightly apart horizontally (x 1.02^i), with its own marker, so
    # that equal accuracies of several methods on one class stay visible.
    jitter = (1.02 if window > 1 else 1.04) ** (i - (len(methods) - 1) / 2)
    all_x.append(x)
    if window > 1:
      ax.scatter(x * jitter, y, color=colors[m], s=18, alpha=0.7, linewidths=0, marker=markers[m])
    ax.plot(
      x if window > 1 else x * jitter,
      _moving_average(y, window),
      color=colors[m],
      linestyle=styles[m],
      label=_label(m),
      linewidth=2.0 if window > 1 else 1.4,
      marker=None if window > 1 else markers[m],
      markersize=6,
      alpha=1.0 if window > 1 else 0.85,
    )
    plotted = True
  if thresholds is not None and plotted:
    _group_boundaries(ax, [(thresholds[0], "many →", "right"), (thresholds[1], "← few", "left")])
  if all_x:
    _count_axis(ax, np.concatenate(all_x), "Training images of the class")
  ax.set_ylabel("Test accuracy of the class (%)")
  lines = "lines join the classes" if window == 1 else f"lines: moving average over {window}"
  ax.set_title(f"Per-class test accuracy against class size\n(points: classes; {lines})")
  ax.grid(alpha=0.3, which="both")
  if plotted:
    _legend_outside(ax)
  _save(fig, out)
  return out


def _plot_open_set(curves: Mapping, path: str, out: str, results: Mapping | None = None) -> str:
  plt = _pyplot()
  methods = ordered_methods(curves)
  colors, styles, markers = _colors(methods), _styles(methods), _markers(methods)
  fig, ax = plt.subplots(figsize=(8.5, 4.5))
  shown = []  # F below the last threshold (at 1 every image is rejected: F = 0).
  for m in methods:
    entry = _mapping(curves[m], f"{path} ({m!r})")
    if "thresholds" not in entry or "f_measure" not in entry:
      raise ValueError(f"{path}: {m!r} needs 'thresholds' and 'f_measure' lists.")
    t = _floats(entry["thresholds"], path, f"{m}.thresholds")
    f = _floats(entry["f_measure"], path, f"{m}.f_measure", size=t.size)
    shown.append(f[(t < 1.0) & np.isfinite(f)])
    ax.plot(
      t,
      f,
      color=colors[m],
      linestyle=styles[m],
      label=_label(m),
      linewidth=1.8,
      marker=markers[m],
      markersize=4,
      markevery=4,
    )
    chosen = (results or {}).get(m, {})
    if isinstance(chosen, Mapping) and not _is_missing(chosen.get("open_threshold_val")):
      # The threshold chosen on validation (keeps 95% of known val images), on the curve.
      tv = float(chosen["open_threshold_val"])
      ax.plot([tv], [np.interp(tv, t, f)], "o", color=colors[m], markersize=6)
  ax.axvline(0.1, color="gray", linestyle=":", linewidth=1)
  ax.annotate(
    "paper: 0.1",
    (0.1, 0.02),
    xycoords=("data", "axes fraction"),
    xytext=(3, 0),
    textcoords="offset points",
    fontsize=8,
    color="dimgray",
  )
  ax.set_xlabel("Open-set threshold on the max softmax probability (reject below it)")
  values = np.concatenate(shown) if shown else np.zeros(0)
  low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
  if high - low < 0.5:  # Zoomed to the curves (the drop to 0 at threshold 1 leaves the axis).
    pad = max(0.02, 0.08 * (high - low))
    ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
    ax.set_ylabel(f"Open-set F-measure\n(axis zoomed: {low:.2f}–{high:.2f} below threshold 1)")
  else:
    ax.set_ylabel("Open-set F-measure")
  ax.set_title(
    "Open-set F-measure against the rejection threshold\n(dots: each method's threshold "
    "chosen on validation; at 1 every image is rejected: F = 0)"
  )
  ax.set_xlim(0, 1)
  ax.grid(alpha=0.3)
  if methods:
    _legend_outside(ax)
  _save(fig, out)
  return out


def _plot_reliability(calibration: Mapping, path: str, out: str) -> str:
  """Accuracy against confidence per bin (Guo et al. 2017), one line with its own marker per
  method, bins without images left out; the diagonal is perfect calibration."""
  plt = _pyplot()
  methods = ordered_methods(calibration)
  colors = _colors(methods)
  fig, ax = plt.subplots(figsize=(8.5, 4.5))
  ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1, label="calibrated")
  for i, m in enumerate(methods):
    entry = _mapping(calibration[m], f"{path} ({m!r})")
    if not {"confidence", "accuracy", "count"} <= set(entry):
      raise ValueError(f"{path}: {m!r} needs 'confidence', 'accuracy' and 'count' lists.")
    count = _floats(entry["count"], path, f"{m}.count")
    conf = _floats(entry["confidence"], path, f"{m}.confidence", size=count.size)
    acc = _floats(entry["accuracy"], path, f"{m}.accuracy", size=count.size)
    used = count > 0
    ece = entry.get("ece")
    label = _label(m) + ("" if _is_missing(ece) else f" (ECE {float(ece):.3f})")
    ax.plot(conf[used], acc[used], color=colors[m], linewidth=1.0, alpha=0.6)
    share = count[used] / max(count.sum(), 1.0)  # Marker area: the bin's share of images.
    ax.scatter(
      conf[used],
      acc[used],
      s=12 + 250 * share,
      color=colors[m],
      marker=_MARKERS[i % len(_MARKERS)],
      alpha=0.85,
      label=label,
    )
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("Mean confidence (max softmax probability) of the bin")
  ax.set_ylabel("Accuracy of the bin")
  ax.set_title("Reliability diagram (15 equal-width confidence bins, known test images)")
  ax.grid(alpha=0.3)
  _legend_outside(ax)
  _save(fig, out)
  return out


# ---------------------------------------------------------------------------- report

_CAPTIONS = {
  "weight_norms": (
    "Per-class classifier weight norms (each method scaled by its own max), classes sorted "
    "by training count; cf. Kang et al. 2020, Fig. 2 (left): the joint classifier's norms "
    "grow with class size, while cRT, τ-norm and LWS are flatter."
  ),
  "tau_sweep": (
    "Many/medium/few/all accuracy against τ (val solid, test dashed; τ chosen on val), as "
    "in Kang et al. 2020's accuracy-vs-τ plot: τ = 0 is the joint classifier, larger τ "
    "trades many-shot for few-shot accuracy."
  ),
  "per_class": (
    "Per-class test accuracy against training count: the per-class view behind the "
    "many/medium/few numbers of Kang et al. 2020 and Liu et al. 2019; re-balancing should "
    "lift the tail (left) at some cost to the head (right)."
  ),
  "open_set": (
    "Open-set F-measure against the rejection threshold, the trade-off behind the single "
    "open-set F-measure reported by Liu et al. 2019 (OLTR). As the corrected OLTR reference "
    "defines it, a rejected known image counts as neither a true nor a false positive, so "
    "raising the threshold removes false positives (wrong known predictions, open images "
    "taken for known) faster than true ones and F rises; at threshold 1 every image is "
    "rejected, no true positive is left and F falls to 0. The paper's 0.1 rejects nothing "
    "when the max softmax cannot fall below 1/K (fewer than 10 classes); the dots mark the "
    "thresholds that keep 95% of the known validation images (open_f_measure_val)."
  ),
  "calibration": (
    "Reliability diagram: the accuracy of the test images in each of 15 equal-width bins of "
    "confidence against the bin's mean confidence (Guo et al. 2017); below the diagonal a "
    "method is over-confident. A marker's area is its bin's share of the images (bins of "
    "a few images are noise); ECE is the count-weighted mean gap (the table's column); "
    "empty bins are left out."
  ),
}


def _figure_lines(path: str, alt: str, caption: str) -> list[str]:
  """An image link relative to the report, then its one-line italic caption."""
  return [f"![{alt}]({os.path.basename(path)})", "", f"*{_CAPTIONS[caption]}*", ""]


_REPORT_FILES = (
  "results",
  "meta",
  "per_class",
  "tau_sweep",
  "weight_norms",
  "open_set_curve",
  "calibration",
)


def _load_report_files(workdir: str) -> tuple[dict[str, str], dict[str, Any]]:
  """The paths of the results files of ``workdir`` and their content (None: absent),
  checked: results.json present and not empty, every file a JSON object."""
  files = {name: os.path.join(workdir, f"{name}.json") for name in _REPORT_FILES}
  data = {name: _read_json(path) for name, path in files.items()}
  if data["results"] is None:
    raise ValueError(
      f"No results.json in {workdir!r}: run training/evaluation first (it writes "
      "results.json), then make the report."
    )
  for name, obj in data.items():
    if obj is not None:
      _mapping(obj, files[name])
  if not data["results"]:
    raise ValueError(
      f"{files['results']} holds no methods: run training/evaluation first, then make the report."
    )
  return files, data


def _header_lines(meta: dict | None, thresholds) -> list[str]:
  lines = ["# Long-tailed recognition report", ""]
  if meta:
    if meta.get("dataset") is not None:
      lines.append(f"- Dataset: `{meta['dataset']}`")
    names = meta.get("class_names")
    if isinstance(names, list) and names:
      shown = ", ".join(str(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
      lines.append(f"- Classes ({len(names)}): {shown}")
    if thresholds is not None:
      many, few = (f"{t:g}" for t in thresholds)
      lines.append(
        f"- Shot groups by training images n: many n > {many}, medium {few} ≤ n ≤ {many}, "
        f"few n < {few}"
      )
    lines.append("")
  return lines


def _results_lines(results: Mapping, path: str) -> list[str]:
  try:
    table = format_results_table(results)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e
  has_open = any(isinstance(r, Mapping) and "open_f_measure" in r for r in results.values())
  note = "Accuracies in percent; " + MISSING + " marks an empty shot group or a missing metric."
  if any(isinstance(r, Mapping) and "ece" in r for r in results.values()):
    note += (
      " Top-5: the label among the 5 largest scores, over the known test images as All;"
      " ECE: expected calibration error of the max softmax probability, 15 bins; NLL: mean"
      " negative log-likelihood of the label (known test images)."
    )
  if has_open:
    note += (
      " Open-set F-measure and AUROC are fractions in [0, 1]: F at the paper's threshold 0.1"
      " on the max softmax probability, and at the threshold that keeps 95% of the known"
      " validation images (it means something with few classes, where the max softmax"
      " cannot fall below 1/K)."
    )
  lines = ["## Test results", "", table, "", note, ""]
  tested = _tested_models(results)
  if tested:
    lines += [f"Tested models: {tested}.", ""]
  return lines


def _tested_models(results: Mapping) -> str:
  """Which model each method's row tests: its epoch, and for ``eval.select=best_val`` the
  validation accuracy that chose it."""
  parts = []
  for method in ordered_methods(results):
    row = results[method]
    if not isinstance(row, Mapping) or row.get("selection") not in ("final", "best_val"):
      continue
    epoch = row.get("selected_epoch")
    at = f"epoch {epoch:g}" if isinstance(epoch, int | float) else "the imported checkpoint"
    if row["selection"] == "best_val":
      val = row.get("val_accuracy")
      how = "best validation" + (f" accuracy {100 * val:.1f}" if isinstance(val, float) else "")
    else:
      how = "final"
    parts.append(f"{_escape(method)} at {at} ({how})")
  return "; ".join(parts)


def _figure_sections(workdir: str, files: dict, data: dict, thresholds) -> list[str]:
  """The report's figures, one section each, for the files that are present."""
  lines = []
  png = lambda name: os.path.join(workdir, name)
  if data["tau_sweep"] is not None:
    out, chosen = _plot_tau_sweep(data["tau_sweep"], files["tau_sweep"], png("tau_sweep.png"))
    chosen_text = f"{chosen:g}" if chosen is not None else "not recorded"
    lines += [
      "## τ-normalisation",
      "",
      f"Chosen τ: **{chosen_text}** (best overall accuracy on the validation split).",
      "",
    ]
    lines += _figure_lines(out, "Accuracy against tau", "tau_sweep")
    adjusted = data["tau_sweep"].get("logit_adjustment")
    if isinstance(adjusted, Mapping) and adjusted.get("chosen_tau") is not None:
      lines += [
        "## Post-hoc logit adjustment",
        "",
        f"Chosen τ: **{adjusted['chosen_tau']:g}** (logits − τ log prior, Menon et al. 2021; "
        "best overall accuracy on the validation split).",
        "",
      ]
  if data["weight_norms"] is not None:
    counts = _train_counts(data["per_class"], files["per_class"])
    out = _plot_weight_norms(
      data["weight_norms"], files["weight_norms"], png("weight_norms.png"), counts, thresholds
    )
    lines += ["## Classifier weight norms", ""]
    lines += _figure_lines(out, "Classifier weight norms", "weight_norms")
  if data["per_class"] is not None:
    out = _plot_per_class(
      data["per_class"], files["per_class"], png("per_class_accuracy.png"), thresholds
    )
    lines += ["## Per-class accuracy", ""]
    lines += _figure_lines(out, "Per-class accuracy", "per_class")
  if data["open_set_curve"] is not None:
    out = _plot_open_set(
      data["open_set_curve"],
      files["open_set_curve"],
      png("open_set_f_measure.png"),
      data["results"],
    )
    lines += ["## Open-set F-measure", ""]
    lines += _figure_lines(out, "Open-set F-measure", "open_set")
  if data["calibration"] is not None:
    out = _plot_reliability(data["calibration"], files["calibration"], png("reliability.png"))
    lines += ["## Calibration", ""]
    lines += _figure_lines(out, "Reliability diagram", "calibration")
  return lines


def write_report(workdir: str) -> str:
  """Writes ``report.md`` and its figures into ``workdir`` from the results files there.

  Args:
    workdir: a work directory holding at least ``results.json``; ``meta.json``,
      ``per_class.json``, ``tau_sweep.json``, ``weight_norms.json`` and
      ``open_set_curve.json`` each add a section (and a PNG figure) when present.

  Returns:
    The path of the written ``report.md``.

  Raises:
    ValueError: ``results.json`` is missing or empty, or a present file is not valid
      JSON or not of the expected structure (the message names the file).
  """
  files, data = _load_report_files(workdir)
  thresholds = _thresholds(data["meta"])
  lines = _header_lines(data["meta"], thresholds)
  lines += _results_lines(data["results"], files["results"])
  lines += _figure_sections(workdir, files, data, thresholds)
  report = os.path.join(workdir, "report.md")
  write_text(report, "\n".join(lines).rstrip("\n") + "\n")
  return report


# ------------------------------------------------------------------------ comparison

_COMPARED_FILES = ("results", "per_class", "weight_norms", "open_set_curve", "calibration")


def _run_names(dirs: list[str], out_dir: str) -> list[str]:
  """Each compared run's name: its directory's name, or its path below the common parent
  when two have the same (runs/a/joint and runs/b/joint: a/joint, b/joint)."""
  if not dirs:
    raise ValueError("--compare needs at least one work directory.")
  out_abs = os.path.abspath(out_dir)
  if any(os.path.abspath(d) == out_abs for d in dirs) or os.path.isdir(
    os.path.join(out_dir, "checkpoints")
  ):
    raise ValueError(
      f"--workdir={out_dir} is a run's work directory: give the comparison its own "
      "directory (its results.json would be overwritten)."
    )
  names = [os.path.basename(os.path.normpath(d)) or d for d in dirs]
  if len(set(names)) < len(names):
    common = os.path.commonpath([os.path.abspath(d) for d in dirs])
    names = [os.path.relpath(os.path.abspath(d), common) for d in dirs]
  if len(set(names)) < len(names):
    raise ValueError(f"--compare names a run twice: {' '.join(dirs)}")
  return names


def _merged_runs(dirs: list[str], names: list[str]) -> dict[str, dict]:
  """The compared files of every run merged, method by method (``method@run`` where
  several runs report a method)."""
  loaded = []
  for d in dirs:
    if _read_json(os.path.join(d, "results.json")) is None:
      raise ValueError(f"{d} has no results.json: train or evaluate that run first.")
    loaded.append({f: _read_json(os.path.join(d, f"{f}.json")) or {} for f in _COMPARED_FILES})
  counts: dict[str, int] = {}
  for run in loaded:
    for method in run["results"]:
      counts[method] = counts.get(method, 0) + 1
  merged: dict[str, dict] = {f: {} for f in _COMPARED_FILES}
  for name, run in zip(names, loaded, strict=True):
    for method in run["results"]:
      label = method if counts[method] == 1 else f"{method}@{name}"
      for f in _COMPARED_FILES:
        if method in run[f]:
          merged[f][label] = run[f][method]
  return merged


def _check_comparable(dirs: list[str]) -> None:
  """Runs of different datasets, shot thresholds, test data (``meta.json``'s identity of the
  test split) or numbers of classes do not go in one table; each refusal names every run
  with its value. Checked before anything is written."""
  metas = {d: _read_json(os.path.join(d, "meta.json")) for d in dirs}
  metas = {d: m for d, m in metas.items() if m}
  datasets = {d: m.get("dataset") for d, m in metas.items() if m.get("dataset") is not None}
  if len(set(datasets.values())) > 1:
    each = "; ".join(f"{d}: {name}" for d, name in datasets.items())
    raise ValueError(f"the runs are of different datasets ({each}): not comparable.")
  thresholds = {d: _thresholds(m) for d, m in metas.items()}
  thresholds = {d: t for d, t in thresholds.items() if t is not None}
  if len(set(thresholds.values())) > 1:
    each = "; ".join(f"{d}: many > {t[0]:g}, few < {t[1]:g}" for d, t in thresholds.items())
    raise ValueError(
      f"the runs use different shot thresholds ({each}): their many/medium/few groups are not "
      "comparable; evaluate them with the same --config.eval.many_threshold / few_threshold."
    )
  tests = {d: ((m.get("data") or {}).get("test") or {}).get("digest") for d, m in metas.items()}
  tests = {d: t for d, t in tests.items() if t}
  if len(set(tests.values())) > 1:
    each = "; ".join(f"{d}: test digest {t[:8]}" for d, t in tests.items())
    raise ValueError(
      f"the runs were tested on different test data ({each}; meta.json, ltjax.data.identity): "
      "their numbers are not comparable. Evaluate them on the same data."
    )
  classes = {}
  for d in dirs:
    sizes = {}  # Number of classes -> the file that says so.
    names = (metas.get(d) or {}).get("class_names")
    if isinstance(names, list):
      sizes.setdefault(len(names), "meta.json")
    for f, keys in (("per_class", ("accuracy", "train_count", "test_count")), ("weight_norms", ())):
      for entry in (_read_json(os.path.join(d, f"{f}.json")) or {}).values():
        values = [entry.get(k) for k in keys] if isinstance(entry, Mapping) else [entry]
        for v in values:
          if isinstance(v, list):
            sizes.setdefault(len(v), f"{f}.json")
    if len(sizes) > 1:
      each = ", ".join(f"{n} in {f}" for n, f in sizes.items())
      raise ValueError(
        f"{d}: its files disagree on the number of classes ({each}): evaluate it again."
      )
    if sizes:
      classes[d] = next(iter(sizes))
  if len(set(classes.values())) > 1:
    each = "; ".join(f"{d}: {k}" for d, k in classes.items())
    raise ValueError(f"the runs have different numbers of classes ({each}): not comparable.")


def write_comparison(runs: list[str], out_dir: str) -> tuple[str, str]:
  """One table and one set of figures over several work directories (``ltjax report
  --compare``): joint, cRT, LWS, OLTR, NCM and tau-norm from separately trained runs.

  Each run's ``results.json``, ``per_class.json``, ``weight_norms.json`` and
  ``open_set_curve.json`` are merged, method by method, into ``out_dir`` (a method that
  appears in several runs is named ``method@run``); ``tau_sweep.json`` and ``meta.json``
  come from the first run that has them. Then ``report.md`` and its figures are written
  there, as ``write_report`` does for one run.

  Args:
    runs: work directories (or paths of their results.json).
    out_dir: where the merged files and the report go; not one of the runs.

  Returns:
    (path of report.md, the results table).

  Raises:
    ValueError: fewer than one run, a run without results.json, ``out_dir`` is a run's
      work directory, or the runs' datasets, shot thresholds or numbers of classes differ.
      Nothing is written in ``out_dir`` then (nor when drawing the report fails).
  """
  import shutil
  import tempfile

  dirs = [os.path.dirname(r) if r.endswith(".json") else r for r in runs]
  merged = _merged_runs(dirs, _run_names(dirs, out_dir))
  _check_comparable(dirs)
  # Everything is made in a staging directory beside out_dir, and moved into out_dir only
  # once the report is drawn: a comparison that fails leaves out_dir as it was.
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".ltjax-compare-", dir=parent)
  try:
    for f in _COMPARED_FILES:
      if merged[f]:
        write_json(os.path.join(staging, f"{f}.json"), merged[f])
    for extra in ("meta", "tau_sweep"):
      source = next((d for d in dirs if os.path.exists(os.path.join(d, f"{extra}.json"))), None)
      if source is not None:
        path = os.path.join(source, f"{extra}.json")
        write_json(os.path.join(staging, f"{extra}.json"), _read_json(path))
    runs_abs = [os.path.abspath(d) for d in dirs]
    write_json(os.path.join(staging, "comparison.json"), {"runs": runs_abs})
    write_report(staging)
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(staging)):
      os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return os.path.join(out_dir, "report.md"), format_results_table(merged["results"])
