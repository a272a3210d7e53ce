"""Parsing a command's flags and config overrides, where every mistake becomes one clear line
(an unknown field with the closest name, another command's flag, a config that is not a
run) instead of absl's or ml_collections' traceback."""

from __future__ import annotations

import difflib
import os

import ml_collections
from absl import flags

from ltjax import config as config_lib
from ltjax.cli.commands import COMMANDS
from ltjax.cli.config_files import (
  CONFIG_PATH,
  RUN_CONFIG,
  config_error,
  missing_config,
  resolve_config,
)
from ltjax.cli.console import fail
from ltjax.cli.flags import CONFIG


def _unknown_field(command: str, args: list[str]) -> str | None:
  """'unknown config field optim.lrr (did you mean optim.lr?)': the first ``--config.X``
  override that names no field of the config, found by walking the config itself (loaded
  again: config_flags, when it refuses a key, keeps neither the config nor the key), with
  the closest field of the same block; None if the config cannot be loaded or every
  override names a field."""
  spec = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
  if spec is None:
    return None
  path, _, arg = spec.partition(":")
  try:
    config = config_lib.load_file(path, arg or None)
  except Exception:  # noqa: BLE001 (config_flags' own error is reported instead)
    return None
  for flag in args:
    if not flag.startswith("--config."):
      continue
    keys = flag[len("--config.") :].split("=", 1)[0].split(".")
    node = config
    for i, key in enumerate(keys):
      if isinstance(node, ml_collections.ConfigDict) and key in node:
        node = node[key]
        continue
      field = ".".join(keys)
      siblings = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      for near in difflib.get_close_matches(key, siblings, n=3):
        fixed = [*keys[:i], near, *keys[i + 1 :]]
        if _is_field(config, fixed):  # A suggestion that is itself a field.
          return f"unknown config field {field} (did you mean {'.'.join(fixed)}?)"
      if path == RUN_CONFIG:  # A run's own config: ``ltjax evaluate --workdir=DIR``.
        return f"unknown config field {field}; {os.path.join(arg, 'config.json')} has the fields"
      listing = f"ltjax {command} --config={spec} --help"
      return f"unknown config field {field}; `{listing}` lists the fields"
  return None


def _is_field(config: ml_collections.ConfigDict, keys: list[str]) -> bool:
  node = config
  for key in keys:
    if not (isinstance(node, ml_collections.ConfigDict) and key in node):
      return False
    node = node[key]
  return True


def parse_flags(command: str, args: list[str]) -> list[str]:
  """Parses flags and config overrides; a bad flag or key is one clear line, not a traceback."""
  args = resolve_config(args, command)
  config_path = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
  if config_path and ":" in config_path:
    config_path = config_path.split(":", 1)[0]
  CONFIG_PATH[0] = config_path
  if config_path is not None and not os.path.isfile(config_path):
    fail(missing_config(config_path, command), 2)
  own = COMMANDS[command][1]
  known = ", ".join(f"--{n}" for n in own)
  try:
    rest = flags.FLAGS([f"ltjax {command}", *args])
    if CONFIG.present:
      CONFIG.value.stage  # noqa: B018 (config_flags defers some load errors to first use)
  except flags.Error as e:
    if isinstance(e.__cause__, SyntaxError | NameError):
      fail(config_error(e.__cause__, config_path), 2)
    if config_path == RUN_CONFIG:  # Not a run: of_run's own line, not the traceback.
      cause = e  # absl re-raises ml_collections' wrapper of what config.of_run raised.
      while cause is not None and not str(cause).startswith("Error whilst parsing config"):
        cause = cause.__cause__ or cause.__context__
      if cause is not None and isinstance(cause.__context__, ValueError):
        fail(f"--workdir: {cause.__context__}", 2)
    fail(f"{e}\n`ltjax {command} --help` lists its flags: {known}.", 2)
  except (AttributeError, KeyError) as e:
    message = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
    fail(_unknown_field(command, args) or f"bad --config or override: {message}", 2)
  except OSError as e:
    fail(f"cannot load the config file: {e}", 2)
  except Exception as e:  # Raised by the config file's own code (syntax, names, ...).
    fail(config_error(e, config_path), 2)
  for name in sorted({n for _, names in COMMANDS.values() for n in names} - set(own)):
    if flags.FLAGS[name].present:  # Another command's flag would be silently ignored.
      fail(f"--{name} is not a flag of `ltjax {command}`; its flags: {known}.", 2)
  return rest
