"""The ``ltjax`` command: train, evaluate, demo.

ltjax train --config=configs/<dataset>/<stage>.py --workdir=DIR [--config.x=y ...]
ltjax evaluate --config=... --workdir=DIR [--open_set]
ltjax demo [--workdir=DIR]
"""

from __future__ import annotations

import logging as std_logging
import os
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
_POSTHOC = flags.DEFINE_bool(
  "posthoc",
  False,
  "evaluate: also NCM and tau-norm (selected on val) on top of a joint model's features.",
)
_SPLIT = flags.DEFINE_string("split", None, "stats: a split list file (path label per line).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "stats: number of classes (optional).")
_OPEN_SET = flags.DEFINE_bool("open_set", False, "evaluate: require and report open-set metrics.")

USAGE = __doc__


def _require(flag, name: str) -> None:
  value = flag.value
  if name == "config" and value is not None:
    try:
      value.stage  # noqa: B018 (config_flags defers a load error to first use)
    except OSError as e:
      raise ValueError(f"cannot load the config file: {e}") from e
  if value is None:
    raise app.UsageError(f"--{name} is required.")


def cmd_train(argv) -> None:
  del argv
  _require(_CONFIG, "config")
  _require(_WORKDIR, "workdir")
  from ltjax.evaluate.runner import format_table  # noqa: PLC0415
  from ltjax.train import loop  # noqa: PLC0415

  summary = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  print(format_table({_CONFIG.value.method: summary}))


def cmd_evaluate(argv) -> None:
  del argv
  _require(_CONFIG, "config")
  _require(_WORKDIR, "workdir")
  from ltjax.evaluate import runner  # noqa: PLC0415
  from ltjax.train import loop  # noqa: PLC0415

  exp, state = loop.restore_trained(_CONFIG.value, _WORKDIR.value)
  if _OPEN_SET.value and not (exp.splits.test.labels == -1).any():
    raise ValueError(
      "--open_set: the test split has no open-set images (label -1); "
      "set --config.dataset.open_classes or an open-set source."
    )
  results = {exp.config.method: runner.evaluate_and_write(exp, state, _WORKDIR.value)}
  if _POSTHOC.value:
    from ltjax.evaluate import posthoc  # noqa: PLC0415

    features_dir = os.path.join(_WORKDIR.value, "features")
    results.update(posthoc.evaluate_all(exp, state, _WORKDIR.value, features_dir))
  print(runner.format_table(results))


def cmd_demo(argv) -> None:
  del argv
  from ltjax import demo  # noqa: PLC0415
  from ltjax.evaluate.runner import format_table  # noqa: PLC0415

  workdir = _WORKDIR.value or os.path.abspath("ltjax_demo")
  results = demo.run(workdir)
  print(f"\nltjax demo: digits-LT results (test split), written to {workdir}/results.json\n")
  print(format_table(results))


def cmd_report(argv) -> None:
  del argv
  _require(_WORKDIR, "workdir")
  from ltjax.evaluate import report  # noqa: PLC0415

  print(f"wrote {report.write_report(_WORKDIR.value)}")


def cmd_stats(argv) -> None:
  del argv
  _require(_SPLIT, "split")
  from ltjax.data import splitlist  # noqa: PLC0415

  _, labels = splitlist.parse_split_file(_SPLIT.value, _NUM_CLASSES.value, allow_open=True)
  stats = splitlist.split_statistics(labels, _NUM_CLASSES.value)
  print(splitlist.format_statistics(stats, os.path.basename(_SPLIT.value)))


COMMANDS = {
  "train": cmd_train,
  "evaluate": cmd_evaluate,
  "demo": cmd_demo,
  "report": cmd_report,
  "stats": cmd_stats,
}


def _sigterm_as_interrupt(signum, frame) -> None:
  # Schedulers preempt with SIGTERM: turn it into the KeyboardInterrupt that makes the
  # training loop save a checkpoint before exiting.
  raise KeyboardInterrupt(f"signal {signum}")


def _fail(message: str, code: int = 1) -> None:
  print(f"ltjax: error: {message}", file=sys.stderr)
  sys.exit(code)


def _parse_flags(command: str, args: list[str]) -> list[str]:
  """Parses flags and config overrides; a bad flag or key is one clear line, not a traceback."""
  try:
    return flags.FLAGS([f"ltjax {command}", *args])
  except flags.Error as e:
    _fail(f"{e}\nRun 'ltjax {command} --helpfull' for the flags.", 2)
  except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    # config_flags raises these for a misspelt --config.key, a wrongly typed value or
    # an unreadable config file.
    message = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
    _fail(f"bad --config or override: {message}", 2)
  return []


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(USAGE)
    sys.exit(0 if len(argv) >= 2 else 2)
  command = argv[1]
  if command not in COMMANDS:
    print(
      f"ltjax: unknown command {command!r}; valid: {', '.join(COMMANDS)}.\n{USAGE}", file=sys.stderr
    )
    sys.exit(2)
  rest = _parse_flags(command, argv[2:])
  logging.use_absl_handler()
  # ltjax reports progress at INFO; orbax/absl internals only from WARNING up
  # (--verbosity=0 shows them).
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  std_logging.getLogger("ltjax").setLevel(std_logging.INFO)
  signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
  try:
    COMMANDS[command](rest)
  except KeyboardInterrupt:
    print(
      "ltjax: interrupted; the latest state is checkpointed: run the same command again to resume.",
      file=sys.stderr,
    )
    sys.exit(130)
  except app.UsageError as e:
    _fail(f"{e}\n{USAGE}", 2)
  except (ValueError, FileNotFoundError) as e:
    if os.environ.get("LTJAX_DEBUG"):
      raise
    _fail(f"{e}\n(set LTJAX_DEBUG=1 for the full traceback)")


if __name__ == "__main__":
  main()
