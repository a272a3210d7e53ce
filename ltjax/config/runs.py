"""A run's config after training: loading files, reading a work directory's config.json,
and comparing runs.

``ltjax train`` records the config it ran (``config.json``, paths made absolute); resuming,
``ltjax evaluate`` and the comparison of runs read it back here. What may change on resume
and what identifies a computation (``fingerprint``) are decided in one place, so that
checkpoints, caches and evaluations agree on when two configs are "the same run".
"""

from __future__ import annotations

import importlib.util

import ml_collections

from ltjax.config.schema import base_config


def load_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """``get_config()`` of a config file, as ``ltjax --config=path`` loads it
  (``get_config(arg)`` for ``--config=path:arg``)."""
  spec = importlib.util.spec_from_file_location("ltjax_user_config", path)
  if spec is None or spec.loader is None:
    raise OSError(f"cannot load {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config() if arg is None else module.get_config(arg)


#: Fields that may differ when a run resumes: they change how it is logged, checkpointed,
#: parallelised or read, not what it computes.
MAY_CHANGE_ON_RESUME = (
  "log_every_steps",
  "checkpoint_every_steps",
  "keep_checkpoints",
  "eval_every_epochs",
  "num_devices",
  "init_from",
  "data.num_threads",
  "data.prefetch",
  "data.decode_cache_mb",
  "eval.batch_size",
  "dataset.root",
  "dataset.lists_dir",
  "dataset.data_dir",
  "dataset.packed_dir",
  "model.pretrained",
  "model.pretrained_allow_pickle",
  # Read at a fresh start only; the run keeps its own copy (text_features.npz).
  "model.text_features",
)


#: Fields ``ltjax evaluate`` may override on a run's own config (with the fields of
#: ``MAY_CHANGE_ON_RESUME``): how it is evaluated, not what was trained.
EVALUATION_FIELDS = (
  "eval.batch_size",
  "eval.many_threshold",
  "eval.few_threshold",
  "eval.open_threshold",
  "eval.select",
  "eval.evaluators",
  "eval.ece_bins",
  "eval.posthoc",
  "eval.keep_known",
  # The test images' views: LIFT's five-crop test-time ensemble of a trained run.
  "data.eval_transform",
  "data.tte_expand",
  # Text features for the zero-shot row of a run trained without them.
  "model.text_features",
  # The open set is test images only (never trained on): `ltjax evaluate --open_set`.
  "dataset.open_set",
  "dataset.open_list",
)


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """The ConfigDict of a saved ``config.to_dict()`` (a run's config.json): the current
  defaults with every saved field set (lists back to tuples); fields this ltjax does not
  know are ignored, fields it added since keep their defaults."""
  config = base_config()

  def assign(node, values):
    for key, value in values.items():
      if key not in node:
        continue
      if isinstance(node[key], ml_collections.ConfigDict) and isinstance(value, dict):
        assign(node[key], value)
        continue
      if isinstance(value, list):
        value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
      try:
        node[key] = value
      except TypeError:  # e.g. an int saved for a float field: the field's own type.
        node[key] = type(node[key])(value)

  assign(config, saved)
  return config


def of_run(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in ``workdir`` was trained with (its config.json).

  Raises:
    ValueError: no config.json there (not a work directory, or a run of an ltjax from
      before config.json: pass its ``--config``).
  """
  import os

  from ltjax import files

  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(
      f"{workdir} has no config.json (it is not a work directory of ltjax train or "
      "import-torch, or a run from before config.json): pass the run's --config=FILE."
    )
  saved = files.read_json(path, "restore or delete it, and pass the run's --config=FILE")
  if not isinstance(saved, dict):
    raise ValueError(f"{path} does not hold a config; pass the run's --config=FILE.")
  return from_saved(saved)


#: Fields that name files or directories: stored resolved (absolute) in a run's config, so
#: that a run evaluated, resumed or continued from another directory reads the same files.
PATH_FIELDS = (
  "init_from",
  "dataset.root",
  "dataset.lists_dir",
  "dataset.data_dir",
  "dataset.packed_dir",
  "model.pretrained",
  "model.text_features",
)

#: ``config.dataset`` fields that say where a dataset is, not what it is.
DATA_LOCATIONS = ("root", "lists_dir", "data_dir", "packed_dir")


def resolve_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with every ``PATH_FIELDS`` entry made absolute (in place, and returned):
  relative to the current directory, as the command that was given it meant it. URLs
  (``gs://...``) and empty fields are left as they are."""
  import os

  for path in PATH_FIELDS:
    *parents, leaf = path.split(".")
    node = config
    for p in parents:
      node = node[p]
    value = node[leaf]
    if isinstance(value, str) and value and "://" not in value:
      node[leaf] = os.path.abspath(os.path.expanduser(value))
  return config


def same_data(dataset_a: dict, dataset_b: dict) -> bool:
  """Whether two ``config.dataset`` blocks (as dicts) describe the same data, wherever it
  is (``DATA_LOCATIONS`` aside)."""
  flat = lambda d: {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}  # noqa: E731
  a = {k: v for k, v in flat(dataset_a).items() if k not in DATA_LOCATIONS}
  b = {k: v for k, v in flat(dataset_b).items() if k not in DATA_LOCATIONS}
  keys = set(a) & set(b)  # A field one ltjax version lacks: compared where both have it.
  return all(a[k] == b[k] for k in keys)


def fingerprint(config: ml_collections.ConfigDict) -> str:
  """SHA-256 of what the config computes: every field but ``MAY_CHANGE_ON_RESUME`` (how a
  run is logged, checkpointed, parallelised and where its files are). Caches derived from
  a run (``features/*.npz``) are keyed by it and the checkpoint step."""
  import hashlib
  import json

  def flat(tree, prefix=""):
    for key, value in sorted(tree.items()):
      name = f"{prefix}{key}"
      if isinstance(value, dict):
        yield from flat(value, f"{name}.")
      elif name not in MAY_CHANGE_ON_RESUME:
        yield name, value

  text = json.dumps(list(flat(config.to_dict())), default=str)
  return hashlib.sha256(text.encode()).hexdigest()
