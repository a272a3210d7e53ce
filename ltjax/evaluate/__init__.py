"""Evaluation: metrics, post-hoc classifiers, the runner over a split, and the report.

The building blocks, importable from here (numpy or jax arrays in, arrays out):

* long-tail metrics (``metrics``): ``shot_accuracy``, ``closed_set_summary``,
  ``per_class_accuracy``, ``shot_groups``;
* open set (``metrics``): ``open_set_f_measure``, ``open_set_auroc``,
  ``open_set_predictions``, ``reject_unconfident``, ``f_measure_curve``,
  ``f_measure_thresholds``;
* post-hoc classifiers on features (``ltjax.models.heads``, selected on validation by
  ``posthoc``): ``class_means``, ``ncm_logits``, ``tau_normalize``, ``tau_logits``,
  ``tau_sweep_predictions``; ``ncm``, ``tau_norm`` and ``logit_adjustment`` pick their
  settings on val (``posthoc_methods``: each post-hoc method is a registered class there,
  ``posthoc.evaluate_all`` runs them all);
* what a results row holds (``evaluators``): the registered evaluators ``config.eval.evaluators``
  chooses (closed set with shot groups, top-5, calibration, open set), each with the outputs
  the eval step computes for it, its entries of the row and its columns in the report.
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

# The post-hoc classifiers need JAX; they are imported on first use, so that what only
# reads results (``ltjax report``, the metrics) starts without importing JAX.
_LAZY = {
  "logit_adjustment": "ltjax.evaluate.posthoc_methods",
  "ncm": "ltjax.evaluate.posthoc_methods",
  "tau_norm": "ltjax.evaluate.posthoc_methods",
  "class_means": "ltjax.models.heads",
  "ncm_logits": "ltjax.models.heads",
  "tau_logits": "ltjax.models.heads",
  "tau_normalize": "ltjax.models.heads",
  "tau_sweep_predictions": "ltjax.models.heads",
}


def __getattr__(name: str):
  if name in _LAZY:
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'ltjax.evaluate' has no attribute {name!r}")


__all__ = [
  "class_means",
  "closed_set_summary",
  "f_measure_curve",
  "f_measure_thresholds",
  "logit_adjustment",
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
