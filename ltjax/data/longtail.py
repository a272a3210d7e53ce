"""Long-tailed subsets and open-set splits of balanced datasets.

The exponential profile is the CIFAR-LT convention (Cui et al. 2019, used by the
long-tail literature): class j keeps n_j = floor(n_max * ratio^(-j / (K - 1)))
images, so class 0 is the head and class K - 1 the tail with n_max / ratio images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ltjax.data.sources import check_labels


def exponential_counts(num_classes: int, n_max: int, imbalance_ratio: float) -> np.ndarray:
  """Per-class counts n_j = floor(n_max * ratio^(-j/(K-1))), at least 1.

  Args:
    num_classes: K >= 1.
    n_max: images kept for the head class (class 0).
    imbalance_ratio: n_max / n_min, >= 1 (1 gives a balanced set).

  Returns:
    (K,) int64 counts, non-increasing in j.
  """
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
  if n_max < 1:
    raise ValueError(f"n_max must be >= 1, got {n_max}.")
  if imbalance_ratio < 1:
    raise ValueError(f"imbalance_ratio must be >= 1 (n_max / n_min), got {imbalance_ratio}.")
  j = np.arange(num_classes)
  exponent = j / max(num_classes - 1, 1)
  counts = np.floor(n_max * float(imbalance_ratio) ** (-exponent) + 1e-9).astype(np.int64)
  return np.maximum(counts, 1)


def take_per_class(
  labels: np.ndarray,
  counts: Sequence[int] | np.ndarray,
  seed: int,
  *,
  pool: np.ndarray | None = None,
) -> np.ndarray:
  """Picks ``counts[j]`` random instances of every class j.

  Args:
    labels: (N,) class ids of the whole dataset.
    counts: (K,) number of instances wanted per class.
    seed: RNG seed; the selection is a pure function of (labels, counts, seed, pool).
    pool: optional positions to choose from (default: all).

  Returns:
    Sorted int64 positions into ``labels``.

  Raises:
    ValueError: if a class has fewer instances than asked for.
  """
  counts = np.asarray(counts, dtype=np.int64)
  labels = check_labels(labels, len(counts))
  pool = np.arange(len(labels)) if pool is None else np.asarray(pool, np.int64)
  rng = np.random.default_rng(seed)
  chosen = []
  for j, n in enumerate(counts):
    members = pool[labels[pool] == j]
    if len(members) < n:
      raise ValueError(
        f"class {j} has {len(members)} images available but {int(n)} were requested; "
        "lower n_max / the per-class split sizes or raise imbalance_ratio."
      )
    chosen.append(rng.choice(members, size=int(n), replace=False))
  return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def open_set_label_map(num_classes: int, open_classes: Sequence[int]) -> tuple[np.ndarray, int]:
  """Maps original class ids to known ids 0..K'-1, and held-out classes to -1.

  Args:
    num_classes: K of the original dataset.
    open_classes: ids held out of training; their test images become open-set (-1).

  Returns:
    ((K,) int32 label map, K' number of known classes).
  """
  open_set = {int(c) for c in open_classes}
  bad = sorted(c for c in open_set if not 0 <= c < num_classes)
  if bad:
    raise ValueError(f"open_classes {bad} are outside [0, {num_classes}).")
  if len(open_set) >= num_classes:
    raise ValueError("open_classes holds out every class; keep at least one known class.")
  label_map = np.full(num_classes, -1, np.int32)
  known = [c for c in range(num_classes) if c not in open_set]
  label_map[known] = np.arange(len(known), dtype=np.int32)
  return label_map, len(known)
