"""The ``ltjax`` command: train, evaluate, demo, report, stats, prepare, import-torch.

ltjax train --config=configs/<dataset>/<stage>.py --workdir=DIR [--config.x=y ...]
ltjax evaluate --config=... --workdir=DIR [--open_set] [--posthoc]
ltjax demo [--workdir=DIR] [--dtype=bfloat16]
ltjax report --workdir=DIR
ltjax stats --split=LIST.txt [--num_classes=K]
ltjax prepare --dataset=imagenet_lt|places_lt|inat2018 --root=IMAGES --out=DIR
    [--lists_dir=LISTS] [--splits=train,val,test,open] [--records_per_shard=1024]
  packs the split lists' images into ArrayRecord shards (resumable: re-run after an
  interruption); train from them with --config.dataset.packed_dir=DIR.
ltjax import-torch CKPT.pth --config=... --workdir=DIR [--allow_pickle]
  writes a reference PyTorch checkpoint (classifier-balancing / OLTR
  final_model_checkpoint.pth) as a finished run of the config in DIR (needs '.[torch]').

Several processes (hosts): run the same train/evaluate command in each, with
  --coordinator_address=HOST:PORT --num_processes=N --process_id=I
(or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), or --distributed on
SLURM, Open MPI and Cloud TPU pods, where JAX finds them itself.
"""

from __future__ import annotations

import logging as std_logging
import os
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
_DATASET = flags.DEFINE_string("dataset", None, "prepare: imagenet_lt, places_lt or inat2018.")
_ROOT = flags.DEFINE_string("root", None, "prepare: the image directory the lists refer to.")
_LISTS_DIR = flags.DEFINE_string(
  "lists_dir", None, "prepare: the directory of the split lists (default: --root)."
)
_OUT = flags.DEFINE_string("out", None, "prepare: the output directory of the shards.")
_SPLITS = flags.DEFINE_string("splits", "train,val,test,open", "prepare: the splits to pack.")
_RECORDS_PER_SHARD = flags.DEFINE_integer(
  "records_per_shard", 1024, "prepare: images per ArrayRecord shard."
)

_DTYPE = flags.DEFINE_enum(
  "dtype", "float32", ["float32", "bfloat16"], "demo: the models' computation dtype."
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "train/evaluate: host:port of process 0 (multi-process runs)."
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "train/evaluate: number of processes (multi-process runs)."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "train/evaluate: this process's index in [0, num_processes)."
)
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "train/evaluate: join a multi-process run whose settings JAX detects "
  "(SLURM, Open MPI, Kubernetes, Cloud TPU pods).",
)
_ALLOW_PICKLE = flags.DEFINE_bool(
  "allow_pickle",
  False,
  "import-torch: also unpickle Python objects other than tensors (only for trusted files).",
)

USAGE = __doc__
MULTI_PROCESS_COMMANDS = ("train", "evaluate")


def _is_main_process() -> bool:
  import jax

  return jax.process_index() == 0


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
  from ltjax.evaluate.report import format_results_table
  from ltjax.train import loop

  summary = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if _is_main_process():
    print(format_results_table({_CONFIG.value.method: summary}))


def cmd_evaluate(argv) -> None:
  del argv
  _require(_CONFIG, "config")
  _require(_WORKDIR, "workdir")
  from ltjax.evaluate import report, runner
  from ltjax.train import loop

  exp, state = loop.restore_trained(_CONFIG.value, _WORKDIR.value)
  if _OPEN_SET.value and not (exp.splits.test.labels == -1).any():
    raise ValueError(
      "--open_set: the test split has no open-set images (label -1); "
      "set --config.dataset.open_classes or an open-set source."
    )
  results = {exp.config.method: runner.evaluate_and_write(exp, state, _WORKDIR.value)}
  if _POSTHOC.value:
    from ltjax.evaluate import posthoc

    features_dir = os.path.join(_WORKDIR.value, "features")
    results.update(posthoc.evaluate_all(exp, state, _WORKDIR.value, features_dir))
  if _is_main_process():
    print(report.format_results_table(results))


def cmd_demo(argv) -> None:
  del argv
  from ltjax import demo
  from ltjax.evaluate.report import format_results_table

  workdir = _WORKDIR.value or os.path.abspath("ltjax_demo")
  results = demo.run(workdir, dtype=_DTYPE.value)
  print(f"\nltjax demo: digits-LT results (test split), written to {workdir}/results.json\n")
  print(format_results_table(results))


def cmd_report(argv) -> None:
  del argv
  _require(_WORKDIR, "workdir")
  from ltjax.evaluate import report

  print(f"wrote {report.write_report(_WORKDIR.value)}")


def cmd_stats(argv) -> None:
  del argv
  _require(_SPLIT, "split")
  from ltjax.data import longtail
  from ltjax.data.sources import splitlist

  _, labels = splitlist.parse_split_file(_SPLIT.value, _NUM_CLASSES.value, allow_open=True)
  stats = longtail.split_statistics(labels, _NUM_CLASSES.value)
  print(longtail.format_statistics(stats, os.path.basename(_SPLIT.value)))


def cmd_prepare(argv) -> None:
  del argv
  for flag, name in ((_DATASET, "dataset"), (_ROOT, "root"), (_OUT, "out")):
    _require(flag, name)
  from ltjax.data.sources import packed

  packed.prepare_dataset(
    _DATASET.value,
    _ROOT.value,
    _OUT.value,
    lists_dir=_LISTS_DIR.value,
    splits=tuple(s.strip() for s in _SPLITS.value.split(",") if s.strip()),
    require_open=_SPLITS.present,  # Only OLTR needs the open list: optional by default.
    records_per_shard=_RECORDS_PER_SHARD.value,
    progress=True,
    note=lambda line: print(line, flush=True),
  )


def cmd_import_torch(argv) -> None:
  paths = argv[1:]
  if len(paths) != 1:
    raise app.UsageError(f"import-torch takes one checkpoint file, got {paths or 'none'}.")
  _require(_CONFIG, "config")
  _require(_WORKDIR, "workdir")
  try:
    from ltjax.interop import torch_import

    summary = torch_import.import_checkpoint(
      paths[0], _CONFIG.value, _WORKDIR.value, allow_pickle=_ALLOW_PICKLE.value
    )
  except ImportError as e:
    raise ValueError(str(e)) from e
  print(
    f"imported {paths[0]}: {summary['tensors']} tensors ({summary['parameters']:,} values) "
    f"into {summary['workdir']} as a finished '{summary['stage']}' run (step {summary['step']})."
    f"\nevaluate it with: ltjax evaluate --config=... --workdir={summary['workdir']}"
  )


COMMANDS = {
  "train": cmd_train,
  "evaluate": cmd_evaluate,
  "demo": cmd_demo,
  "report": cmd_report,
  "stats": cmd_stats,
  "prepare": cmd_prepare,
  "import-torch": cmd_import_torch,
}


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


def _start_processes() -> None:
  """Joins a multi-process run if the flags or the environment ask for one."""
  from ltjax.train import distributed

  if (
    distributed.initialize(
      _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, auto=_DISTRIBUTED.value
    )
    and not _is_main_process()
  ):
    # Progress and results come from process 0; the others report warnings and errors.
    std_logging.getLogger("ltjax").setLevel(std_logging.WARNING)


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
  try:
    if command in MULTI_PROCESS_COMMANDS:
      _start_processes()
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
