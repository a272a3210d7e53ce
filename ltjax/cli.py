"""The ``ltjax`` command: train, evaluate, demo, report, stats, prepare, verify, import-torch,
plan, example-data.

ltjax train --config=configs/<dataset>/<stage>.py --workdir=DIR [--config.x=y ...]
ltjax evaluate --workdir=DIR [--config=...] [--open_set] [--posthoc]
ltjax demo [--workdir=DIR] [--dtype=bfloat16]
ltjax report --workdir=DIR [--compare RUN ...]
ltjax stats --split=LIST.txt [--num_classes=K]  |  ltjax stats --config=...
ltjax prepare --dataset=imagenet_lt|places_lt|inat2018 --root=IMAGES --out=DIR
ltjax prepare --config=... --out=DIR
ltjax verify --config=... [--splits=train,val,test]
ltjax import-torch CKPT.pth --config=... --workdir=DIR [--allow_pickle]
ltjax plan --config=... [--devices=N] [--split_over=M] [--fit=GB]
ltjax example-data --out=DIR

`ltjax <command> --help` lists a command's flags; `ltjax train --config=FILE --help` also
lists the config's fields with their values.

Several processes (hosts): run the same train/evaluate command in each, with
  --coordinator_address=HOST:PORT --num_processes=N --process_id=I
(or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), or --distributed on
SLURM, Open MPI and Cloud TPU pods, where JAX finds them itself.
"""

from __future__ import annotations

import errno
import logging as std_logging
import os
import re
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment config: a file, or the name of one that ships with ltjax "
  "(imagenet_lt/crt.py; `ltjax train --help` lists them). evaluate: default the run's own.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
_POSTHOC = flags.DEFINE_bool(
  "posthoc",
  False,
  "Also NCM, tau-norm and post-hoc logit adjustment (each selected on val) on the joint "
  "model's features.",
)
_OPEN_SET = flags.DEFINE_bool(
  "open_set",
  False,
  "Report open-set metrics: adds the dataset's open-set images (label -1: a reference "
  "dataset's open list, dataset.open_list, an image folder's open/) to the test split.",
)
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
  "allow_config_change",
  False,
  "Resume a run whose saved config differs from --config (the differing fields are logged).",
)
_SPLIT = flags.DEFINE_string("split", None, "A split list file (one 'path label' per line).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Number of classes (optional).")
_DATASET = flags.DEFINE_string(
  "dataset", None, "A split-list dataset of the table (imagenet_lt, places_lt, inat2018)."
)
_ROOT = flags.DEFINE_string("root", None, "The image directory the lists refer to.")
_LISTS_DIR = flags.DEFINE_string(
  "lists_dir", None, "The directory of the split lists (default: --root)."
)
_OUT = flags.DEFINE_string(
  "out", None, "The output directory (prepare: of the shards; example-data: of the dataset)."
)
_SPLITS = flags.DEFINE_string(
  "splits", None, "Comma-separated splits (prepare: train,val,test,open; verify: train,val,test)."
)
_RECORDS_PER_SHARD = flags.DEFINE_integer("records_per_shard", 1024, "Images per shard.")
_DTYPE = flags.DEFINE_enum(
  "dtype", "float32", ["float32", "bfloat16"], "The models' computation dtype."
)
_COMPARE = flags.DEFINE_multi_string(
  "compare",
  [],
  "Work directories (or their results.json) to compare in one table and one set of "
  "figures, written to --workdir (repeat the flag, or give several after one).",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0 (multi-process runs)."
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Number of processes (multi-process runs)."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "This process's index in [0, num_processes) (multi-process runs)."
)
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Join a multi-process run whose settings JAX detects (SLURM, Open MPI, Kubernetes, "
  "Cloud TPU pods).",
)
_DEVICES = flags.DEFINE_integer(
  "devices", 1, "Devices of the mesh the step is compiled for (simulated on a CPU)."
)
_SPLIT_OVER = flags.DEFINE_integer(
  "split_over",
  0,
  "Devices the config's global batch is meant for (default --devices): e.g. --devices 1 "
  "--split_over 8 gives the per-device figures of an 8-device run.",
)
_FIT = flags.DEFINE_float("fit", 0, "Also the largest per-device batch that fits in this many GB.")
_ALLOW_PICKLE = flags.DEFINE_bool(
  "allow_pickle",
  False,
  "Also unpickle Python objects other than tensors (can run code: trusted files only).",
)

USAGE = __doc__
MULTI_PROCESS = ("coordinator_address", "num_processes", "process_id", "distributed")

log = std_logging.getLogger("ltjax.cli")


def _is_main_process() -> bool:
  import jax

  return jax.process_index() == 0


def _require(flag, name: str) -> None:
  if flag.value is None:
    raise app.UsageError(f"--{name} is required.")


def cmd_train(argv) -> None:
  """Trains (or resumes) the config's stage in --workdir, then evaluates it on test."""
  del argv
  _require(_CONFIG, "config")
  _require(_WORKDIR, "workdir")
  from ltjax.evaluate.report import format_results_table
  from ltjax.train import loop

  summary = loop.train_and_evaluate(
    _CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CONFIG_CHANGE.value
  )
  if _is_main_process():
    print(format_results_table({_CONFIG.value.method: summary}))
    print(f"\nresults: {_WORKDIR.value}/results.json; `ltjax report --workdir={_WORKDIR.value}`")


def cmd_evaluate(argv) -> None:
  """Evaluates the run in --workdir on test (its last step, or with eval.select=best_val
  its best-validation model), with the run's own config
  (config.json; --config and evaluation overrides are checked against it; works on a
  read-only run)."""
  del argv
  _require(_WORKDIR, "workdir")
  _require(_CONFIG, "config")
  from ltjax.evaluate import report
  from ltjax.train import loop

  config = _CONFIG.value
  if _OPEN_SET.value:
    _with_open_set(config)
  results = loop.evaluate_run(config, _WORKDIR.value, posthoc=_POSTHOC.value)
  if _OPEN_SET.value and not any("open_f_measure" in r for r in results.values()):
    raise ValueError(
      "--open_set: the test split has no open-set images (label -1); "
      "set --config.dataset.open_classes or an open-set source."
    )
  if _is_main_process():
    print(report.format_results_table(results))


def _with_open_set(config) -> None:
  """``evaluate --open_set`` on a dataset with an open-set split (the reference lists, your
  own lists' ``dataset.open_list``, an image folder's ``open/``): turns it on, as the open
  set is only ever test images (the model is the same; ``dataset.open_set`` is an
  evaluation field)."""
  from ltjax.data import datasets

  entry = datasets.get(config.dataset.name)
  if "open_set" not in entry.fields:
    if not config.dataset.open_classes:
      raise ValueError(
        "--open_set: the test split has no open-set images (label -1): dataset "
        f"{config.dataset.name!r} has no open-set split; its open set is classes held out of "
        "training (dataset.open_classes), which only training can set."
      )
    return
  if not config.dataset.open_set:
    log.info("--open_set: adding the dataset's open-set images to the test split")
    config.dataset.open_set = True


def cmd_demo(argv) -> None:
  """The whole pipeline on digits-LT: joint, NCM, cRT, tau-norm, post-hoc logit adjustment,
  LWS, OLTR, and joint training with the logit-adjusted loss (about a minute)."""
  del argv
  from ltjax import demo
  from ltjax.evaluate.report import format_results_table

  workdir = _WORKDIR.value or os.path.abspath("ltjax_demo")
  results = demo.run(workdir, dtype=_DTYPE.value)
  print(f"\nltjax demo: digits-LT results (test split), written to {workdir}/results.json")
  print(f"report with figures: {workdir}/report.md\n")
  print(format_results_table(results))


def cmd_report(argv) -> None:
  """Writes report.md and its figures from the results in --workdir, or compares runs."""
  from ltjax.evaluate import report

  runs = [*_COMPARE.value, *argv[1:]]
  if runs:
    _require(_WORKDIR, "workdir")
    path, table = report.write_comparison(runs, _WORKDIR.value)
    print(table)
    print(f"\nwrote {path}")
    return
  _require(_WORKDIR, "workdir")
  print(f"wrote {report.write_report(_WORKDIR.value)}")


def cmd_stats(argv) -> None:
  """The class distribution of a split list (--split), or of the training split of the
  config's dataset (--config, any dataset): sizes, imbalance, shot groups."""
  del argv
  from ltjax.data import longtail

  if _CONFIG.present:
    from ltjax.data import datasets

    config = _CONFIG.value
    splits = datasets.build_splits(config.dataset, config.seed, config.data)
    stats = longtail.split_statistics(
      splits.train.labels,
      splits.num_classes,
      many_threshold=config.eval.many_threshold,
      few_threshold=config.eval.few_threshold,
    )
    name = f"{config.dataset.name} train"
    print(longtail.format_statistics(stats, name))
    print(f"val: {len(splits.val):,} images; test: {len(splits.test):,} images")
    if splits.class_names is not None:
      print(f"classes: {', '.join(splits.class_names[:50])}")
    return
  _require(_SPLIT, "split")
  from ltjax.data.sources import splitlist

  _, labels = splitlist.parse_split_file(_SPLIT.value, _NUM_CLASSES.value, allow_open=True)
  stats = longtail.split_statistics(labels, _NUM_CLASSES.value)
  print(longtail.format_statistics(stats, os.path.basename(_SPLIT.value)))


def cmd_prepare(argv) -> None:
  """Packs the images of split lists into ArrayRecord shards (resumable): a reference
  dataset's (--dataset, --root) or any config's dataset, your own lists or image folder
  included (--config); train from them with --config.dataset.packed_dir=OUT."""
  del argv
  _require(_OUT, "out")
  from ltjax.data import prepare

  note = lambda line: print(line, flush=True)  # noqa: E731
  if _CONFIG.present:
    prepare.prepare_config(
      _CONFIG.value.dataset,
      _OUT.value,
      records_per_shard=_RECORDS_PER_SHARD.value,
      progress=True,
      note=note,
    )
    return
  for flag, name in ((_DATASET, "dataset"), (_ROOT, "root")):
    _require(flag, name)
  splits = _SPLITS.value or ",".join(prepare.PREPARE_SPLITS)
  prepare.prepare_dataset(
    _DATASET.value,
    _ROOT.value,
    _OUT.value,
    lists_dir=_LISTS_DIR.value,
    splits=tuple(s.strip() for s in splits.split(",") if s.strip()),
    require_open=_SPLITS.value is not None,  # Only OLTR needs the open list.
    records_per_shard=_RECORDS_PER_SHARD.value,
    progress=True,
    note=note,
  )


def cmd_verify(argv) -> None:
  """Decodes every image of the config's splits before a long run; lists all bad ones."""
  del argv
  _require(_CONFIG, "config")
  from ltjax.data import datasets

  config = _CONFIG.value
  config.data.skip_corrupt = False  # Report every unreadable image, replace none.
  config.data.decode_cache_mb = 0  # Each image is decoded once here: nothing to keep.
  names = tuple(s.strip() for s in (_SPLITS.value or "train,val,test").split(",") if s.strip())
  splits = datasets.build_splits(config.dataset, config.seed, config.data)
  problems = datasets.verify_splits(splits, names, threads=config.data.num_threads)
  bad = sum(len(p) for p in problems.values())
  for name in names:
    n = len(getattr(splits, name))
    print(f"{name}: {n:,} images, {len(problems[name])} unreadable")
    for line in problems[name]:
      print(f"  {line}")
  if bad:
    raise ValueError(
      f"{bad} unreadable image(s), listed above: fix or remove them, or set "
      "--config.data.skip_corrupt=True to replace each by another image of its class."
    )


def cmd_plan(argv) -> None:
  """The memory one device needs for the config's train step (compiled without data; on a
  CPU an estimate of what a GPU/TPU allocates), and with --fit the largest batch that fits."""
  del argv
  _require(_CONFIG, "config")
  devices, split = _DEVICES.value, _SPLIT_OVER.value or _DEVICES.value
  if devices < 1 or split < 1:
    raise ValueError("--devices and --split_over must be >= 1.")
  if "jax" not in sys.modules:  # Simulated CPU devices must be asked for before JAX starts.
    os.environ["XLA_FLAGS"] = (
      f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    ).strip()
  import jax

  from ltjax.stop import STOP
  from ltjax.train import memory_plan

  config = _CONFIG.value
  if config.batch_size % split:
    raise ValueError(f"batch_size {config.batch_size} is not divisible by --split_over={split}.")
  per_device = config.batch_size // split
  # Compiled for `devices` devices at the per-device batch of the config's global batch split
  # over `split`; the table shows the config's own global batch.
  compiled = config.copy_and_resolve_references()
  compiled.batch_size = per_device * devices
  spec = memory_plan.data_spec(compiled)
  result = memory_plan.plan(compiled, devices, spec)
  platform = jax.devices()[0].platform
  print(f"{devices} {platform} device(s); per-device figures of the compiled train step")
  print(memory_plan.TABLE_HEADER)
  print(memory_plan.format_plan(_config_name(_CONFIG_PATH[0]), config, result, per_device))
  if _FIT.value:
    STOP.check()
    fit = memory_plan.largest_batch(compiled, devices, _FIT.value, spec)
    print(f"largest per-device batch within {_FIT.value:g} GB: {fit}")


def cmd_example_data(argv) -> None:
  """Writes a tiny long-tailed image dataset (5 digit classes, imbalance 20, val, test and
  an open set; 32x32 JPEGs) to --out, as an image-folder tree and as list files: the
  README's "Your own data" walk-through trains on it."""
  del argv
  _require(_OUT, "out")
  from ltjax.data import example

  counts = example.write_example_dataset(_OUT.value)
  print(
    f"wrote {sum(counts.values())} images to {_OUT.value}: "
    + ", ".join(f"{split} {n}" for split, n in counts.items())
    + f" ({', '.join(example.CLASS_NAMES)}; folders train/ val/ test/ open/ and lists "
    "train.txt val.txt test.txt open.txt)"
  )


def cmd_import_torch(argv) -> None:
  """Writes a reference PyTorch checkpoint (classifier-balancing / OLTR
  final_model_checkpoint.pth) as a finished run of the config in --workdir."""
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
  "plan": (cmd_plan, ("config", "devices", "split_over", "fit")),
  "example-data": (cmd_example_data, ("out",)),
}
MULTI_PROCESS_COMMANDS = ("train", "evaluate")
#: Commands that compile steps: they keep the compiled programs on disk (below).
COMPILING_COMMANDS = ("train", "evaluate", "demo", "plan", "import-torch")

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
  _prune_compilation_cache(directory)
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


def _prune_compilation_cache(directory: str, max_bytes: int = _CACHE_MAX_BYTES) -> None:
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


def _fail(message: str, code: int = 1) -> None:
  print(f"ltjax: error: {message}", file=sys.stderr)
  sys.stderr.flush()
  sys.exit(code)


# ------------------------------------------------------------------------------- help


def _config_fields(tree, prefix: str = "", unread: set[str] = frozenset()) -> list[str]:
  lines = []
  for key in sorted(tree):
    value = tree[key]
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      lines += _config_fields(value, f"{name}.", unread)
    else:
      note = "  (not read by this dataset)" if name in unread else ""
      lines.append(f"  --config.{name}={value!r}{note}")
  return lines


def _command_help(command: str, args: list[str]) -> str:
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
      resolved = _resolve_config([f"--config={config_arg}"], command)[0]
      config_arg = resolved.split("=", 1)[1].split(":", 1)[0]
    lines.append("")
    if config_arg is None:
      lines.append(
        "config fields: every field of the config can be overridden with "
        "--config.<field>=<value>; add --config=FILE to this --help to list them with the "
        "file's values (all fields and their meaning: ltjax/config.py)."
      )
      names = [n for n in packaged_configs() if n != "run.py"]
      lines += ["", "configs that ship with ltjax (--config=<name>; a file path works too):"]
      lines += [f"  {n}" for n in names]
    else:
      from ltjax import config as config_lib

      try:
        tree = config_lib.load_file(config_arg).to_dict()
      except Exception as e:  # The error is the user's config: shown, not raised.
        lines.append(f"config fields: cannot load {config_arg}: {_config_error(e, config_arg)}")
      else:
        lines.append(f"config fields of {config_arg} (meanings: ltjax/config.py):")
        lines += _config_fields(tree, unread=_unread_dataset_fields(tree))
  return "\n".join(lines)


def _unread_dataset_fields(tree: dict) -> set[str]:
  """The ``dataset.*`` fields the config's dataset does not read (marked in ``--help``)."""
  from ltjax.data import datasets

  name = tree.get("dataset", {}).get("name")
  if name not in datasets.DATASETS:
    return set()
  reads = {*datasets.COMMON_FIELDS, *datasets.DATASETS[name].fields}
  return {f"dataset.{k}" for k in tree["dataset"] if k not in reads}


# ----------------------------------------------------------------------- config errors


def _config_error(e: BaseException, path: str | None) -> str:
  """'config file X line N: message' for an error raised by the config file itself."""
  if isinstance(e, SyntaxError):
    return f"config file {e.filename or path} line {e.lineno}: {e.msg}"
  line = None
  for frame in traceback.extract_tb(e.__traceback__):
    if path and os.path.abspath(frame.filename) == os.path.abspath(path):
      line = frame.lineno
  where = f"config file {path}" + (f" line {line}" if line else "")
  return f"{where}: {type(e).__name__}: {e}"


def _unknown_field(args: list[str], message: str) -> str | None:
  """'unknown config field optim.lrr (did you mean optim.lr?)' from config_flags' error."""
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


def _config_name(path: str | None) -> str:
  """A config file as the user names it: ``imagenet_lt/crt.py`` for a packaged one."""
  if not path:
    return "config"
  packaged = os.path.join(os.path.dirname(__file__), "configs")
  absolute = os.path.abspath(path)
  return os.path.relpath(absolute, packaged) if absolute.startswith(packaged) else path


def packaged_configs() -> list[str]:
  """The configs that ship with ltjax (``ltjax/configs``), as ``<dataset>/<stage>.py``."""
  root = os.path.join(os.path.dirname(__file__), "configs")
  return sorted(
    os.path.relpath(os.path.join(d, f), root)
    for d, _, names in os.walk(root)
    for f in names
    if f.endswith(".py") and d != root
  )


def _resolve_config(args: list[str], command: str) -> list[str]:
  """``--config=imagenet_lt/crt.py`` (or ``configs/...``) names a packaged config when no
  such file is under the current directory; ``ltjax evaluate`` without ``--config`` takes
  the run's own (``ltjax/configs/run.py``, reading ``--workdir``'s config.json)."""
  packaged = os.path.join(os.path.dirname(__file__), "configs")
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
      out.insert(0, f"--config={_RUN_CONFIG}:{workdir}")
  return out


#: The packaged config that reads a run's config.json (``ltjax evaluate --workdir=RUN``).
_RUN_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "run.py")


_CONFIG_PATH = [None]  # The config file of this command, for messages.


def _missing_config(path: str, command: str) -> str:
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


def _parse_flags(command: str, args: list[str]) -> list[str]:
  """Parses flags and config overrides; a bad flag or key is one clear line, not a traceback."""
  args = _resolve_config(args, command)
  config_path = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
  if config_path and ":" in config_path:
    config_path = config_path.split(":", 1)[0]
  _CONFIG_PATH[0] = config_path
  if config_path is not None and not os.path.isfile(config_path):
    _fail(_missing_config(config_path, command), 2)
  own = COMMANDS[command][1]
  known = ", ".join(f"--{n}" for n in own)
  try:
    rest = flags.FLAGS([f"ltjax {command}", *args])
    if _CONFIG.present:
      _CONFIG.value.stage  # noqa: B018 (config_flags defers some load errors to first use)
  except flags.Error as e:
    if isinstance(e.__cause__, SyntaxError | NameError):
      _fail(_config_error(e.__cause__, config_path), 2)
    if config_path == _RUN_CONFIG:  # Not a run: of_run's own line, not the traceback.
      cause = e  # absl re-raises ml_collections' wrapper of what config.of_run raised.
      while cause is not None and not str(cause).startswith("Error whilst parsing config"):
        cause = cause.__cause__ or cause.__context__
      if cause is not None and isinstance(cause.__context__, ValueError):
        _fail(f"--workdir: {cause.__context__}", 2)
    _fail(f"{e}\n`ltjax {command} --help` lists its flags: {known}.", 2)
  except (AttributeError, KeyError) as e:
    message = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
    _fail(_unknown_field(args, message) or f"bad --config or override: {message}", 2)
  except OSError as e:
    _fail(f"cannot load the config file: {e}", 2)
  except Exception as e:  # Raised by the config file's own code (syntax, names, ...).
    _fail(_config_error(e, config_path), 2)
  for name in sorted({n for _, names in COMMANDS.values() for n in names} - set(own)):
    if flags.FLAGS[name].present:  # Another command's flag would be silently ignored.
      _fail(f"--{name} is not a flag of `ltjax {command}`; its flags: {known}.", 2)
  return rest


# --------------------------------------------------------------------------- main


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


def _os_error(e: OSError) -> str:
  """One line for an environment fault (read-only, full disk, permissions)."""
  hints = {
    errno.ENOSPC: "free some space, then run the same command again (saved checkpoints are intact)",
    errno.EROFS: "the file system is read-only: choose a writable directory",
    errno.EACCES: "permission denied: choose a directory you can write",
    errno.EDQUOT: "disk quota exceeded: free some space, then run the same command again",
  }
  where = f" ({e.filename})" if e.filename else ""
  hint = hints.get(e.errno)
  return f"{e.strerror or e}{where}" + (f": {hint}." if hint else ".")


def _exit_interrupted(e: KeyboardInterrupt) -> None:
  """Says what the stop saved, then exits 130 at once (no interpreter teardown while XLA or
  input threads still run; everything to save is saved by then)."""
  message = getattr(e, "message", None) or (
    "interrupted: nothing was saved by this stop (checkpoints saved before it are intact)."
  )
  print(f"ltjax: {message}", file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(130)


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  from ltjax import stop  # The one signal mechanism, from the first instruction on.

  stop.STOP.install()
  try:
    _main(argv)
  except KeyboardInterrupt as e:
    _exit_interrupted(e)


class _ConsoleHandler(std_logging.Handler):
  """Log lines on stderr as ``HH:MM:SS LEVEL message``, written through ``tqdm.write`` so
  that a progress bar on the terminal is cleared and redrawn below the line, never torn."""

  def emit(self, record: std_logging.LogRecord) -> None:
    try:
      import tqdm

      tqdm.tqdm.write(self.format(record), file=sys.stderr)
    except Exception:
      self.handleError(record)


def _install_console_logging() -> None:
  """One console format for ltjax and the libraries (absl's own prefix, ``I1205
  19:21:04.856419 140361158372224 loop.py:80]``, is replaced)."""
  handler = _ConsoleHandler()
  handler.setFormatter(std_logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
  root = std_logging.getLogger()
  for old in list(root.handlers):
    if old is logging.get_absl_handler() or isinstance(old, _ConsoleHandler):
      root.removeHandler(old)
  root.addHandler(handler)


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
    print(_command_help(command, argv[2:]))
    sys.exit(0)
  rest = _parse_flags(command, argv[2:])
  _install_console_logging()
  # ltjax reports progress at INFO; orbax/absl internals only from WARNING up
  # (--verbosity=0 shows them).
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  std_logging.getLogger("ltjax").setLevel(std_logging.INFO)
  if _WORKDIR.value:
    log.info("ltjax %s: work directory %s", command, _WORKDIR.value)
  try:
    if command in COMPILING_COMMANDS:
      use_compilation_cache()
    if command in MULTI_PROCESS_COMMANDS:
      _start_processes()
    from ltjax.stop import STOP

    STOP.check()
    COMMANDS[command][0](rest)
  except app.UsageError as e:
    _fail(f"{e}\n`ltjax {command} --help` lists its flags.", 2)
  except (ValueError, FileNotFoundError) as e:
    if os.environ.get("LTJAX_DEBUG"):
      raise
    _fail(f"{e}\n(set LTJAX_DEBUG=1 for the full traceback)")
  except OSError as e:
    if os.environ.get("LTJAX_DEBUG"):
      raise
    _fail(_os_error(e))


if __name__ == "__main__":
  main()
