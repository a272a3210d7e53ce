"""XLA compile options for ltjax's jitted steps: on CPU, Eigen convolutions, not YNNPACK.

XLA:CPU (jaxlib 0.10) hands every convolution to YNNPACK by default, whose convolutions ran
on one of the two cores of the machine of BENCHMARKS.md and whose filter gradients ran at a
fraction of the matmul rate; XLA's own Eigen convolutions use every core (BENCHMARKS.md,
"CPU-only kernels", has the figures; ``python scripts/bench_layers.py`` and
``scripts/benchmark.py`` measure both). YNNPACK stays on for what it does by default apart
from convolutions: single dots, and reductions, where its float32 sums are the accurate
ones. Only ``LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION`` is taken off the default list.

The options are per compilation (``jax.jit(..., compiler_options=...)``), so they touch
nothing outside ltjax's own steps. Other backends get none.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp

# jaxlib 0.10's default YNN fusion types minus LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,
# plus LIBRARY_FUSION_TYPE_ELTWISE: elementwise chains as YNNPACK fusions, which XLA does not
# duplicate into the transposes feeding its filter-gradient convolutions (it did, through a
# ResNet's residual adds: a CIFAR ResNet-32 step was 1.5x slower; BENCHMARKS.md, issue 35).
CPU_OPTIONS = {
  "xla_cpu_experimental_ynn_fusion_type": (
    "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_ELTWISE"
  ),
}


def for_platform(platform: str) -> dict[str, str] | None:
  """``compiler_options`` for ``jax.jit`` on ``platform`` ("cpu", "gpu", "tpu"), or None."""
  if platform != "cpu" or not _cpu_options_accepted():
    return None
  return dict(CPU_OPTIONS)


def for_devices(devices) -> dict[str, str] | None:
  """``for_platform`` of the devices a computation runs on (e.g. ``mesh.devices.flat``)."""
  platforms = {d.platform for d in devices}
  return for_platform(platforms.pop()) if len(platforms) == 1 else None


@functools.cache
def _cpu_options_accepted() -> bool:
  """Whether this jaxlib knows the options (a newer one may rename them): compile a no-op."""
  cpu = jax.devices("cpu")[0]
  try:
    jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS).lower(
      jax.device_put(jnp.zeros(()), cpu)
    ).compile()
  except Exception as e:  # any rejection means: compile without them
    warnings.warn(
      f"This jaxlib rejects ltjax's XLA:CPU options {CPU_OPTIONS} ({e}); compiling without "
      "them, so CPU convolutions run on YNNPACK (slower, see ltjax/train/compile_options.py).",
      stacklevel=2,
    )
    return False
  return True
