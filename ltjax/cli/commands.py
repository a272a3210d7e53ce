"""The table of commands: the name a user types, the function that runs it, and the flags it
reads. Dispatch, ``--help`` and the refusal of another command's flags all read this one
table, so a new command is one function and one entry here."""

from __future__ import annotations

from ltjax.cli.data import cmd_example_data, cmd_prepare, cmd_stats, cmd_verify
from ltjax.cli.flags import MULTI_PROCESS
from ltjax.cli.import_torch import cmd_clip_text, cmd_import_torch
from ltjax.cli.plan import cmd_plan
from ltjax.cli.report import cmd_report
from ltjax.cli.training import cmd_demo, cmd_evaluate, cmd_train

#: command -> (function, its flags in the order --help lists them).
COMMANDS = {
  "train": (cmd_train, ("config", "workdir", "allow_config_change", *MULTI_PROCESS)),
  "evaluate": (cmd_evaluate, ("config", "workdir", "posthoc", "open_set", *MULTI_PROCESS)),
  "demo": (cmd_demo, ("workdir", "dtype")),
  "report": (cmd_report, ("workdir", "compare")),
  "stats": (cmd_stats, ("split", "num_classes", "config")),
  "prepare": (
    cmd_prepare,
    ("dataset", "root", "out", "lists_dir", "splits", "records_per_shard", "config"),
  ),
  "verify": (cmd_verify, ("config", "splits")),
  "import-torch": (cmd_import_torch, ("config", "workdir", "allow_pickle")),
  "clip-text": (cmd_clip_text, ("config", "out", "prompt", "allow_pickle")),
  "plan": (cmd_plan, ("config", "devices", "split_over", "fit")),
  "example-data": (cmd_example_data, ("out",)),
}
MULTI_PROCESS_COMMANDS = ("train", "evaluate")
#: Commands that compile steps: they keep the compiled programs on disk
#: (compilation_cache.py).
COMPILING_COMMANDS = ("train", "evaluate", "demo", "plan", "import-torch")
