"""JAX's persistent compilation cache, turned on for the commands that compile: a rerun, a
resumed run or ``evaluate`` after ``train`` loads its programs from disk. ltjax chooses the
directory and keeps it under a size itself, once per command."""

from __future__ import annotations

import logging as std_logging
import os
import sys

log = std_logging.getLogger("ltjax.cli")

#: Environment variable naming the directory of compiled programs; "off" disables it.
COMPILATION_CACHE_ENV = "LTJAX_COMPILATION_CACHE"
_CACHE_MAX_BYTES = 4 * 2**30  # Least recently used programs go beyond this.
_CACHE_MIN_COMPILE_S = 0.2  # Programs compiled faster than this are not worth a file.


def compilation_cache_dir() -> str | None:
  """Where the commands keep compiled programs: $LTJAX_COMPILATION_CACHE, else
  $XDG_CACHE_HOME/ltjax/xla (default ~/.cache/ltjax/xla); None when the variable is "off"
  (or "0", "")."""
  value = os.environ.get(COMPILATION_CACHE_ENV)
  if value is not None:
    return None if value.strip().lower() in ("", "0", "off", "false", "no") else value
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "ltjax", "xla")


def use_compilation_cache() -> None:
  """JAX's persistent compilation cache for this command: a run of a config compiled before
  (a resumed run, ``evaluate`` after ``train``, another seed, a rerun) loads its train, eval
  and init programs from disk instead of compiling them again (seconds on a CPU, minutes on
  a TPU pod for large models). JAX keys each program by its computation, compile options,
  devices and JAX version, so a program is never reused for another. A directory JAX was
  already told to use (``JAX_COMPILATION_CACHE_DIR``) is kept."""
  if "jax" in sys.modules:
    import jax

    if jax.config.jax_compilation_cache_dir:
      return
  elif os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  directory = compilation_cache_dir()
  if directory is None:
    return
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    log.warning("not caching compiled programs: cannot create %s (%s)", directory, e)
    return
  prune_compilation_cache(directory)
  settings = {
    "jax_compilation_cache_dir": directory,
    "jax_persistent_cache_min_compile_time_secs": _CACHE_MIN_COMPILE_S,
  }
  if "jax" in sys.modules:
    for name, value in settings.items():
      sys.modules["jax"].config.update(name, value)
  else:  # Read when JAX starts: importing it here would come before `plan` asks for devices.
    for name, value in settings.items():
      os.environ[name.upper()] = str(value)


def prune_compilation_cache(directory: str, max_bytes: int = _CACHE_MAX_BYTES) -> None:
  """Keeps the cache of compiled programs under ``max_bytes``: beyond it the oldest programs
  go (to 3/4 of it). Done here, once per command, rather than by JAX's own eviction, which
  needs every program of the directory written with it and races otherwise."""
  entries = []
  for entry in os.scandir(directory):
    try:
      if entry.name.endswith("-cache") and entry.is_file():
        st = entry.stat()
        entries.append((st.st_mtime, st.st_size, entry.path))
    except OSError:  # Removed meanwhile by another process: nothing to count.
      continue
  total = sum(size for _, size, _ in entries)
  if total <= max_bytes:
    return
  for _, size, path in sorted(entries):
    if total <= max_bytes * 3 // 4:
      break
    try:
      os.remove(path)
      total -= size
    except OSError:
      continue
  log.info(
    "compilation cache %s: removed its oldest programs (now %.1f GB)", directory, total / 2**30
  )
