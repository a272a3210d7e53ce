"""glibc malloc settings for the benchmarks, applied by re-executing the script.

glibc reads ``GLIBC_TUNABLES`` once, at process start, so a script that wants them
re-executes itself with them added (before it imports jax or torch).
"""

import os
import sys

# Transparent huge pages for malloc's large blocks (XLA's per-step temp buffer, PyTorch's
# largest tensors).
HUGEPAGES = "glibc.malloc.hugetlb=1"

# glibc serves large allocations (above a threshold it raises to at most 32 MiB; XLA's
# per-step temp buffer, PyTorch's largest activations) with fresh pages from mmap and
# unmaps them on free, so every step page-faults them in again. These tunables keep all
# memory in one heap that is never trimmed (worker threads' arenas would still mmap).
REUSE = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"


def reexec_with(tunables: str) -> None:
  """Re-executes this script with ``tunables`` added to GLIBC_TUNABLES (no-op if set)."""
  current = os.environ.get("GLIBC_TUNABLES", "")
  if tunables not in current:
    os.environ["GLIBC_TUNABLES"] = ":".join(t for t in (current, tunables) if t)
    os.execv(sys.executable, [sys.executable, *sys.argv])
