"""Test set-up: 8 simulated CPU devices, so sharding is tested on every run."""

import os

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))  # For `import helpers`.
