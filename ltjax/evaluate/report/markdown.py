"""``report.md`` of one work directory: the header, the results table, the figure sections.

`write_report` reads the results files (``inputs``), draws the figures that their presence
calls for (``plots``) and writes the markdown that links them, each with its caption.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ltjax.evaluate import evaluators, methods
from ltjax.evaluate.report.inputs import (
  as_mapping,
  is_missing,
  method_label,
  ordered_methods,
  read_if_present,
  shot_thresholds,
  train_counts,
)
from ltjax.evaluate.report.plots import FigureContext, plot_tau_sweep, plot_weight_norms
from ltjax.files import write_text

MISSING = "–"  # En dash: an empty shot group or a metric a method does not have.


def _format_cell(value: Any, percent: bool, where: str) -> str:
  if is_missing(value):
    return MISSING
  if isinstance(value, bool) or not isinstance(value, int | float | np.number):
    raise ValueError(f"{where} must be a number or null, got {value!r}.")
  return f"{100 * float(value):.1f}" if percent else f"{float(value):.3f}"


def _escape(text: str) -> str:
  return str(text).replace("|", "\\|")


# ---------------------------------------------------------------------------- table


def table_columns(results: Mapping[str, Mapping[str, Any]]) -> list[tuple[Any, str]]:
  """The results table's columns, each with its evaluator's note: those the registered
  evaluators declare (``ltjax.evaluate.evaluators``), in registration order, where some
  row has the entry or the column is always shown (the shot groups)."""
  rows = [r for r in results.values() if isinstance(r, Mapping)]
  settings = evaluators.report_settings(results)  # The run's thresholds, bins, ...
  return [
    (dataclasses.replace(c, header=c.header.format(**settings)), cls.note.format(**settings))
    for cls in evaluators.EVALUATORS.values()
    for c in cls.columns
    if c.always or any(c.key in r for r in rows)
  ]


def format_results_table(results: Mapping[str, Mapping[str, Any]]) -> str:
  """The markdown table of a results.json dict.

  Rows are methods in the order of ``ltjax.evaluate.methods`` (joint, ncm, crt, tau_norm,
  lws, oltr, ..., then any others in the given order). Columns are those the registered
  evaluators declare (``table_columns``): accuracies in percent with one decimal, other
  metrics (ECE, NLL, open-set F-measure and AUROC) plain with three decimals. A null, nan
  or absent value renders as "–".

  Args:
    results: ``{method: {"many": float | None, ..., "mean_class": float, ...}}``.

  Returns:
    The table, one line per row, without a trailing newline.

  Raises:
    ValueError: a method entry is not a mapping or a value is not a number or null.
  """
  columns = [c for c, _ in table_columns(results)]
  lines = [
    "| Method | " + " | ".join(c.header for c in columns) + " |",
    "| :--- | " + " | ".join("---:" for _ in columns) + " |",
  ]
  for method in ordered_methods(results):
    row = results[method]
    if not isinstance(row, Mapping):
      raise ValueError(f"results[{method!r}] must be a mapping of metrics, got {row!r}.")
    cells = [
      _format_cell(row.get(c.key), c.percent, f"results[{method!r}][{c.key!r}]") for c in columns
    ]
    lines.append(f"| {_escape(method)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


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
}


def _figure_lines(path: str, alt: str, caption: str) -> list[str]:
  """An image link relative to the report, then its one-line italic caption."""
  return [f"![{alt}]({os.path.basename(path)})", "", f"*{caption}*", ""]


def _report_files() -> tuple[str, ...]:
  """The files a report reads: the results, the run's meta, the post-hoc selection sweeps
  and classifier norms, and every registered evaluator's own files."""
  return ("results", "meta", "tau_sweep", "weight_norms", *evaluators.method_files())


def _load_report_files(workdir: str) -> tuple[dict[str, str], dict[str, Any]]:
  """The paths of the results files of ``workdir`` and their content (None: absent),
  checked: results.json present and not empty, every file a JSON object."""
  files = {name: os.path.join(workdir, f"{name}.json") for name in _report_files()}
  data = {name: read_if_present(path) for name, path in files.items()}
  if data["results"] is None:
    raise ValueError(
      f"No results.json in {workdir!r}: run training/evaluation first (it writes "
      "results.json), then make the report."
    )
  for name, obj in data.items():
    if obj is not None:
      as_mapping(obj, files[name])
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
  note = "Accuracies in percent; " + MISSING + " marks an empty shot group or a missing metric."
  for said in dict.fromkeys(n for _, n in table_columns(results) if n):  # Each note once.
    note += " " + said
  lines = ["## Test results", "", table, "", note, ""]
  # What each row's name stands for (``ltjax.evaluate.methods``' labels).
  methods_ = [m for m in ordered_methods(results) if method_label(m) != m]
  named = [f"{_escape(m)}: {_escape(method_label(m))}" for m in methods_]
  if named:
    lines += [f"Rows: {'; '.join(named)}.", ""]
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


def _other_sweeps(sweep: Mapping) -> list[str]:
  """A section per method whose sweep sits under its name in tau_sweep.json (the top level
  is tau-norm's), naming its chosen τ and what it means (``MethodInfo.note``)."""
  lines = []
  for name, own in sweep.items():
    if not (isinstance(own, Mapping) and "taus" in own and own.get("chosen_tau") is not None):
      continue
    note = getattr(methods.METHODS.get(name), "note", "")
    lines += [
      f"## {method_label(name)}",
      "",
      f"Chosen τ: **{own['chosen_tau']:g}** ({note + '; ' if note else ''}"
      "best overall accuracy on the validation split).",
      "",
    ]
  return lines


def _figure_sections(workdir: str, files: dict, data: dict, thresholds) -> list[str]:
  """The report's figures, one section each, for the files that are present."""
  lines = []
  png = lambda name: os.path.join(workdir, name)
  if data["tau_sweep"] is not None:
    out, chosen = plot_tau_sweep(data["tau_sweep"], files["tau_sweep"], png("tau_sweep.png"))
    chosen_text = f"{chosen:g}" if chosen is not None else "not recorded"
    lines += [
      "## τ-normalisation",
      "",
      f"Chosen τ: **{chosen_text}** (best overall accuracy on the validation split).",
      "",
    ]
    lines += _figure_lines(out, "Accuracy against tau", _CAPTIONS["tau_sweep"])
    lines += _other_sweeps(data["tau_sweep"])
  if data["weight_norms"] is not None:
    counts = train_counts(data["per_class"], files["per_class"])
    out = plot_weight_norms(
      data["weight_norms"], files["weight_norms"], png("weight_norms.png"), counts, thresholds
    )
    lines += ["## Classifier weight norms", ""]
    lines += _figure_lines(out, "Classifier weight norms", _CAPTIONS["weight_norms"])
  # The evaluators' sections, as they declare them (``Evaluator.figures``).
  settings = evaluators.report_settings(data["results"])  # Named in the captions.
  context = FigureContext(thresholds, data["results"], settings)
  for figure in evaluators.figures():
    if data.get(figure.file) is None:
      continue
    module, _, function = figure.draw.partition(":")
    draw = getattr(importlib.import_module(module), function)
    out = draw(data[figure.file], files[figure.file], png(figure.png), context)
    lines += [f"## {figure.title}", ""]
    lines += _figure_lines(out, figure.alt, figure.caption.format(**settings))
  return lines


def write_report(workdir: str) -> str:
  """Writes ``report.md`` and its figures into ``workdir`` from the results files there.

  Args:
    workdir: a work directory holding at least ``results.json``; ``meta.json``,
      ``tau_sweep.json``, ``weight_norms.json`` and each evaluator's file with a figure
      (``Evaluator.figures``: per_class.json, calibration.json, open_set_curve.json) add a
      section (and a PNG figure) when present.

  Returns:
    The path of the written ``report.md``.

  Raises:
    ValueError: ``results.json`` is missing or empty, or a present file is not valid
      JSON or not of the expected structure (the message names the file).
  """
  files, data = _load_report_files(workdir)
  thresholds = shot_thresholds(data["meta"])
  lines = _header_lines(data["meta"], thresholds)
  lines += _results_lines(data["results"], files["results"])
  lines += _figure_sections(workdir, files, data, thresholds)
  report = os.path.join(workdir, "report.md")
  write_text(report, "\n".join(lines).rstrip("\n") + "\n")
  return report
