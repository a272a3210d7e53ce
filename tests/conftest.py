"""Test set-up: 8 simulated CPU devices, and a compilation cache shared by the tests."""

import os
import sys
import tempfile

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Many tests build the same tiny model again (resume, evaluate, ...): reuse compilations.
jax.config.update(
  "jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "ltjax-tests-xla")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

sys.path.insert(0, os.path.dirname(__file__))  # For `import helpers`.
