"""Test set-up: 8 simulated CPU devices, and a compilation cache shared by the tests."""

import os
import subprocess
import sys
import tempfile

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

# Many tests build the same tiny model again (resume, evaluate, ...): reuse compilations.
_XLA_CACHE = os.path.join(tempfile.gettempdir(), "ltjax-tests-xla")
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
# The command-line runs of the tests (subprocesses) keep their compiled programs in a cache
# of their own (ltjax.cli.use_compilation_cache), not in ~/.cache.
os.environ.setdefault("LTJAX_COMPILATION_CACHE", _XLA_CACHE + "-cli")

sys.path.insert(0, os.path.dirname(__file__))  # For `import helpers`.


@pytest.fixture(autouse=True, scope="session")
def _keep_stray_temp_dirs_in_pytest_tmp(tmp_path_factory):
  """TFDS leaves an empty ``/tmp/tmp*tfds`` dir per builder of an unprepared dataset (many
  tests make one): send those, and the CLI subprocesses' temp files, to pytest's tmp."""
  old_dir, old_env = tempfile.tempdir, os.environ.get("TMPDIR")
  tempfile.tempdir = os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tempfile"))
  yield
  tempfile.tempdir = old_dir
  if old_env is None:
    os.environ.pop("TMPDIR", None)
  else:
    os.environ["TMPDIR"] = old_env


@pytest.fixture
def small_disk(tmp_path):
  """A real 3 MB file system (tmpfs); skipped where this process may not mount one."""
  mount = tmp_path / "disk"
  mount.mkdir()
  made = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
  )
  if made.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
  try:
    yield mount
  finally:
    subprocess.run(["umount", str(mount)], capture_output=True)
