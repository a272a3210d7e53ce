"""Per-record random numbers: the key of every augmentation's randomness.

Every random number used to augment a record is a hash of (seed, the record's
position in the global sample stream, draw id). So a record is augmented the same
way whatever the batch size, the number of processes or the prefetch order; this is
what makes resumed runs and multi-process runs reproduce single-process runs.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
  x = x + _GOLDEN
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def record_uniforms(seed: int, positions: np.ndarray, num_draws: int) -> np.ndarray:
  """Uniform [0, 1) numbers, a pure function of (seed, position, draw).

  Args:
    seed: stream seed.
    positions: (B,) global positions of the records in the sample stream.
    num_draws: random numbers needed per record.

  Returns:
    (B, num_draws) float64.
  """
  positions = np.asarray(positions, dtype=np.uint64)
  with np.errstate(over="ignore"):
    key = _splitmix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(0x5EED))
    base = _splitmix64(key ^ positions)[:, None]
    draws = np.arange(num_draws, dtype=np.uint64)[None, :]
    bits = _splitmix64(base + draws * _GOLDEN)
  return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
