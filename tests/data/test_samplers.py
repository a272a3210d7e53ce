"""Tests for ltjax.data.samplers."""

import numpy as np
import pytest

from ltjax.data import samplers

K = 10
SIGMAS = 5.0


def long_tail_labels(seed: int = 0) -> np.ndarray:
  """K = 10 classes with n_j = max(floor(500 * 0.6^j), 1), in shuffled order."""
  counts = np.maximum(np.floor(500 * 0.6 ** np.arange(K)), 1).astype(np.int64)
  labels = np.repeat(np.arange(K), counts)
  return np.random.default_rng(seed).permutation(labels)


LABELS = long_tail_labels()
COUNTS = np.bincount(LABELS, minlength=K)
N = LABELS.size


def class_frequencies(name: str, epochs, labels=LABELS, **options) -> np.ndarray:
  """Summed class histogram of labels[indices] over the given epochs."""
  hist = np.zeros(K, np.int64)
  for epoch in epochs:
    idx = samplers.epoch_indices(name, labels, K, epoch, seed=3, **options)
    assert idx.shape == (labels.size,) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < labels.size
    hist += np.bincount(labels[idx], minlength=K)
  return hist


def assert_binomial(hist: np.ndarray, p: np.ndarray) -> None:
  """Every count is within SIGMAS binomial standard deviations of M * p_j."""
  m = hist.sum()
  expected = m * p
  tolerance = SIGMAS * np.sqrt(m * p * (1 - p)) + 1
  np.testing.assert_array_less(np.abs(hist - expected), tolerance)


# ------------------------------------------------------------------------------------------
# Probabilities.


def test_class_probabilities_hand_example():
  counts = np.array([9, 4, 1])
  np.testing.assert_allclose(samplers.class_probabilities(counts, 1.0), [9 / 14, 4 / 14, 1 / 14])
  np.testing.assert_allclose(samplers.class_probabilities(counts, 0.5), [3 / 6, 2 / 6, 1 / 6])
  np.testing.assert_allclose(samplers.class_probabilities(counts, 0.0), [1 / 3] * 3)
  # q > 0: an empty class simply gets probability 0.
  np.testing.assert_allclose(samplers.class_probabilities([4, 0, 1], 0.5), [2 / 3, 0, 1 / 3])
  p = samplers.class_probabilities(COUNTS, 0.3)
  assert p.dtype == np.float64 and p.shape == (K,)
  np.testing.assert_allclose(p.sum(), 1.0)


def test_progressive_probabilities_exact():
  counts = np.array([6, 3, 1])
  instance, uniform = np.array([0.6, 0.3, 0.1]), np.full(3, 1 / 3)
  np.testing.assert_allclose(samplers.progressive_probabilities(counts, 0, 5), instance)
  np.testing.assert_allclose(samplers.progressive_probabilities(counts, 4, 5), uniform)
  np.testing.assert_allclose(
    samplers.progressive_probabilities(counts, 2, 5), 0.5 * instance + 0.5 * uniform
  )
  np.testing.assert_allclose(
    samplers.progressive_probabilities(counts, 1, 5), 0.75 * instance + 0.25 * uniform
  )
  # Past the end: clamped to the last (class-balanced) epoch. T = 1: instance-balanced.
  np.testing.assert_allclose(samplers.progressive_probabilities(counts, 9, 5), uniform)
  np.testing.assert_allclose(samplers.progressive_probabilities(counts, 0, 1), instance)


# ------------------------------------------------------------------------------------------
# Empirical marginals.


def test_instance_is_a_permutation():
  for epoch in range(3):
    idx = samplers.epoch_indices("instance", LABELS, K, epoch, seed=0)
    np.testing.assert_array_equal(np.sort(idx), np.arange(N))
  idx = samplers.epoch_indices("qpower", LABELS, K, 0, seed=0, q=1.0)
  np.testing.assert_array_equal(np.sort(idx), np.arange(N))


@pytest.mark.parametrize(
  "name,q,options",
  [
    ("instance", 1.0, {}),
    ("class_balanced", 0.0, {}),
    ("sqrt", 0.5, {}),
    ("qpower", 0.0, {"q": 0.0}),
    ("qpower", 0.5, {"q": 0.5}),
    ("qpower", 0.8, {"q": 0.8}),
  ],
)
def test_qpower_marginals(name, q, options):
  hist = class_frequencies(name, range(4), **options)
  assert_binomial(hist, samplers.class_probabilities(COUNTS, q))


@pytest.mark.parametrize("epoch", [0, 4, 8])
def test_progressive_marginals(epoch):
  hist = class_frequencies("progressive", range(epoch, epoch + 40, 10), num_epochs=9)
  # Epochs past the end are clamped to 8, so e.g. 4, 14, ... mix 4 and 8: compare the sum.
  p = sum(samplers.progressive_probabilities(COUNTS, e, 9) for e in range(epoch, epoch + 40, 10))
  assert_binomial(hist, p / 4)
  single = class_frequencies("progressive", range(epoch, epoch + 1), num_epochs=9)
  expected = {0: COUNTS / N, 4: None, 8: np.full(K, 1 / K)}[epoch]
  if expected is not None:  # First epoch = instance marginals, last = uniform.
    assert_binomial(single, expected)
  assert_binomial(single, samplers.progressive_probabilities(COUNTS, epoch, 9))


def test_progressive_middle_epoch_is_between():
  hist = class_frequencies("progressive", range(4, 5), num_epochs=9)
  p = samplers.progressive_probabilities(COUNTS, 4, 9)
  np.testing.assert_allclose(p, 0.5 * COUNTS / N + 0.5 / K)
  assert_binomial(hist, p)
  # Head class clearly below its instance share, tail class clearly above.
  assert hist[0] / N < 0.8 * COUNTS[0] / N and hist[-1] / N > 5 * COUNTS[-1] / N


@pytest.mark.parametrize("k", [1, 4, 7])
def test_class_aware_groups_and_marginals(k):
  for epoch in range(3):
    idx = samplers.epoch_indices("class_aware", LABELS, K, epoch, seed=1, k=k)
    assert idx.shape == (N,)
    cls = LABELS[idx]
    # Every aligned group of k holds one class (the last group may be short).
    padded = np.concatenate([cls, np.full(-N % k, -1)]).reshape(-1, k)
    for group in padded:
      group = group[group >= 0]
      assert np.all(group == group[0])
    # Classes are cycled: in each round of K groups every class appears once.
    group_cls = padded[:, 0]
    for start in range(0, len(group_cls) - K + 1, K):
      np.testing.assert_array_equal(np.sort(group_cls[start : start + K]), np.arange(K))
    # Instances of a class are cycled too: hit counts differ by at most one.
    hits = np.bincount(idx, minlength=N)
    for j in range(K):
      member_hits = hits[LABELS == j]
      assert member_hits.max() - member_hits.min() <= 1
  assert_binomial(class_frequencies("class_aware", range(3), k=k), np.full(K, 1 / K))


def test_class_aware_batch_shuffle():
  plain = samplers.epoch_indices("class_aware", LABELS, K, 2, seed=5)
  shuffled = samplers.epoch_indices(
    "class_aware", LABELS, K, 2, seed=5, shuffle_in_batch=True, batch_size=32
  )
  assert not np.array_equal(plain, shuffled)
  for start in range(0, N, 32):  # Includes the short last batch (N % 32 != 0).
    np.testing.assert_array_equal(
      np.sort(shuffled[start : start + 32]), np.sort(plain[start : start + 32])
    )
  # A batch now mixes classes instead of 8 contiguous groups of 4.
  first = LABELS[shuffled[:32]]
  assert any(len(set(first[i : i + 4])) > 1 for i in range(0, 32, 4))


def test_qpower_within_class_instances_uniform():
  counts = np.array([40, 10, 3])
  labels = np.random.default_rng(1).permutation(np.repeat(np.arange(3), counts))
  for q in (0.0, 0.5):
    hits = np.zeros(labels.size, np.int64)
    for epoch in range(200):
      idx = samplers.epoch_indices("qpower", labels, 3, epoch, seed=0, q=q)
      hits += np.bincount(idx, minlength=labels.size)
    drawn = np.bincount(labels, weights=hits).astype(np.int64)
    assert_binomial(drawn, samplers.class_probabilities(counts, q))
    for j, n_j in enumerate(counts):
      member_hits = hits[labels == j]
      p = 1 / n_j
      m = drawn[j]
      assert np.all(np.abs(member_hits - m * p) < SIGMAS * np.sqrt(m * p * (1 - p)) + 1), (q, j)


def test_qpower_empty_class_never_drawn():
  labels = np.array([0, 0, 0, 2, 2, 3])
  for q in (0.5, 1e-3):
    for epoch in range(20):
      idx = samplers.epoch_indices("qpower", labels, 4, epoch, seed=0, q=q)
      assert not np.any(labels[idx] == 1)


# ------------------------------------------------------------------------------------------
# Determinism and registry.


@pytest.mark.parametrize("name", sorted(samplers.SAMPLERS))
def test_determinism(name):
  own = {"qpower": {"q": 0.3}, "progressive": {"num_epochs": 5}, "class_aware": {"batch_size": 16}}
  options = own.get(name, {})
  a = samplers.epoch_indices(name, LABELS, K, 2, seed=7, **options)
  b = samplers.epoch_indices(name, list(LABELS), K, 2, seed=7, **options)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, samplers.epoch_indices(name, LABELS, K, 3, seed=7, **options))
  assert not np.array_equal(a, samplers.epoch_indices(name, LABELS, K, 2, seed=8, **options))
  np.testing.assert_array_equal(a, samplers.get(name)(**options).indices(LABELS, K, 2, 7))


def test_progressive_past_last_epoch_is_clamped():
  last = samplers.epoch_indices("progressive", LABELS, K, 4, seed=0, num_epochs=5)
  extra = samplers.epoch_indices("progressive", LABELS, K, 5, seed=0, num_epochs=5)
  assert not np.array_equal(last, extra)  # Own RNG stream ...
  assert_binomial(np.bincount(LABELS[extra], minlength=K), np.full(K, 1 / K))  # ... balanced.


def test_registry_names_select_the_documented_sampler():
  """Each name is its formula: instance = a permutation, class_balanced / sqrt = q-power
  with q = 0 / 1/2 (same draws for the same seed), progressive = q-power's probabilities at
  its first and last epoch, class_aware = groups of k of one class."""
  assert set(samplers.SAMPLERS) == {
    "instance",
    "class_balanced",
    "sqrt",
    "qpower",
    "progressive",
    "class_aware",
  }
  labels = np.repeat(np.arange(4), [40, 20, 10, 5])
  draw = lambda name, **kw: samplers.epoch_indices(name, labels, 4, epoch=1, seed=7, **kw)
  np.testing.assert_array_equal(np.sort(draw("instance")), np.arange(labels.size))
  np.testing.assert_array_equal(draw("class_balanced"), draw("qpower", q=0.0))
  np.testing.assert_array_equal(draw("sqrt"), draw("qpower", q=0.5))
  first = samplers.progressive_probabilities(np.bincount(labels), 0, 10)
  last = samplers.progressive_probabilities(np.bincount(labels), 9, 10)
  np.testing.assert_allclose(first, samplers.class_probabilities(np.bincount(labels), 1.0))
  np.testing.assert_allclose(last, samplers.class_probabilities(np.bincount(labels), 0.0))
  groups = labels[draw("class_aware", k=5)].reshape(-1, 5)
  assert (groups == groups[:, :1]).all()
  for name, fn in samplers.SAMPLERS.items():
    assert samplers.get(name) is fn


# ------------------------------------------------------------------------------------------
# Errors.

ZERO_CLASS_LABELS = np.array([0, 0, 1, 2, 2, 2, 4])  # Class 3 has no samples.


@pytest.mark.parametrize(
  "name,options",
  [
    ("class_balanced", {}),
    ("qpower", {"q": 0.0}),
    ("progressive", {"num_epochs": 3}),
    ("class_aware", {}),
  ],
)
def test_zero_sample_class_raises(name, options):
  with pytest.raises(ValueError, match=r"class 3 has no training samples") as info:
    samplers.epoch_indices(name, ZERO_CLASS_LABELS, 5, 0, seed=0, **options)
  assert name in str(info.value)


def test_zero_sample_classes_listed():
  with pytest.raises(ValueError, match=r"classes \[3, 5\]"):
    samplers.epoch_indices("class_aware", ZERO_CLASS_LABELS, 6, 0, seed=0)
  with pytest.raises(ValueError, match="class 3"):
    samplers.class_probabilities(np.bincount(ZERO_CLASS_LABELS), 0.0)
  with pytest.raises(ValueError, match="class 3"):
    samplers.progressive_probabilities(np.bincount(ZERO_CLASS_LABELS), 0, 3)


def test_zero_sample_class_allowed_for_instance_and_sqrt():
  for name in ("instance", "sqrt"):
    idx = samplers.epoch_indices(name, ZERO_CLASS_LABELS, 5, 0, seed=0)
    assert idx.shape == ZERO_CLASS_LABELS.shape


def test_label_out_of_range():
  with pytest.raises(ValueError, match=r"labels\[2\] = 5"):
    samplers.epoch_indices("sqrt", [0, 1, 5, 1], 5, 0, seed=0)
  with pytest.raises(ValueError, match=r"labels\[0\] = -1"):
    samplers.epoch_indices("instance", [-1, 0], 3, 0, seed=0)


def test_empty_labels():
  with pytest.raises(ValueError, match="empty"):
    samplers.epoch_indices("instance", np.zeros(0, np.int64), 3, 0, seed=0)


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="--config.sampler.name='balanced': unknown sampler") as info:
    samplers.epoch_indices("balanced", LABELS, K, 0, seed=0)
  for name in samplers.SAMPLERS:
    assert name in str(info.value)


def test_missing_options():
  with pytest.raises(ValueError, match="needs q"):
    samplers.epoch_indices("qpower", LABELS, K, 0, seed=0)
  with pytest.raises(ValueError, match="needs num_epochs"):
    samplers.epoch_indices("progressive", LABELS, K, 0, seed=0)


def test_bad_values():
  with pytest.raises(ValueError, match="1.5"):
    samplers.epoch_indices("qpower", LABELS, K, 0, seed=0, q=1.5)
  with pytest.raises(ValueError, match="1.5"):
    samplers.class_probabilities(COUNTS, 1.5)
  with pytest.raises(ValueError, match="-0.1"):
    samplers.class_probabilities(COUNTS, -0.1)
  with pytest.raises(ValueError, match="k must be >= 1"):
    samplers.epoch_indices("class_aware", LABELS, K, 0, seed=0, k=0)
  with pytest.raises(ValueError, match="batch_size must be >= 1"):
    samplers.epoch_indices("class_aware", LABELS, K, 0, seed=0, batch_size=0)
  with pytest.raises(ValueError, match="num_epochs must be >= 1"):
    samplers.epoch_indices("progressive", LABELS, K, 0, seed=0, num_epochs=0)
  with pytest.raises(ValueError, match="epoch must be >= 0"):
    samplers.epoch_indices("sqrt", LABELS, K, -1, seed=0)
  with pytest.raises(ValueError, match="all zero"):
    samplers.class_probabilities([0, 0], 0.5)
