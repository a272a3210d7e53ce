"""Evaluation: metrics, post-hoc classifiers, the runner over a split, and the report.

The building blocks, importable from here (numpy or jax arrays in, arrays out):

* long-tail metrics (``metrics``): ``shot_accuracy``, ``closed_set_summary``,
  ``per_class_accuracy``, ``shot_groups``;
* open set (``metrics``): ``open_set_f_measure``, ``open_set_auroc``,
  ``open_set_predictions``, ``reject_unconfident``, ``f_measure_curve``,
  ``f_measure_thresholds``;
* post-hoc classifiers on features (``ltjax.models.heads``, selected on validation by
  ``posthoc``): ``class_means``, ``ncm_logits``, ``tau_normalize``, ``tau_logits``,
  ``tau_sweep_predictions``; ``ncm`` and ``tau_norm`` pick their settings on val.
"""

from ltjax.evaluate.metrics import (
  closed_set_summary,
  f_measure_curve,
  f_measure_thresholds,
  open_set_auroc,
  open_set_f_measure,
  open_set_predictions,
  per_class_accuracy,
  reject_unconfident,
  shot_accuracy,
  shot_groups,
)
from ltjax.evaluate.posthoc import ncm, tau_norm
from ltjax.models.heads import (
  class_means,
  ncm_logits,
  tau_logits,
  tau_normalize,
  tau_sweep_predictions,
)

__all__ = [
  "class_means",
  "closed_set_summary",
  "f_measure_curve",
  "f_measure_thresholds",
  "ncm",
  "ncm_logits",
  "open_set_auroc",
  "open_set_f_measure",
  "open_set_predictions",
  "per_class_accuracy",
  "reject_unconfident",
  "shot_accuracy",
  "shot_groups",
  "tau_logits",
  "tau_normalize",
  "tau_norm",
  "tau_sweep_predictions",
]
