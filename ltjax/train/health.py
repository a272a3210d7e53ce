"""Whether a checkpoint is healthy, judged by the training loss of the steps after it.

A loss that explodes while staying finite passes every integrity check, so the steps saved
after it must not rotate out the last good model, nor be where a resumed run starts. The
rule (``healthy``) and its record in the checkpoints directory (``ltjax-health.json``) live
here; ``checkpoint.Checkpointer`` applies them as it saves and rotates.
"""

from __future__ import annotations

import math
import os

import jax

from ltjax import files

#: A checkpoint is healthy when the training loss of the steps after it (their mean up to the
#: next checkpoint's log: ``meta["train_loss"]`` of that checkpoint) is finite and at most
#: SPIKE_FACTOR x the last healthy checkpoint's + log(K) (the cross-entropy of a uniform
#: guess over the K classes: room for the noise of a model near chance). Rotation never
#: removes the newest healthy checkpoint, and a resumed run continues from it.
SPIKE_FACTOR = 3.0
HEALTH_FILE = "ltjax-health.json"


def healthy(loss: float | None, reference: float | None, num_classes: int) -> bool:
  """Whether losses ``loss`` after a checkpoint are healthy next to the last healthy
  checkpoint's ``reference`` (None: there is none, any finite loss is healthy)."""
  if loss is None or not math.isfinite(loss):
    return False
  if reference is None:
    return True
  return loss <= SPIKE_FACTOR * reference + math.log(max(num_classes, 2))


def read_health(directory: str) -> dict:
  """The health record of a checkpoints directory ({} if none or unreadable: nothing is
  judged unhealthy then)."""
  path = os.path.join(directory, HEALTH_FILE)
  try:
    health = files.read_json(path)
  except (OSError, ValueError):
    return {}
  return health if isinstance(health, dict) else {}


def write_health(
  directory: str, trusted: int | None, trusted_loss: float | None, unhealthy: list[int]
) -> None:
  """Records the newest healthy step, its loss and the unhealthy steps (process 0)."""
  if jax.process_index() == 0 and os.path.isdir(directory):
    health = {"trusted": trusted, "trusted_loss": trusted_loss}
    files.write_json(
      os.path.join(directory, HEALTH_FILE), health | {"unhealthy": sorted(unhealthy)}
    )
