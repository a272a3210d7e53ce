"""What data a number was computed on: split identities and split hygiene.

A split's *identity* is an order-independent digest of its records (each record's key: its
path relative to the dataset root for image trees, split lists, packed shards and TFDS-backed
lists, alike; its TFDS record id or position; its index and pixel digest for in-memory arrays)
with their labels, and of the class names. Moving a dataset's root keeps its identity;
relabelling, adding, removing or renaming one image changes it. A run records the identity
of its train, val and test splits in every checkpoint and in ``meta.json``; feature caches,
``ltjax evaluate``, ``init_from`` and ``report --compare`` compare them
(``ltjax.train.experiment``, ``ltjax.evaluate``).

*Hygiene* (``check_splits``): no record in two of train / val / test / open, none twice in
one split (train may hold duplicates with ``dataset.allow_train_duplicates``, an
oversampling some users do on purpose), and a line for each class without test images.
Pairs a dataset shares by design (iNaturalist 2018 is evaluated on its val list; the
published CIFAR-LT cut leaves its head class no held-out image) are declared by its builder
(``DataSplits.shared``) and logged there.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from collections.abc import Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

_SHOWN = 5  # Offending records named in an error before "..." .


def record_keys(source) -> list[str]:
  """The key of every record of ``source``, in order (``source.record_keys()``)."""
  keys = getattr(source, "record_keys", None)
  if keys is None:
    raise TypeError(
      f"{type(source).__name__} has no record_keys(): a source must say what its records are "
      "(ltjax.data.identity), so that results know the data they were computed on."
    )
  return list(keys())


def record_where(source, index: int) -> str:
  """Where record ``index`` of ``source`` is defined (list file and line, folder, array)."""
  where = getattr(source, "record_where", None)
  return where(index) if where is not None else f"record {index}"


def _digest(keys: Sequence[str], labels: np.ndarray, class_names) -> str:
  h = hashlib.sha256()
  for line in sorted(f"{k}\t{int(y)}" for k, y in zip(keys, labels, strict=True)):
    h.update(line.encode("utf-8", "surrogateescape"))
    h.update(b"\n")
  h.update(b"classes\n")
  for name in class_names or ():
    h.update(str(name).encode("utf-8", "surrogateescape"))
    h.update(b"\n")
  return h.hexdigest()


def split_identity(source, class_names: Sequence[str] | None = None) -> dict:
  """``{"records": N, "digest": sha256 hex}`` of ``source`` (computed once per source)."""
  cached = getattr(source, "_ltjax_identity", None)
  names = tuple(str(n) for n in class_names) if class_names is not None else None
  if cached is not None and cached[0] == names:
    return dict(cached[1])
  keys = record_keys(source)
  out = {"records": len(keys), "digest": _digest(keys, np.asarray(source.labels), names)}
  try:
    source._ltjax_identity = (names, out)
  except AttributeError:  # A source that takes no attributes: computed again next time.
    pass
  return dict(out)


def short(identity: Mapping | None) -> str:
  """``"120 records, 3f2a9c01"`` for messages."""
  if not identity:
    return "not recorded"
  return f"{identity.get('records', '?'):,} records, digest {str(identity.get('digest'))[:8]}"


def differences(recorded: Mapping | None, current: Mapping, splits=("train", "val", "test")):
  """The splits whose identity differs between ``recorded`` and ``current`` (both
  ``{split: identity}``), as ``[(split, recorded identity, current identity)]``; splits
  the recording lacks (older runs) are not compared."""
  out = []
  for split in splits:
    old = (recorded or {}).get(split)
    if old is None or split not in current:
      continue
    if old.get("digest") != current[split].get("digest"):
      out.append((split, old, current[split]))
  return out


def describe_differences(diffs) -> str:
  return "; ".join(f"{s}: {short(old)} then, {short(new)} now" for s, old, new in diffs)


# --------------------------------------------------------------------------- hygiene


def _named(source, indices, limit: int = _SHOWN) -> str:
  shown = "; ".join(record_where(source, int(i)) for i in indices[:limit])
  return shown + ("; ..." if len(indices) > limit else "")


def _parts(splits) -> dict:
  """split name -> source, with the test split's open-set part apart (``Concat``)."""
  from ltjax.data.sources.base import Concat

  parts = {"train": splits.train, "val": splits.val}
  test = splits.test
  if isinstance(test, Concat) and len(test.sources) == 2:
    parts["test"], parts["open"] = test.sources
  else:
    parts["test"] = test
  return parts


def check_splits(splits, *, allow_train_duplicates: bool = False) -> None:
  """Refuses splits that share records or repeat one, naming the records; logs the classes
  without test images.

  Raises:
    ValueError: a record in two splits (unless ``splits.shared`` declares the pair), or twice
      in one (train: unless ``allow_train_duplicates``), naming the records and where they
      are listed.
  """
  parts = {name: s for name, s in _parts(splits).items() if len(s)}
  keys = {name: record_keys(s) for name, s in parts.items()}
  for name, source in parts.items():
    if name == "train" and allow_train_duplicates:
      continue
    counts = collections.Counter(keys[name])
    if len(counts) < len(keys[name]):
      repeated = {k for k, n in counts.items() if n > 1}
      rows = [i for i, k in enumerate(keys[name]) if k in repeated]
      fix = (
        " (or set --config.dataset.allow_train_duplicates=True if the repeats are meant as "
        "oversampling)"
        if name == "train"
        else ""
      )
      raise ValueError(
        f"the {name} split lists {len(repeated)} image(s) more than once: "
        f"{_named(source, rows)}. Remove the repeated lines{fix}."
      )
  shared = {frozenset(p) for p in getattr(splits, "shared", ())}
  names = list(parts)
  sets = {name: set(k) for name, k in keys.items()}
  for i, a in enumerate(names):
    for b in names[i + 1 :]:
      if frozenset((a, b)) in shared:
        continue
      common = sets[a] & sets[b]
      if common:
        rows_a = [j for j, k in enumerate(keys[a]) if k in common]
        rows_b = [j for j, k in enumerate(keys[b]) if k in common]
        raise ValueError(
          f"{len(common)} image(s) are in both the {a} and the {b} split: "
          f"{_named(parts[a], rows_a, 3)} and {_named(parts[b], rows_b, 3)}. A model "
          f"evaluated on images it was trained or selected on scores too high: remove them "
          f"from one of the two lists."
        )
  _log_untested_classes(splits)


def _log_untested_classes(splits) -> None:
  labels = np.asarray(splits.test.labels)
  tested = np.bincount(labels[labels >= 0], minlength=splits.num_classes)
  missing = np.flatnonzero(tested == 0)
  if not missing.size or not len(labels):
    return
  names = splits.class_names
  shown = ", ".join(
    f"{int(k)}" + (f" ({names[k]})" if names is not None else "") for k in missing[:10]
  ) + (", ..." if missing.size > 10 else "")
  log.warning(
    "%d class(es) have no test images: %s. Their accuracy is not measured (null in "
    "per_class.json; the shot-group and mean-class figures leave them out).",
    missing.size,
    shown,
  )
