"""Multi-process (multi-host) start-up: ``jax.distributed`` from flags or environment.

One process per host (GPU clusters: one per node, or one per GPU; TPU pods: one per
TPU VM) runs the same ``ltjax`` command. Each process reads only its slice of every
batch (see ``ltjax.data.pipeline``); the global batch is assembled with
``jax.make_array_from_process_local_data``; process 0 alone writes logs, metrics and
results; orbax writes each checkpoint once, and, because the train state is
replicated and the input stream is a function of the step, a checkpoint restores
with any process count.
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger(__name__)

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


def _env_int(name: str) -> int | None:
  value = os.environ.get(name, "").strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r} is not an integer.") from None


def settings(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> dict | None:
  """The ``jax.distributed.initialize`` arguments given by flags, else by environment.

  Returns None when nothing asks for several processes (a single-process run).

  Raises:
    ValueError: an incomplete or inconsistent set (e.g. a process id but no count).
  """
  coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
  num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
  process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
  given = {
    "coordinator_address": coordinator_address,
    "num_processes": num_processes,
    "process_id": process_id,
  }
  if all(v is None for v in given.values()):
    return None
  missing = [k for k, v in given.items() if v is None]
  if missing:
    raise ValueError(
      "multi-process training needs --coordinator_address, --num_processes and --process_id "
      f"(or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); missing: "
      f"{', '.join(missing)}. On SLURM, Open MPI and Cloud TPU pods use --distributed "
      "instead: JAX detects them."
    )
  if num_processes < 1:
    raise ValueError(f"num_processes must be >= 1, got {num_processes}.")
  if not 0 <= process_id < num_processes:
    raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}.")
  if ":" not in coordinator_address:
    raise ValueError(f"coordinator_address must be host:port, got {coordinator_address!r}.")
  return given


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  auto: bool = False,
) -> bool:
  """Calls ``jax.distributed.initialize`` if flags, environment or ``auto`` ask for it.

  Must run before anything touches a JAX device. ``auto``: let JAX detect the cluster
  (SLURM, Open MPI, Kubernetes, Cloud TPU pods).

  Returns:
    Whether the process joined a multi-process run.
  """
  kwargs = settings(coordinator_address, num_processes, process_id)
  if kwargs is None and not auto:
    return False
  jax.distributed.initialize(**(kwargs or {}))
  log.info(
    "process %d of %d: %d local devices, %d in all",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )
  return True
