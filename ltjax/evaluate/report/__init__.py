"""A markdown report with figures from the results files of a work directory.

`write_report` reads what training and evaluation left in a work directory and writes
``report.md`` next to them, with PNG figures in the style of Kang et al. 2020
("Decoupling Representation and Classifier for Long-Tailed Recognition"):

* ``results.json`` (required): the results table.
* ``meta.json``: dataset name and the shot-group thresholds.
* ``weight_norms.json`` (+ train counts from ``per_class.json``): ``weight_norms.png``.
* ``tau_sweep.json``: the chosen tau and ``tau_sweep.png``.
* each evaluator's files, as its ``figures`` declare them (``ltjax.evaluate.evaluators``):
  ``per_class.json``: ``per_class_accuracy.png``; ``calibration.json``: ``reliability.png``,
  the reliability diagram; ``open_set_curve.json``: ``open_set_f_measure.png``.

Every file but ``results.json`` is optional: a missing one only drops its section.
A file that exists but cannot be read as expected raises a ValueError naming it.
Host-side only (numpy and matplotlib with the Agg backend; no JAX, so that ``ltjax report``
starts fast). `write_comparison` does the same over several runs (``report --compare``).

One module per part, this one naming what the rest of ltjax uses: ``inputs`` (reading and
checking the files; the methods' order, labels and colours, from ``ltjax.evaluate.methods``;
the table's columns, from the evaluators that produced them, ``ltjax.evaluate.evaluators``),
``plots`` (the figures), ``markdown`` (one run's ``report.md``), ``compare`` (several runs
merged into one report).
"""

from ltjax.evaluate.report.compare import write_comparison
from ltjax.evaluate.report.inputs import method_colors, method_label, ordered_methods
from ltjax.evaluate.report.markdown import (
  MISSING,
  format_results_table,
  table_columns,
  write_report,
)
from ltjax.evaluate.report.plots import DPI, GROUPS, MIN_CLASSES_FOR_AVERAGE

__all__ = [
  "DPI",
  "GROUPS",
  "MIN_CLASSES_FOR_AVERAGE",
  "MISSING",
  "format_results_table",
  "method_colors",
  "method_label",
  "ordered_methods",
  "table_columns",
  "write_comparison",
  "write_report",
]
