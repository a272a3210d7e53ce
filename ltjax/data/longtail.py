"""Long-tailed subsets and open-set splits of balanced datasets; shot groups and the class
statistics of a split.

The exponential profile is the CIFAR-LT convention (Cui et al. 2019, used by the
long-tail literature): class j keeps n_j = floor(n_max * ratio^(-j / (K - 1)))
images, so class 0 is the head and class K - 1 the tail with n_max / ratio images.

``cao2019_indices`` is that profile with the exact image selection of Cao et al.
(NeurIPS 2019, the LDAM-DRW code's ``IMBALANCECIFAR10/100``), the CIFAR-10/100-LT training
sets behind nearly every published CIFAR-LT number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ltjax.data.sources.base import check_labels


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


#: The seed of the published CIFAR-LT cut (the LDAM-DRW code's ``rand_number`` default).
CAO2019_SEED = 0


def cao2019_counts(num_images: int, num_classes: int, imbalance_ratio: float) -> np.ndarray:
  """Per-class counts of the published CIFAR-LT cut (Cao et al. 2019, ``imbalance_cifar.py``:
  ``get_img_num_per_cls``): ``img_max = int(N / K)`` and, for class c,
  ``int(img_max * (1 / ratio) ** (c / (K - 1.0)))`` (5,000 ... 50 for CIFAR-10 at ratio
  100; 500 ... 5 for CIFAR-100).

  Args:
    num_images: N, the size of the balanced training split (50,000 for CIFAR).
    num_classes: K >= 2.
    imbalance_ratio: n_max / n_min >= 1.
  """
  if num_classes < 2:
    raise ValueError(f"the cao2019 cut needs at least 2 classes, got {num_classes}.")
  if imbalance_ratio < 1:
    raise ValueError(f"imbalance_ratio must be >= 1 (n_max / n_min), got {imbalance_ratio}.")
  img_max = int(num_images / num_classes)
  factor = 1.0 / float(imbalance_ratio)  # The code's ``imb_factor`` (0.01 for ratio 100).
  return np.asarray(
    [int(img_max * factor ** (c / (num_classes - 1.0))) for c in range(num_classes)], np.int64
  )


def cao2019_indices(
  labels: np.ndarray, num_classes: int, imbalance_ratio: float, seed: int = CAO2019_SEED
) -> np.ndarray:
  """The training images of the published CIFAR-LT cut, as positions into ``labels``.

  ``labels`` must be in the dataset's original order (CIFAR's python batches, in order).
  The selection is the published code's: NumPy's legacy RNG seeded once with ``seed``;
  then class by class, in class order, that class's positions in original order are
  shuffled (``np.random.shuffle``) and the first ``cao2019_counts`` of them kept.

  Returns:
    Sorted int64 positions into ``labels``.
  """
  labels = check_labels(labels, num_classes)
  counts = cao2019_counts(len(labels), num_classes, imbalance_ratio)
  rng = np.random.RandomState(seed)  # The same stream as np.random.seed(seed) + shuffle.
  chosen = []
  for c, n in enumerate(counts):
    idx = np.flatnonzero(labels == c)  # np.where(targets == c)[0]: int64, ascending.
    if len(idx) < n:
      raise ValueError(
        f"class {c} has {len(idx)} images but the cao2019 cut keeps {int(n)}: the cut is "
        "defined on a balanced training split of N / K images per class (CIFAR's)."
      )
    rng.shuffle(idx)
    chosen.append(idx[:n])
  return np.sort(np.concatenate(chosen))


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


# ------------------------------------------------------------------- shot groups and statistics


def check_num_classes(num_classes: int | None) -> int | None:
  if num_classes is None:
    return None
  if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
    raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}.")
  if num_classes < 1:
    raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}.")
  return int(num_classes)


def check_train_counts(train_counts: Any) -> np.ndarray:
  counts = np.asarray(train_counts)
  if counts.ndim != 1 or counts.size == 0:
    raise ValueError(
      f"train_counts must be a non-empty 1-D array (one count per class), got shape {counts.shape}."
    )
  if not (np.issubdtype(counts.dtype, np.number) and counts.dtype != np.bool_):
    raise ValueError(f"train_counts must be numeric, got dtype {counts.dtype}.")
  if not np.all(np.isfinite(counts)) or np.any(counts != np.round(counts)) or np.any(counts < 0):
    bad = np.flatnonzero(~np.isfinite(counts) | (counts != np.round(counts)) | (counts < 0))
    i = int(bad[0])
    raise ValueError(
      f"train_counts[{i}] = {counts[i]} is not a non-negative whole number; pass the number "
      "of training images of each class."
    )
  return counts.astype(np.int64)


def shot_groups(
  train_counts: Any, many_threshold: int = 100, few_threshold: int = 20
) -> dict[str, np.ndarray]:
  """Splits classes into many-, medium- and few-shot by their training counts.

  Args:
    train_counts: (K,) number of training images of each class.
    many_threshold: classes with n_j > many_threshold are many-shot.
    few_threshold: classes with n_j < few_threshold are few-shot. Everything else
      (including n_j equal to either threshold) is medium-shot.

  Returns:
    {"many", "medium", "few"} -> boolean (K,) masks; every class is in exactly one.

  Raises:
    ValueError: if few_threshold > many_threshold or train_counts is malformed.
  """
  if few_threshold > many_threshold:
    raise ValueError(
      f"few_threshold ({few_threshold}) must be <= many_threshold ({many_threshold}); "
      "swap them (defaults: many_threshold=100, few_threshold=20)."
    )
  counts = check_train_counts(train_counts)
  many = counts > many_threshold
  few = counts < few_threshold
  return {"many": many, "medium": ~many & ~few, "few": few}


def split_statistics(
  labels: Sequence[int] | np.ndarray,
  num_classes: int | None = None,
  many_threshold: int = 100,
  few_threshold: int = 20,
) -> dict[str, Any]:
  """The class distribution of a split.

  Open-set records (label -1) are counted in ``num_open`` and left out of everything
  else. The many/medium/few groups follow `shot_groups`: many if
  n > many_threshold, few if n < few_threshold, medium otherwise; empty classes are few,
  so the three counts sum to ``num_classes``.

  Args:
    labels: (N,) integer class ids, -1 for open-set records.
    num_classes: K; the largest label + 1 if not given.
    many_threshold: see above.
    few_threshold: see above.

  Returns:
    A dict with ``num_images`` (all records, open ones included), ``num_open``,
    ``num_classes``, ``counts`` ((K,) int64 images per class), ``largest`` and
    ``smallest`` (over the classes with at least one image; 0 if none), ``num_empty``
    (classes without images), ``imbalance`` (largest / smallest, nan if no class has
    images), ``many``, ``medium`` and ``few`` (numbers of classes), and the two
    thresholds.

  Raises:
    ValueError: on labels below -1 or >= num_classes, or inconsistent thresholds.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
    raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}.")
  num_classes = check_num_classes(num_classes)
  known = labels[labels >= 0]
  if np.any(labels < -1):
    i = int(np.flatnonzero(labels < -1)[0])
    raise ValueError(f"labels[{i}] = {int(labels[i])}; class ids must be >= 0 (or -1 for open).")
  if num_classes is None:
    if not known.size:
      raise ValueError("no labels >= 0 to infer the number of classes from; pass num_classes.")
    num_classes = int(known.max()) + 1
  elif known.size and known.max() >= num_classes:
    raise ValueError(
      f"label {int(known.max())} is >= num_classes={num_classes}; check num_classes."
    )
  counts = np.bincount(known, minlength=num_classes).astype(np.int64)
  present = counts[counts > 0]
  largest = int(present.max()) if present.size else 0
  smallest = int(present.min()) if present.size else 0
  groups = shot_groups(counts, many_threshold=many_threshold, few_threshold=few_threshold)
  return {
    "num_images": int(labels.size),
    "num_open": int(labels.size - known.size),
    "num_classes": num_classes,
    "counts": counts,
    "largest": largest,
    "smallest": smallest,
    "num_empty": int(num_classes - present.size),
    "imbalance": largest / smallest if smallest else float("nan"),
    "many": int(groups["many"].sum()),
    "medium": int(groups["medium"].sum()),
    "few": int(groups["few"].sum()),
    "many_threshold": many_threshold,
    "few_threshold": few_threshold,
  }


def format_statistics(stats: dict[str, Any], name: str = "split") -> str:
  """A readable multi-line summary of a `split_statistics` result.

  Args:
    stats: the dict returned by `split_statistics`.
    name: a title, e.g. the list file name.

  Returns:
    The text, without a trailing newline.
  """
  k = stats["num_classes"]
  known = stats["num_images"] - stats["num_open"]
  many, few = stats["many_threshold"], stats["few_threshold"]
  open_note = f" ({stats['num_open']:,} open-set, label -1)" if stats["num_open"] else ""
  rows = [
    ("images", f"{stats['num_images']:,}{open_note}"),
    ("classes", f"{k:,} ({k - stats['num_empty']:,} with images, {stats['num_empty']:,} empty)"),
    ("largest class", f"{stats['largest']:,}"),
    ("smallest class", f"{stats['smallest']:,} (over classes with images)"),
    ("mean per class", f"{known / k:,.1f}"),
    ("imbalance", f"{stats['imbalance']:.1f} (largest / smallest)"),
    (f"many (n > {many})", f"{stats['many']:,} classes"),
    (f"medium ({few} <= n <= {many})", f"{stats['medium']:,} classes"),
    (f"few (n < {few})", f"{stats['few']:,} classes"),
  ]
  width = max(len(key) for key, _ in rows) + 1
  lines = [f"{name}:"] + [f"  {(key + ':').ljust(width)} {value}" for key, value in rows]
  return "\n".join(lines + format_counts(stats["counts"]))


#: ``format_counts`` lists every class up to this many; beyond, the first and last 50.
COUNTS_SHOWN = 200


def format_counts(counts: Sequence[int] | np.ndarray, per_line: int = 10) -> list[str]:
  """Lines ``  images per class (class id: count):`` then ``per_line`` classes a line."""
  counts = np.asarray(counts)
  k = len(counts)
  ids = np.arange(k) if k <= COUNTS_SHOWN else np.r_[0:50, k - 50 : k]
  lines = ["  images per class:"]
  for start in range(0, len(ids), per_line):
    chunk = ids[start : start + per_line]
    if k > COUNTS_SHOWN and chunk[0] == k - 50:
      lines.append(f"    ... ({k - 100:,} classes not shown)")
    lines.append("    " + "  ".join(f"{int(c)}: {int(counts[c])}" for c in chunk))
  return lines
