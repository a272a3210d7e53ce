"""The one device mesh, the shardings of state and batches, and host batches -> global arrays.

Training and evaluation both use it: a 1-D mesh with axis ``data`` over every device
(of every process), batches sharded on that axis, the train state replicated.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D mesh with axis ``data`` over the first ``num_devices`` devices (0 = all).

  Devices are ordered by process, so that each process's devices hold one contiguous
  block of the batch: the block that process reads (``ltjax.data.pipeline``), which
  ``to_global`` assembles into one array.
  Auto axis type: the explicit-axes default rejects a contraction over the batch axis.
  """
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  if num_devices:
    if num_devices > len(devices):
      raise ValueError(f"num_devices={num_devices} but only {len(devices)} devices exist.")
    if jax.process_count() > 1 and num_devices != len(devices):
      raise ValueError("num_devices must be 0 (all devices) when running on several hosts.")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
  if batch_size % mesh.size:
    raise ValueError(
      f"{what}={batch_size} is not divisible by the {mesh.size} devices; "
      f"use a multiple of {mesh.size}."
    )


def to_global(batch: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict:
  """Assembles the global batch, sharded on the batch axis, from every process's slice."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def to_host(tree):
  """A tree of global arrays as numpy arrays holding every row, on every process: a
  device->host copy where this process addresses every shard, an all-gather across the
  processes otherwise (multi-host evaluation outputs, sharded by the batch)."""
  from jax.experimental import multihost_utils

  def fetch(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

  return jax.tree.map(fetch, tree)
