"""Parsing a command's flags and config overrides, where every mistake becomes one clear line
(an unknown field with the closest name, another command's flag, a config that is not a
run) instead of absl's or ml_collections' traceback."""

from __future__ import annotations

import os
import re

from absl import flags

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


def _unknown_field(args: list[str], message: str) -> str | None:
  """'unknown config field optim.lrr (did you mean optim.lr?)' from config_flags' error.

  Read from the error's text: config_flags raises it after loading the config, and keeps
  neither the config nor the key (checking the overrides directly would load the file again
  and repeat config_flags' order of checks)."""
  m = re.search(r"'(\w+)'", message)
  if not m:
    return None
  bad = m.group(1)
  hint = re.search(r'Did you mean "(\w+)"', message)
  for arg in args:
    if not arg.startswith("--config."):
      continue
    path = arg[len("--config.") :].split("=", 1)[0].split(".")
    if bad in path:
      i = path.index(bad)
      field = ".".join(path)
      if hint:
        fixed = ".".join([*path[:i], hint.group(1), *path[i + 1 :]])
        return f"unknown config field {field} (did you mean {fixed}?)"
      return f"unknown config field {field}; `ltjax COMMAND --config=FILE --help` lists the fields"
  return None


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
    fail(_unknown_field(args, message) or f"bad --config or override: {message}", 2)
  except OSError as e:
    fail(f"cannot load the config file: {e}", 2)
  except Exception as e:  # Raised by the config file's own code (syntax, names, ...).
    fail(config_error(e, config_path), 2)
  for name in sorted({n for _, names in COMMANDS.values() for n in names} - set(own)):
    if flags.FLAGS[name].present:  # Another command's flag would be silently ignored.
      fail(f"--{name} is not a flag of `ltjax {command}`; its flags: {known}.", 2)
  return rest
