"""Epoch samplers for long-tailed training: q-power, progressively-balanced, class-aware.

A sampler is a pure, deterministic function of ``(labels, epoch, seed)`` that returns the
dataset indices of one epoch. Every sampler emits exactly ``N = len(labels)`` indices per
epoch, so an "epoch" has the same number of steps whatever the sampler. The RNG of epoch
``e`` is ``np.random.default_rng([seed, e])``: the same ``(labels, epoch, seed)`` always gives
the same indices, and nothing carries over from one epoch to the next.

Samplers (Kang et al. 2020, "Decoupling Representation and Classifier"):

* q-power: class j is drawn with probability ``p_j = n_j^q / sum_i n_i^q`` (``n_j`` its
  training count), then one of its instances uniformly at random. ``"instance"`` is q = 1,
  ``"class_balanced"`` q = 0, ``"sqrt"`` q = 1/2, ``"qpower"`` any q in [0, 1].
* ``"progressive"``: ``p_j(t) = (1 - t/T') p_j(q=1) + (t/T') p_j(q=0)``, moving from
  instance-balanced at the first epoch to class-balanced at the last.
* ``"class_aware"``: the reference ``ClassAwareSampler``: cycle over the classes in shuffled
  order and emit ``k`` consecutive instances of each, so the marginals are class-balanced.

A sampler is a registered class (:data:`SAMPLERS`) whose dataclass fields are its own
options, validated when it is built; the training loop builds it from the config with
:func:`from_config` (each field from ``config.sampler``, or the run-wide ``num_epochs`` and
``batch_size``) and never asks which sampler it is. A new sampler, or a new option, is a
class here (and, for an option, its meaning in the class docstring's ``Attributes:``
section, which ``--help`` shows, and its default in ``config.sampler``)::

  idx = epoch_indices("sqrt", source.labels, source.num_classes, epoch=3, seed=0)
  sampler = get("progressive")(num_epochs=90)
  idx = sampler.indices(labels, num_classes, epoch, seed)
"""

from __future__ import annotations

import dataclasses
import operator
from typing import ClassVar

import numpy as np

from ltjax.config import components
from ltjax.config.schema import base_config
from ltjax.data.sources import check_labels

# ------------------------------------------------------------------------------------------
# Validation helpers.


def _as_int(name: str, value, minimum: int) -> int:
  """Returns ``value`` as a Python int, checking it is an integer >= ``minimum``."""
  if isinstance(value, bool):
    raise ValueError(f"{name} must be an integer, got {value!r}.")
  try:
    value = operator.index(value)
  except TypeError:
    raise ValueError(f"{name} must be an integer, got {value!r}.") from None
  if value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}.")
  return value


def _check_q(q) -> float:
  """Returns ``q`` as a float after checking it lies in [0, 1]."""
  try:
    q = float(q)
  except (TypeError, ValueError):
    raise ValueError(f"q must be a number in [0, 1], got {q!r}.") from None
  if not 0.0 <= q <= 1.0:  # Also rejects NaN.
    raise ValueError(f"q must be in [0, 1] (1 = instance-balanced, 0 = class-balanced), got {q}.")
  return q


def _check_counts(counts) -> np.ndarray:
  """Returns ``counts`` as a float64 (K,) array after checking it is a valid count vector."""
  counts = np.asarray(counts)
  if counts.ndim != 1 or counts.size == 0:
    raise ValueError(f"counts must be a non-empty 1-D array, got shape {counts.shape}.")
  if not np.issubdtype(counts.dtype, np.number) or np.issubdtype(counts.dtype, np.complexfloating):
    raise ValueError(f"counts must be real numbers, got dtype {counts.dtype}.")
  counts = counts.astype(np.float64)
  bad = np.flatnonzero(~np.isfinite(counts) | (counts < 0))
  if bad.size:
    i = int(bad[0])
    raise ValueError(f"counts[{i}] = {counts[i]} must be finite and >= 0.")
  if counts.sum() == 0:
    raise ValueError("counts are all zero; there is no training sample to draw.")
  return counts


def _empty_classes_message(empty: np.ndarray, what: str) -> str:
  ids = [int(c) for c in empty[:10]]
  more = f" (and {empty.size - 10} more)" if empty.size > 10 else ""
  if empty.size == 1:
    head = f"class {ids[0]} has no training samples"
  else:
    head = f"classes {ids}{more} have no training samples"
  return (
    f"{head}; {what} needs at least one per class. Remove the class(es) or use "
    "sampler 'instance' (or 'qpower' with q > 0, where an empty class gets p = 0)."
  )


def _require_nonempty_classes(counts: np.ndarray, what: str) -> None:
  empty = np.flatnonzero(np.asarray(counts) == 0)
  if empty.size:
    raise ValueError(_empty_classes_message(empty, what))


# ------------------------------------------------------------------------------------------
# Class statistics and probabilities.


def _labels_and_counts(labels, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """Validated (N,) int32 labels and their (K,) int64 class counts."""
  num_classes = _as_int("num_classes", num_classes, 1)
  labels = np.asarray(labels)
  if labels.size == 0:
    raise ValueError("labels is empty; a sampler needs at least one training sample.")
  labels = check_labels(labels, num_classes)
  return labels, np.bincount(labels, minlength=num_classes).astype(np.int64)


def class_probabilities(counts, q: float) -> np.ndarray:
  """q-power class probabilities ``p_j = n_j^q / sum_i n_i^q``.

  q = 1 is instance-balanced (``p_j = n_j / N``), q = 0 class-balanced (``p_j = 1 / K``),
  q = 1/2 square-root sampling. For q > 0 a class with ``n_j = 0`` simply gets ``p_j = 0``;
  for q = 0 (where ``0^0`` would give it a share) it is an error.

  Args:
    counts: (K,) non-negative class counts ``n_j``.
    q: exponent in [0, 1].

  Returns:
    (K,) float64 probabilities summing to 1.

  Raises:
    ValueError: if q is outside [0, 1], counts are invalid or all zero, or q = 0 and some
      class has no samples.
  """
  q = _check_q(q)
  counts = _check_counts(counts)
  if q == 0.0:
    _require_nonempty_classes(counts, "class-balanced sampling (q = 0)")
    return np.full(counts.shape, 1.0 / counts.size)
  weights = np.where(counts > 0, counts**q, 0.0)
  return weights / weights.sum()


def progressive_probabilities(counts, epoch: int, num_epochs: int) -> np.ndarray:
  """Progressively-balanced class probabilities for one epoch.

  ``p_j(t) = (1 - t/T') p_j(q=1) + (t/T') p_j(q=0)`` with ``T' = max(T - 1, 1)``: epoch 0 is
  instance-balanced and the last epoch ``T - 1`` exactly class-balanced. This follows the
  reference code; the paper writes ``t/T``, under which the last epoch would still be
  slightly instance-weighted. With ``T = 1`` the single epoch is instance-balanced.

  ``epoch >= num_epochs`` is clamped to the last epoch (class-balanced): training may run a
  partial extra epoch when batches straddle epoch boundaries.

  Args:
    counts: (K,) class counts; every class needs at least one sample.
    epoch: t >= 0.
    num_epochs: T >= 1.

  Returns:
    (K,) float64 probabilities summing to 1.

  Raises:
    ValueError: if a class has no samples, or epoch / num_epochs are out of range.
  """
  num_epochs = _as_int("num_epochs", num_epochs, 1)
  epoch = _as_int("epoch", epoch, 0)
  counts = _check_counts(counts)
  _require_nonempty_classes(counts, "the progressive sampler")
  t = min(epoch, num_epochs - 1)
  alpha = t / max(num_epochs - 1, 1)
  return (1.0 - alpha) * class_probabilities(counts, 1.0) + alpha * class_probabilities(counts, 0.0)


# ------------------------------------------------------------------------------------------
# Drawing indices.


def _rng(seed: int, epoch: int) -> np.random.Generator:
  return np.random.default_rng([seed, epoch])


def _prepare(labels, num_classes: int, epoch: int, seed: int):
  """Validates the common arguments; returns (labels int32, counts int64, rng)."""
  epoch = _as_int("epoch", epoch, 0)
  seed = _as_int("seed", seed, 0)
  labels, counts = _labels_and_counts(labels, num_classes)
  return labels, counts, _rng(seed, epoch)


def _by_class(labels: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Indices sorted by class, and where each class starts in that order."""
  order = np.argsort(labels, kind="stable").astype(np.int64)
  starts = np.cumsum(counts) - counts
  return order, starts


def _draw_from_probabilities(
  labels: np.ndarray, counts: np.ndarray, p: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
  """N i.i.d. draws: a class with probability p, then one of its instances uniformly."""
  n = labels.size
  order, starts = _by_class(labels, counts)
  cls = rng.choice(counts.size, size=n, p=p)
  # p_j = 0 for empty classes, so every drawn class has counts[cls] >= 1.
  offsets = rng.integers(0, counts[cls])
  return order[starts[cls] + offsets]


def _qpower_draw(labels, num_classes, epoch, seed, q: float, name: str) -> np.ndarray:
  q = _check_q(q)
  labels, counts, rng = _prepare(labels, num_classes, epoch, seed)
  if q == 1.0:
    # Without replacement: class j fills exactly n_j of the N slots, the expected share under
    # i.i.d. q = 1 draws (same marginals), and every image is seen once per epoch.
    return rng.permutation(labels.size).astype(np.int64)
  if q == 0.0:
    _require_nonempty_classes(counts, f"the {name} sampler")
  p = class_probabilities(counts, q)
  return _draw_from_probabilities(labels, counts, p, rng)


class Sampler:
  """Base of the registered samplers: a sampler's dataclass fields are its options.

  ``indices(labels, num_classes, epoch, seed)`` returns the (N,) int64 dataset indices of
  one epoch, a pure function of its arguments and the options.
  """

  name: ClassVar[str]

  def indices(self, labels, num_classes: int, epoch: int, seed: int) -> np.ndarray:
    raise NotImplementedError


SAMPLERS: components.Registry = components.Registry("sampler", "sampler.name")
#: Class decorator: adds a sampler to ``SAMPLERS`` under ``cls.name``.
register = SAMPLERS.register
#: The sampler class registered as ``name``; a ValueError listing the valid names otherwise.
get = SAMPLERS.lookup


@register
@dataclasses.dataclass(frozen=True)
class Instance(Sampler):
  """Instance-balanced sampling (q = 1): a random permutation of ``range(N)``.

  Sampling without replacement has the same class marginals ``n_j / N`` as q-power sampling
  with q = 1 and shows every image exactly once per epoch.
  """

  name = "instance"

  def indices(self, labels, num_classes, epoch, seed):
    return _qpower_draw(labels, num_classes, epoch, seed, 1.0, self.name)


@register
@dataclasses.dataclass(frozen=True)
class ClassBalanced(Sampler):
  """Class-balanced sampling (q = 0): a uniform class, then a uniform instance, N times.
  Every class needs a training sample."""

  name = "class_balanced"

  def indices(self, labels, num_classes, epoch, seed):
    return _qpower_draw(labels, num_classes, epoch, seed, 0.0, self.name)


@register
@dataclasses.dataclass(frozen=True)
class Sqrt(Sampler):
  """Square-root sampling (q = 1/2); empty classes get p = 0."""

  name = "sqrt"

  def indices(self, labels, num_classes, epoch, seed):
    return _qpower_draw(labels, num_classes, epoch, seed, 0.5, self.name)


@register
@dataclasses.dataclass(frozen=True)
class QPower(Sampler):
  """q-power sampling for any q in [0, 1] (``config.sampler.q``).

  q = 1 returns a random permutation (see :class:`Instance`); otherwise N i.i.d. draws of a
  class with ``p_j = n_j^q / sum_i n_i^q`` and a uniform instance of it. For q > 0 an empty
  class has p = 0; for q = 0 it is an error.

  Attributes:
    q: the power: class j is drawn with probability ``n_j^q / sum_i n_i^q`` (1/2 =
      square-root sampling, 0 = class-balanced).
  """

  name = "qpower"
  q: float

  def __post_init__(self):
    object.__setattr__(self, "q", _check_q(self.q))

  def indices(self, labels, num_classes, epoch, seed):
    return _qpower_draw(labels, num_classes, epoch, seed, self.q, "qpower (q = 0)")


@register
@dataclasses.dataclass(frozen=True)
class Progressive(Sampler):
  """Progressively-balanced sampling: N i.i.d. draws from :func:`progressive_probabilities`
  over ``num_epochs`` (T, the run's ``config.num_epochs``).

  ``epoch >= num_epochs`` uses the last epoch's (class-balanced) probabilities, but still its
  own RNG stream. Epoch 0 draws i.i.d. with the instance marginals rather than permuting.
  Every class needs a training sample.

  Attributes:
    num_epochs: T, the epochs over which the sampling moves from instance- to
      class-balanced: the run's ``config.num_epochs``.
  """

  name = "progressive"
  num_epochs: int

  def __post_init__(self):
    object.__setattr__(self, "num_epochs", _as_int("num_epochs", self.num_epochs, 1))

  def indices(self, labels, num_classes, epoch, seed):
    labels, counts, rng = _prepare(labels, num_classes, epoch, seed)
    _require_nonempty_classes(counts, "the progressive sampler")
    p = progressive_probabilities(counts, epoch, self.num_epochs)
    return _draw_from_probabilities(labels, counts, p, rng)


@register
@dataclasses.dataclass(frozen=True)
class ClassAware(Sampler):
  """Class-aware sampling, ``k`` consecutive samples per class (reference ClassAwareSampler).

  Classes are visited in a shuffled order, reshuffled every time all K have been visited;
  each visit emits ``k`` consecutive instances of that class. Each class's instances are
  likewise cycled in a shuffled order, reshuffled when the class is exhausted. The output
  is truncated to N (the last group may be short), so the marginals are class-balanced and
  every aligned block ``[g*k, (g+1)*k)`` holds one class. Unlike the reference (whose
  iterators persist across epochs and whose epoch is ``max_j n_j * K`` long), every epoch
  starts fresh from its own RNG and has N samples.

  Attributes:
    k: samples per class visit, >= 1 (``config.sampler.k``).
    shuffle_in_batch: also shuffle the positions inside each consecutive block of
      ``batch_size`` (the last block may be short), as the cRT reference does so that a
      batch mixes classes (``config.sampler.shuffle_in_batch``).
    batch_size: the block of ``shuffle_in_batch``: the run's global batch.
  """

  name = "class_aware"
  k: int = 4
  shuffle_in_batch: bool = False
  batch_size: int = 1

  def __post_init__(self):
    object.__setattr__(self, "k", _as_int("k", self.k, 1))
    object.__setattr__(self, "batch_size", _as_int("batch_size", self.batch_size, 1))

  def indices(self, labels, num_classes, epoch, seed):
    k, batch_size = self.k, self.batch_size if self.shuffle_in_batch else None
    labels, counts, rng = _prepare(labels, num_classes, epoch, seed)
    _require_nonempty_classes(counts, "the class_aware sampler")
    n, num_cls = labels.size, counts.size
    order, starts = _by_class(labels, counts)

    # Class of every group: concatenated independent permutations of the K classes.
    groups = -(-n // k)
    rounds = -(-groups // num_cls)
    class_seq = rng.permuted(np.tile(np.arange(num_cls, dtype=np.int64), (rounds, 1)), axis=1)
    sample_cls = np.repeat(class_seq.ravel()[:groups], k)[:n]

    # rank[i]: how many earlier samples drew the same class, i.e. position in its class stream.
    drawn = np.bincount(sample_cls, minlength=num_cls)
    by_cls = np.argsort(sample_cls, kind="stable")
    rank = np.empty(n, np.int64)
    rank[by_cls] = np.arange(n) - np.repeat(np.cumsum(drawn) - drawn, drawn)

    # Instance stream of class c: ceil(drawn_c / n_c) independently shuffled passes over its
    # instances, laid out contiguously per class. Every pass ("segment") is shuffled at once.
    passes = -(-drawn // counts)
    seg_cls = np.repeat(np.arange(num_cls), passes)
    seg_len = counts[seg_cls]
    seg_id = np.repeat(np.arange(seg_cls.size), seg_len)
    within = np.arange(seg_len.sum()) - np.repeat(np.cumsum(seg_len) - seg_len, seg_len)
    stream = order[starts[seg_cls[seg_id]] + within]
    stream = stream[_shuffle_within(seg_id, rng)]
    stream_len = passes * counts
    stream_start = np.cumsum(stream_len) - stream_len
    indices = stream[stream_start[sample_cls] + rank]

    if batch_size is not None and batch_size > 1:
      indices = indices[_shuffle_within(np.arange(n) // batch_size, rng)]
    return indices.astype(np.int64)


def _shuffle_within(segment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A permutation that shuffles positions within each run of a sorted segment-id array.

  Sorting on the exact int64 key ``segment * 2^32 + random32`` keeps segments in place (a
  two-key ``np.lexsort`` would do the same but is ~10x slower).
  """
  key = (segment.astype(np.int64) << 32) | rng.integers(0, 2**32, size=segment.size, dtype=np.int64)
  return np.argsort(key, kind="stable")


def from_config(config) -> Sampler:
  """The sampler of a run: ``config.sampler.name`` built with its options, each field of
  the sampler class from ``config.sampler`` or, for the run-wide ``num_epochs`` and
  ``batch_size``, from the config itself. Checks the options before any data is read.

  Raises:
    ValueError: an unknown name, an option out of range (naming its config field), or
      another sampler's option set away from its default (``--config.sampler.q=0.5`` with
      the instance sampler would do nothing).
  """
  cls = get(config.sampler.name)
  components.refuse_foreign_option(SAMPLERS, cls.name, config.sampler, base_config().sampler)
  values = {**config.sampler, "num_epochs": config.num_epochs, "batch_size": config.batch_size}
  options = {f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}
  try:
    return _build(cls, options)
  except ValueError as e:
    fields = ", ".join(f"--config.sampler.{f}" for f in options if f in config.sampler)
    raise ValueError(f"sampler {cls.name!r}: {e} ({fields or 'no options'})") from None


def _build(cls: type[Sampler], options: dict) -> Sampler:
  """``cls(**options)``, with a ValueError naming unknown or missing options."""
  fields = dataclasses.fields(cls)
  unknown = sorted(set(options) - {f.name for f in fields})
  if unknown:
    raise ValueError(f"sampler {cls.name!r} has no option(s) {unknown}.")
  missing = [
    f.name
    for f in fields
    if f.name not in options
    and f.default is dataclasses.MISSING
    and f.default_factory is dataclasses.MISSING
  ]
  if missing:
    raise ValueError(f"sampler {cls.name!r} needs {', '.join(missing)}; pass {missing[0]}=....")
  return cls(**options)


def epoch_indices(
  name: str, labels, num_classes: int, epoch: int, seed: int, **options
) -> np.ndarray:
  """Dataset indices for one epoch of sampler ``name`` built with ``options``.

  Args:
    name: one of :data:`SAMPLERS`: "instance", "class_balanced", "sqrt", "qpower",
      "progressive", "class_aware".
    labels: (N,) class ids of the training set.
    num_classes: K.
    epoch: epoch number >= 0; the RNG is ``np.random.default_rng([seed, epoch])``.
    seed: base seed >= 0.
    **options: the sampler's own options (``q``; ``num_epochs``; ``k``,
      ``shuffle_in_batch``, ``batch_size``).

  Returns:
    (N,) int64 indices into ``labels``; a pure function of the arguments.

  Raises:
    ValueError: for an unknown name or option, bad labels, or a class without samples
      under a sampler that must draw every class.
  """
  return _build(get(name), options).indices(labels, num_classes, epoch, seed)
