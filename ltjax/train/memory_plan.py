"""What one device must hold for a config's train step: a memory plan, without data or arrays.

The production train step (``ltjax.train.experiment.abstract_setup``) is compiled for a mesh
of ``devices`` devices and XLA's memory analysis gives, per device: the arguments (the
replicated train state and the device's slice of the batch), the outputs not aliased to
them, and the temporaries (activations kept for the backward pass, gradients, workspace).
Their sum is what the device must hold for the step.

On a CPU-only machine the devices are simulated and the figures are XLA:CPU's with the
GPU/TPU gradients (``cpu_kernels.native_gradients``): an estimate of what XLA:GPU / XLA:TPU
allocate, whose fusion and layout choices differ. On an accelerator they are that
compiler's own. ``ltjax plan`` and ``scripts/memory_plan.py`` print them.
"""

from __future__ import annotations

import time

import jax
import ml_collections

from ltjax.data import datasets
from ltjax.data.pp import augment
from ltjax.models import cpu_kernels
from ltjax.stop import STOP
from ltjax.train import experiment

GB = 1e9


def data_spec(config: ml_collections.ConfigDict) -> datasets.DataSpec:
  """The shape of ``config``'s data: the reference datasets' from the table; any other's
  by building its splits (reading the lists or the data, decoding one image).

  Raises:
    ValueError: the data cannot be read (naming what to set).
  """
  entry = datasets.get(config.dataset.name)
  if entry.train_size:
    return datasets.reference_spec(config)
  try:
    splits = datasets.build_splits(config.dataset, config.seed, config.data)
  except ValueError as e:
    raise ValueError(
      f"cannot plan dataset {entry.name!r} without its data: {e} (the reference datasets "
      "imagenet_lt, places_lt and inat2018 plan from their known shapes)."
    ) from e
  return datasets.DataSpec(
    splits.num_classes,
    len(splits.train),
    experiment.input_shape(augment.from_config(config.data), splits.train),
    tuple(int(n) for n in splits.train_counts),
  )


def plan(config: ml_collections.ConfigDict, devices: int, spec=None) -> dict:
  """Per-device bytes of the compiled train step of ``config`` on ``devices`` devices at its
  global ``batch_size``: ``argument``, ``output``, ``temp``, ``alias``, ``total``, and the
  parameter count and compile time."""
  config = config.copy_and_resolve_references()
  config.num_devices = devices
  config.eval.batch_size = config.batch_size
  exp, state = experiment.abstract_setup(config, spec or data_spec(config))
  batch = experiment.abstract_batch(exp)
  t0 = time.perf_counter()
  with cpu_kernels.native_gradients():  # On a CPU too: the GPU/TPU gradients' memory.
    lowered = exp.train_step.lower(state, batch)
  compiled = lowered.compile()
  m = compiled.memory_analysis()
  names = ("argument", "output", "temp", "alias")
  out = {k: int(getattr(m, f"{k}_size_in_bytes", 0) or 0) for k in names}
  out["total"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
  out["params"] = sum(x.size for x in jax.tree.leaves(state.params))
  out["compile_s"] = time.perf_counter() - t0
  return out


#: The per-device batches ``largest_batch`` chooses from.
BATCH_SIZES = tuple(2**k for k in range(3, 11))  # 8 to 1024.
#: ``largest_batch`` compiles the next size up unless the line predicts it this far over.
CHECK_MARGIN = 0.1


def largest_batch(config: ml_collections.ConfigDict, devices: int, limit_gb: float, spec=None):
  """The largest per-device batch (a power of two, 8 to 1024) whose step fits in
  ``limit_gb``; 0 if not even 8 does.

  A step's memory is a fixed part (the state, gradients) and activations linear in the
  per-device batch: two compiles (8 and 16) give the line, its estimate is compiled to
  verify it, and the size above is compiled too only when the line (now through 8 and the
  verified size) puts it within ``CHECK_MARGIN`` of the limit (three or four compiles where
  the doubling search took up to eight; where the estimate was wrong, the search walks from
  it, one compile per size). ``STOP`` is checked before every compile (one takes minutes
  for a ResNet-152 at 224 px): a signal stops the search at the next.
  """
  spec = spec or data_spec(config)
  config = config.copy_and_resolve_references()
  limit = limit_gb * GB
  totals: dict[int, int] = {}

  def total(per_device: int) -> int:
    if per_device not in totals:
      STOP.check()
      config.batch_size = per_device * devices
      totals[per_device] = plan(config, devices, spec)["total"]
    return totals[per_device]

  def line_at(per_device: int, a: int, b: int) -> float:
    return totals[a] + (totals[b] - totals[a]) / (b - a) * (per_device - a)

  smallest, largest = BATCH_SIZES[0], BATCH_SIZES[-1]
  if total(smallest) > limit:
    return 0
  if total(2 * smallest) > limit:
    return smallest
  slope = max(totals[2 * smallest] - totals[smallest], 1) / smallest
  estimate = smallest + (limit - totals[smallest]) / slope
  size = max(b for b in BATCH_SIZES if b <= max(estimate, 2 * smallest))
  while True:  # Largest size that fits with the next one not fitting (or none above).
    if total(size) > limit:
      size //= 2
      continue
    if size == largest:
      return size
    above = 2 * size
    if above not in totals and line_at(above, smallest, size) > limit * (1 + CHECK_MARGIN):
      return size
    if total(above) > limit:
      return size
    size = above


def format_plan(name: str, config, result: dict, per_device: int) -> str:
  """One row of the plan table (``TABLE_HEADER``)."""
  return (
    f"| {name} | {config.model.backbone} | {config.model.dtype} | {config.batch_size} | "
    f"{per_device} | {result['params'] / 1e6:.1f} | {result['argument'] / GB:.2f} | "
    f"{result['temp'] / GB:.2f} | {result['total'] / GB:.2f} |"
  )


TABLE_HEADER = (
  "| config | backbone | dtype | global batch | per device | params (M) | arguments (GB) "
  "| temporaries (GB) | total (GB) |\n"
  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
)
