"""``ltjax COMMAND --help``: the command's flags from the command table and, with
``--config=FILE``, the fields the config's components read, with their values and meanings
(``ltjax.config.help_text``); without one, the configs that ship with ltjax. It loads the
config, never JAX."""

from __future__ import annotations

from absl import flags

from ltjax.cli.commands import COMMANDS
from ltjax.cli.config_files import config_error, packaged_configs, resolve_config


def command_help(command: str, args: list[str]) -> str:
  fn, names = COMMANDS[command]
  doc = " ".join((fn.__doc__ or "").split())
  lines = [f"ltjax {command}: {doc}", "", "flags:"]
  for name in names:
    flag = flags.FLAGS[name]
    default = "" if flag.default in (None, False, []) else f" (default: {flag.default})"
    lines.append(f"  --{name}: {flag.help}{default}")
  if "config" in names:
    config_arg = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
    if config_arg is not None:
      resolved = resolve_config([f"--config={config_arg}"], command)[0]
      config_arg = resolved.split("=", 1)[1].split(":", 1)[0]
    lines.append("")
    if config_arg is None:
      lines.append(
        "config fields: every field of the config can be overridden with "
        "--config.<field>=<value>; add --config=FILE to this --help to list those its "
        "components read, with the file's values and their meanings."
      )
      names = [n for n in packaged_configs() if n != "run.py"]
      lines += ["", "configs that ship with ltjax (--config=<name>; a file path works too):"]
      lines += [f"  {n}" for n in names]
    else:
      from ltjax import config as config_lib

      try:
        tree = config_lib.load_file(config_arg).to_dict()
      except Exception as e:  # The error is the user's config: shown, not raised.
        lines.append(f"config fields: cannot load {config_arg}: {config_error(e, config_arg)}")
      else:
        lines.append(f"config fields that {config_arg}'s components read:")
        lines.append(config_lib.help_text(tree, unread=_unread_dataset_fields(tree)))
  return "\n".join(lines)


def _unread_dataset_fields(tree: dict) -> set[str]:
  """The ``dataset.*`` fields the config's dataset does not read (left out of ``--help``)."""
  from ltjax.data import datasets

  name = tree.get("dataset", {}).get("name")
  if name not in datasets.DATASETS:
    return set()
  reads = {*datasets.COMMON_FIELDS, *datasets.DATASETS[name].fields}
  return {f"dataset.{k}" for k in tree["dataset"] if k not in reads}
