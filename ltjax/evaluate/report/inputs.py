"""What the report reads, shared by its table, its figures and ``report --compare``.

The results files of a work directory are JSON written by evaluation (or merged from
several runs); the helpers here read them and check what they hold, so that a file that is
present but not of the expected structure raises a ValueError naming it, not a KeyError
deep in a plot.
The methods those files name are ordered, labelled and coloured by
``ltjax.evaluate.methods`` (re-exported here), so that the table's rows and the figures'
legends agree and no list of method names lives in the report.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

# The rows' order, labels and colours: the method table, with the post-hoc methods' entries
# (their module registers them on import and imports no JAX).
from ltjax.evaluate import posthoc_methods  # noqa: F401
from ltjax.evaluate.methods import (  # noqa: F401 (the report's modules take them from here)
  method_colors,
  method_label,
  ordered_methods,
)
from ltjax.files import read_json


def is_missing(v: Any) -> bool:
  return v is None or (isinstance(v, float) and math.isnan(v))


def read_if_present(path: str) -> Any:
  """Parsed JSON of ``path``, None when it does not exist."""
  if not os.path.exists(path):
    return None
  return read_json(path, "rewrite or delete it")


def as_mapping(obj: Any, path: str) -> Mapping:
  if not isinstance(obj, Mapping):
    raise ValueError(f"{path} must hold a JSON object, got {type(obj).__name__}.")
  return obj


def floats(values: Any, path: str, what: str, size: int | None = None) -> np.ndarray:
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


def shot_thresholds(meta: Mapping | None) -> tuple[float, float] | None:
  """(many_threshold, few_threshold) from meta.json when both are numbers."""
  if not meta:
    return None
  many, few = meta.get("many_threshold"), meta.get("few_threshold")
  numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (many, few))
  return (float(many), float(few)) if numeric else None


def train_counts(per_class: Mapping | None, path: str) -> np.ndarray | None:
  """Per-class training counts (class-id order) from the first method of per_class.json."""
  for entry in (per_class or {}).values():
    if isinstance(entry, Mapping) and "train_count" in entry:
      return floats(entry["train_count"], path, "train_count")
  return None
