"""The flags of every ``ltjax`` command, defined once: absl keeps one global flag registry,
so each flag exists once and the command table (``commands.COMMANDS``) says which command
reads which (``--help`` lists them, another command's flag is refused)."""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment config: a file, or the name of one that ships with ltjax "
  "(imagenet_lt/crt.py; `ltjax train --help` lists them). evaluate: default the run's own.",
  lock_config=True,
)
WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
POSTHOC = flags.DEFINE_bool(
  "posthoc",
  False,
  "Also the post-hoc methods (the classes of ltjax/evaluate/posthoc_methods.py, each "
  "choosing its settings on val) on the model's features and logits: those "
  "--config.eval.posthoc names, by default every registered one.",
)
OPEN_SET = flags.DEFINE_bool(
  "open_set",
  False,
  "Report open-set metrics: adds the dataset's open-set images (label -1: a reference "
  "dataset's open list, dataset.open_list, an image folder's open/) to the test split.",
)
ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
  "allow_config_change",
  False,
  "Resume a run whose saved config differs from --config (the differing fields are logged).",
)
SPLIT = flags.DEFINE_string("split", None, "A split list file (one 'path label' per line).")
NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Number of classes (optional).")
DATASET = flags.DEFINE_string(
  "dataset", None, "A split-list dataset of the table (imagenet_lt, places_lt, inat2018)."
)
ROOT = flags.DEFINE_string("root", None, "The image directory the lists refer to.")
LISTS_DIR = flags.DEFINE_string(
  "lists_dir", None, "The directory of the split lists (default: --root)."
)
OUT = flags.DEFINE_string(
  "out",
  None,
  "The output (prepare: the shards' directory; example-data: the dataset's; clip-text: the "
  ".npz file).",
)
SPLITS = flags.DEFINE_string(
  "splits", None, "Comma-separated splits (prepare: train,val,test,open; verify: train,val,test)."
)
RECORDS_PER_SHARD = flags.DEFINE_integer("records_per_shard", 1024, "Images per shard.")
DTYPE = flags.DEFINE_enum(
  "dtype", "float32", ["float32", "bfloat16"], "The models' computation dtype."
)
COMPARE = flags.DEFINE_multi_string(
  "compare",
  [],
  "Work directories (or their results.json) to compare in one table and one set of "
  "figures, written to --workdir (repeat the flag, or give several after one).",
)
COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0 (multi-process runs)."
)
NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Number of processes (multi-process runs)."
)
PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "This process's index in [0, num_processes) (multi-process runs)."
)
DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Join a multi-process run whose settings JAX detects (SLURM, Open MPI, Kubernetes, "
  "Cloud TPU pods).",
)
DEVICES = flags.DEFINE_integer(
  "devices", 1, "Devices of the mesh the step is compiled for (simulated on a CPU)."
)
SPLIT_OVER = flags.DEFINE_integer(
  "split_over",
  0,
  "Devices the config's global batch is meant for (default --devices): e.g. --devices 1 "
  "--split_over 8 gives the per-device figures of an 8-device run.",
)
FIT = flags.DEFINE_float("fit", 0, "Also the largest per-device batch that fits in this many GB.")
ALLOW_PICKLE = flags.DEFINE_bool(
  "allow_pickle",
  False,
  "Also unpickle Python objects other than tensors (can run code: trusted files only).",
)
PROMPT = flags.DEFINE_string(
  "prompt",
  "a photo of a {}.",
  "clip-text: the text of each class, {} its name (underscores read as spaces).",
)

#: The flags that join a multi-process run (train, evaluate).
MULTI_PROCESS = ("coordinator_address", "num_processes", "process_id", "distributed")


def require(flag, name: str) -> None:
  """A ``UsageError`` when a command's required flag is missing."""
  if flag.value is None:
    raise app.UsageError(f"--{name} is required.")
