"""The train state: arrays only, so it can be jitted, donated, sharded and checkpointed."""

from __future__ import annotations

from typing import Any

import flax
import jax


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes.

  Attributes:
    step: scalar int32, number of steps taken.
    params: model parameters.
    batch_stats: BatchNorm running statistics.
    opt_state: optax state.
    rng: uint32[2] key; step randomness is ``fold_in(rng, step)``.
    centroids: OLTR class centroids (K, D), or None for other stages.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  centroids: Any = None
