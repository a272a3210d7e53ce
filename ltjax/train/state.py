"""The train state: arrays only, so it can be jitted, donated, sharded and checkpointed.

What every stage trains (parameters, BatchNorm statistics, the optimizer state) has its own
field; what one stage alone keeps (OLTR's class centroids) lives in ``extra``, which that
stage fills (``ltjax.train.stages.Stage.init_extra``) and reads (its loss and its head's
inputs), so the generic step, init, optimizer groups and model never name it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    extra: the stage's own arrays, ``{name: array}`` (OLTR: ``{"centroids": (K, D)}``), or
      None when the stage keeps none. Each entry is trained as the optimizer group of its
      name (``Stage.extra_groups``).
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  extra: Any = None


#: Top-level fields that checkpoints written before ``extra`` existed (to ltjax commit 476272d)
#: held a stage's arrays in: their entry of ``extra`` now.
LEGACY_EXTRA_FIELDS = ("centroids",)


def for_stored(stored: Mapping, target: TrainState) -> tuple[Any, Callable[[Any], TrainState]]:
  """The restore target in the layout of a stored state, and the function that turns what
  was restored back into a ``TrainState``.

  ``stored`` is the stored tree's top level (orbax metadata). A state saved before ``extra``
  existed has its arrays at the top level (``centroids``, None when the stage had none):
  the target becomes that dict, and the restored dict a ``TrainState`` with them in
  ``extra``. A current state is returned as it is.
  """
  legacy = [k for k in LEGACY_EXTRA_FIELDS if k in stored]
  if not legacy or "extra" in stored:
    return target, lambda state: state
  extra = dict(target.extra or {})
  fields = {k: getattr(target, k) for k in ("step", "params", "batch_stats", "opt_state", "rng")}
  as_stored = fields | {k: extra.get(k) for k in legacy}

  def to_state(restored: dict) -> TrainState:
    arrays = {k: restored[k] for k in legacy if restored[k] is not None}
    return TrainState(**{k: restored[k] for k in fields}, extra=arrays or None)

  return as_stored, to_state
