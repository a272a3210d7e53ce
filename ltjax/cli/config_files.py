"""Which file a ``--config`` names, and one line when it cannot be loaded: a packaged config
by its short name (``imagenet_lt/crt.py``), the closest names for a misspelt one, the run's
own config for ``evaluate --workdir``, and the file and line of an error in a config."""

from __future__ import annotations

import os
import traceback

#: ``ltjax/configs``: the configs that ship with ltjax (this module is in ``ltjax/cli``).
_PACKAGED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

#: The packaged config that reads a run's config.json (``ltjax evaluate --workdir=RUN``).
RUN_CONFIG = os.path.join(_PACKAGED, "run.py")

CONFIG_PATH = [None]  # The config file of this command, for messages.


def config_error(e: BaseException, path: str | None) -> str:
  """'config file X line N: message' for an error raised by the config file itself."""
  if isinstance(e, SyntaxError):
    return f"config file {e.filename or path} line {e.lineno}: {e.msg}"
  line = None
  for frame in traceback.extract_tb(e.__traceback__):
    if path and os.path.abspath(frame.filename) == os.path.abspath(path):
      line = frame.lineno
  where = f"config file {path}" + (f" line {line}" if line else "")
  return f"{where}: {type(e).__name__}: {e}"


def config_name(path: str | None) -> str:
  """A config file as the user names it: ``imagenet_lt/crt.py`` for a packaged one."""
  if not path:
    return "config"
  packaged = _PACKAGED
  absolute = os.path.abspath(path)
  return os.path.relpath(absolute, packaged) if absolute.startswith(packaged) else path


def packaged_configs() -> list[str]:
  """The configs that ship with ltjax (``ltjax/configs``), as ``<dataset>/<stage>.py``."""
  root = _PACKAGED
  return sorted(
    os.path.relpath(os.path.join(d, f), root)
    for d, _, names in os.walk(root)
    for f in names
    if f.endswith(".py") and d != root
  )


def resolve_config(args: list[str], command: str) -> list[str]:
  """``--config=imagenet_lt/crt.py`` (or ``configs/...``) names a packaged config when no
  such file is under the current directory; ``ltjax evaluate`` without ``--config`` takes
  the run's own (``ltjax/configs/run.py``, reading ``--workdir``'s config.json)."""
  packaged = _PACKAGED
  out = []
  for a in args:
    if a.startswith("--config="):
      path, sep, arg = a[len("--config=") :].partition(":")
      short = path.removeprefix("configs/")
      if not os.path.exists(path) and os.path.isfile(os.path.join(packaged, short)):
        a = f"--config={os.path.join(packaged, short)}{sep}{arg}"
    out.append(a)
  if command == "evaluate" and not any(a.startswith("--config=") for a in out):
    workdir = next((a.split("=", 1)[1] for a in out if a.startswith("--workdir=")), None)
    if workdir is None and "--workdir" in out[:-1]:
      workdir = out[out.index("--workdir") + 1]
    if workdir:  # First: the overrides that follow refer to it.
      out.insert(0, f"--config={RUN_CONFIG}:{workdir}")
  return out


def missing_config(path: str, command: str) -> str:
  """One line for a --config that is neither a file nor a packaged config: the closest
  packaged names (rather than ml_collections' "Failed loading config file config_config")."""
  import difflib

  names = [n for n in packaged_configs() if n != "run.py"]
  short = path.replace(os.sep, "/").removeprefix("./")
  short = short.split("configs/", 1)[-1] if "configs/" in short else short
  ratio = {n: difflib.SequenceMatcher(None, short, n).ratio() for n in names}
  best = max(ratio.values(), default=0.0)
  close = [n for n in sorted(names, key=ratio.get, reverse=True)[:3] if ratio[n] >= best - 0.05]
  close = [n for n in close if ratio[n] >= 0.6]
  hint = f"did you mean {' or '.join(close)}? " if close else ""
  return (
    f"--config={path}: no such file, nor a config that ships with ltjax; {hint}"
    f"`ltjax {command} --help` lists the packaged configs."
  )
