"""The report's figures: matplotlib (Agg backend, imported on first use), one PNG each.

Each ``plot_*`` function draws one results file in the style of Kang et al. 2020 and saves
it; methods keep one colour, line style and marker across all figures, so that equal
curves drawn under each other stay identifiable. What the figures mean (the captions) and
which are drawn is the business of ``markdown``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ltjax.evaluate.report.inputs import (
  as_mapping,
  floats,
  is_missing,
  method_colors,
  method_label,
  ordered_methods,
)

GROUPS = ("many", "medium", "few", "all")
DPI = 120

_GROUP_COLORS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:green", "all": "black"}
# Line styles, so that methods with equal curves (NCM and tau-norm often coincide) stay
# visible under each other: canonical methods first, then the rest in turn.
_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
# And a marker per method, so that a method drawn under another stays identifiable.
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h")
#: Fewer classes than this: no moving average (it would average most of the classes).
MIN_CLASSES_FOR_AVERAGE = 10
#: OLTR's open-set threshold (Liu et al. 2019, Sec. 4), ``eval.open_threshold``'s default.
PAPER_OPEN_THRESHOLD = 0.1


def _styles(methods) -> dict[str, Any]:
  return {m: _STYLES[i % len(_STYLES)] for i, m in enumerate(methods)}


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


def plot_weight_norms(
  norms: Mapping, path: str, out: str, counts: np.ndarray | None, thresholds
) -> str:
  plt = _pyplot()
  methods = ordered_methods(norms)
  arrays = {m: floats(norms[m], path, f"weight norms of {m!r}") for m in methods}
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
  colors, markers = method_colors(methods), _markers(methods)
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
      label=method_label(m),
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


def plot_tau_sweep(sweep: Mapping, path: str, out: str) -> tuple[str, float | None]:
  plt = _pyplot()
  if "taus" not in sweep:
    raise ValueError(f"{path} has no 'taus' list.")
  taus = floats(sweep["taus"], path, "taus")
  chosen = sweep.get("chosen_tau")
  if chosen is not None and (isinstance(chosen, bool) or not isinstance(chosen, int | float)):
    raise ValueError(f"{path}: chosen_tau must be a number, got {chosen!r}.")
  fig, ax = plt.subplots(figsize=(8.5, 4.5))
  plotted = False
  for split, style in (("val", "-"), ("test", "--")):
    curves = sweep.get(split)
    if curves is None:
      continue
    curves = as_mapping(curves, f"{path} ({split!r})")
    for g in GROUPS:
      if g not in curves:
        continue
      acc = floats(curves[g], path, f"{split}.{g}", size=taus.size)
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


@dataclasses.dataclass(frozen=True)
class FigureContext:
  """What an evaluator's figure (``ltjax.evaluate.evaluators.Figure``) may draw beside its
  own file: the shot thresholds (``meta.json``; None unknown), the results rows and the
  settings they were computed with (``evaluators.report_settings``: ``open_threshold``,
  ...; empty: unknown)."""

  thresholds: tuple[float, float] | None
  results: Mapping
  settings: Mapping = dataclasses.field(default_factory=dict)


def plot_per_class(per_class: Mapping, path: str, out: str, context: FigureContext) -> str:
  thresholds = context.thresholds
  plt = _pyplot()
  methods = ordered_methods(per_class)
  colors, styles, markers = method_colors(methods), _styles(methods), _markers(methods)
  fig, ax = plt.subplots(figsize=(8.5, 4.5))
  plotted, window, all_x = False, 1, []
  for i, m in enumerate(methods):
    entry = as_mapping(per_class[m], f"{path} ({m!r})")
    if "accuracy" not in entry or "train_count" not in entry:
      raise ValueError(f"{path}: {m!r} needs 'accuracy' and 'train_count' lists.")
    counts = floats(entry["train_count"], path, f"{m}.train_count")
    acc = floats(entry["accuracy"], path, f"{m}.accuracy", size=counts.size)
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
      label=method_label(m),
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


def plot_open_set(curves: Mapping, path: str, out: str, context: FigureContext) -> str:
  results = context.results
  plt = _pyplot()
  methods = ordered_methods(curves)
  colors, styles, markers = method_colors(methods), _styles(methods), _markers(methods)
  fig, ax = plt.subplots(figsize=(8.5, 4.5))
  shown = []  # F below the last threshold (at 1 every image is rejected: F = 0).
  for m in methods:
    entry = as_mapping(curves[m], f"{path} ({m!r})")
    if "thresholds" not in entry or "f_measure" not in entry:
      raise ValueError(f"{path}: {m!r} needs 'thresholds' and 'f_measure' lists.")
    t = floats(entry["thresholds"], path, f"{m}.thresholds")
    f = floats(entry["f_measure"], path, f"{m}.f_measure", size=t.size)
    shown.append(f[(t < 1.0) & np.isfinite(f)])
    ax.plot(
      t,
      f,
      color=colors[m],
      linestyle=styles[m],
      label=method_label(m),
      linewidth=1.8,
      marker=markers[m],
      markersize=4,
      markevery=4,
    )
    chosen = (results or {}).get(m, {})
    if isinstance(chosen, Mapping) and not is_missing(chosen.get("open_threshold_val")):
      # The threshold chosen on validation (keeps 95% of known val images), on the curve.
      tv = float(chosen["open_threshold_val"])
      ax.plot([tv], [np.interp(tv, t, f)], "o", color=colors[m], markersize=6)
  # The run's fixed threshold (its open_f_measure column) and, where it is another, the
  # paper's.
  run = context.settings.get("open_threshold")
  marks = [(PAPER_OPEN_THRESHOLD, f"paper: {PAPER_OPEN_THRESHOLD:g}")]
  if run is not None:
    paper = " (the paper's)" if float(run) == PAPER_OPEN_THRESHOLD else ""
    marks = [(float(run), f"Open F: {float(run):g}{paper}")] + [
      m for m in marks if m[0] != float(run)
    ]
  for x, label in marks:
    ax.axvline(x, color="gray", linestyle=":", linewidth=1)
    ax.annotate(
      label,
      (x, 0.02),
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


def plot_reliability(calibration: Mapping, path: str, out: str, context: FigureContext) -> str:
  """Accuracy against confidence per bin (Guo et al. 2017), one line with its own marker per
  method, bins without images left out; the diagonal is perfect calibration."""
  del context  # The bins are all it draws.
  plt = _pyplot()
  methods = ordered_methods(calibration)
  colors = method_colors(methods)
  fig, ax = plt.subplots(figsize=(8.5, 4.5))
  ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1, label="calibrated")
  for i, m in enumerate(methods):
    entry = as_mapping(calibration[m], f"{path} ({m!r})")
    if not {"confidence", "accuracy", "count"} <= set(entry):
      raise ValueError(f"{path}: {m!r} needs 'confidence', 'accuracy' and 'count' lists.")
    count = floats(entry["count"], path, f"{m}.count")
    conf = floats(entry["confidence"], path, f"{m}.confidence", size=count.size)
    acc = floats(entry["accuracy"], path, f"{m}.accuracy", size=count.size)
    used = count > 0
    ece = entry.get("ece")
    label = method_label(m) + ("" if is_missing(ece) else f" (ECE {float(ece):.3f})")
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
