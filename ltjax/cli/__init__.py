"""The ``ltjax`` command: train, evaluate, demo, report, stats, prepare, verify, import-torch,
clip-text, plan, example-data.

ltjax train --config=configs/<dataset>/<stage>.py --workdir=DIR [--config.x=y ...]
ltjax evaluate --workdir=DIR [--config=...] [--open_set] [--posthoc]
ltjax demo [--workdir=DIR] [--dtype=bfloat16]
ltjax report --workdir=DIR [--compare RUN ...]
ltjax stats --split=LIST.txt [--num_classes=K]  |  ltjax stats --config=...
ltjax prepare --dataset=imagenet_lt|places_lt|inat2018 --root=IMAGES --out=DIR
ltjax prepare --config=... --out=DIR
ltjax verify --config=... [--splits=train,val,test]
ltjax import-torch CKPT.pth --config=... --workdir=DIR [--allow_pickle]
ltjax clip-text CLIP.pt --config=... --out=FILE.npz [--prompt="a photo of a {}."]
ltjax plan --config=... [--devices=N] [--split_over=M] [--fit=GB]
ltjax example-data --out=DIR

`ltjax <command> --help` lists a command's flags; `ltjax train --config=FILE --help` also
lists the config's fields with their values.

Several processes (hosts): run the same train/evaluate command in each, with
  --coordinator_address=HOST:PORT --num_processes=N --process_id=I
(or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), or --distributed on
SLURM, Open MPI and Cloud TPU pods, where JAX finds them itself.
"""

# The docstring above is what `ltjax --help` prints. This package is the `ltjax` command:
# here the entry point and the dispatch; in commands.py the table of commands, each run by a
# module of its family (training, data, report, plan, import_torch); flags.py, parse.py and
# help.py read, check and explain the flags; console.py writes errors and log lines;
# compilation_cache.py keeps compiled programs. JAX is imported only inside the commands
# that need it.

from __future__ import annotations

import logging as std_logging
import os
import sys

from absl import app, logging
from absl.flags import FLAGS

from ltjax.cli.commands import COMMANDS, COMPILING_COMMANDS, MULTI_PROCESS_COMMANDS
from ltjax.cli.compilation_cache import (
  COMPILATION_CACHE_ENV,
  compilation_cache_dir,
  prune_compilation_cache,
  use_compilation_cache,
)
from ltjax.cli.config_files import packaged_configs
from ltjax.cli.console import (
  ConsoleHandler,
  exit_interrupted,
  fail,
  install_console_logging,
  os_error,
)
from ltjax.cli.flags import WORKDIR
from ltjax.cli.help import command_help
from ltjax.cli.parse import parse_flags
from ltjax.cli.training import start_processes

__all__ = [
  "COMMANDS",
  "COMPILATION_CACHE_ENV",
  "COMPILING_COMMANDS",
  "MULTI_PROCESS_COMMANDS",
  "USAGE",
  "compilation_cache_dir",
  "main",
  "packaged_configs",
  "use_compilation_cache",
]

# The names these had when the command was one module (tests call them).
_ConsoleHandler = ConsoleHandler
_prune_compilation_cache = prune_compilation_cache

log = std_logging.getLogger("ltjax.cli")

USAGE = __doc__


def main(argv: list[str] | None = None) -> None:
  """The ``ltjax`` console script: ``argv`` is ``sys.argv`` (``ltjax COMMAND ...``)."""
  argv = list(sys.argv if argv is None else argv)
  from ltjax import stop  # The one signal mechanism, from the first instruction on.

  stop.STOP.install()
  try:
    _main(argv)
  except KeyboardInterrupt as e:
    exit_interrupted(e)


def _main(argv: list[str]) -> None:
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help", "--helpfull"):
    print(USAGE)
    sys.exit(0 if len(argv) >= 2 else 2)
  command = argv[1]
  if command not in COMMANDS:
    print(
      f"ltjax: unknown command {command!r}; valid: {', '.join(COMMANDS)}.\n{USAGE}", file=sys.stderr
    )
    sys.exit(2)
  if any(a in ("-h", "--help", "--helpfull", "-help") for a in argv[2:]):
    print(command_help(command, argv[2:]))
    sys.exit(0)
  rest = parse_flags(command, argv[2:])
  install_console_logging()
  # ltjax reports progress at INFO; orbax/absl internals only from WARNING up
  # (--verbosity=0 shows them).
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  std_logging.getLogger("ltjax").setLevel(std_logging.INFO)
  if WORKDIR.value:
    log.info("ltjax %s: work directory %s", command, WORKDIR.value)
  try:
    if command in COMPILING_COMMANDS:
      use_compilation_cache()
    if command in MULTI_PROCESS_COMMANDS:
      start_processes()
    from ltjax.stop import STOP

    STOP.check()
    COMMANDS[command][0](rest)
  except app.UsageError as e:
    fail(f"{e}\n`ltjax {command} --help` lists its flags.", 2)
  except (ValueError, FileNotFoundError) as e:
    if os.environ.get("LTJAX_DEBUG"):
      raise
    fail(f"{e}\n(set LTJAX_DEBUG=1 for the full traceback)")
  except OSError as e:
    if os.environ.get("LTJAX_DEBUG"):
      raise
    fail(os_error(e))
