"""Loading the model an earlier run selected into a new stage (``config.init_from``).

A two-stage recipe (cRT, LWS, tau-norm, OLTR's second stage) starts from the first stage's
model: its best-validation checkpoint where it kept one (``BEST_DIR``, what the references'
next stage loads), else its newest intact checkpoint. Only the variables are read (the
earlier optimizer state has another structure), replicated over this run's devices, and
grafted subtree by subtree into the new model, shapes checked.

Before any of that, the run it names decides this run's data: its checkpoint metadata
(``earlier_run``) gives the seed its splits were drawn with (``split_seed``: the same
validation and test images), and this run refuses other splits of the same dataset
(``check_same_splits``): its backbone may have trained on them.
"""

from __future__ import annotations

import logging
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ltjax import config as config_lib
from ltjax.data import identity
from ltjax.train.checkpoint import check_shapes, latest_meta, manager, short_reason
from ltjax.train.integrity import DamagedCheckpoint, check_finite, verify_checksums

log = logging.getLogger(__name__)


#: Where a run with ``eval.select=best_val`` keeps its best-validation model, beside
#: ``checkpoints/``.
BEST_DIR = "best"


def resolve_init_from(path: str) -> str:
  """The checkpoints directory of the model a run selected, given its work directory (or
  the directory itself): its best-validation checkpoint (``BEST_DIR``) where it kept one
  (``eval.select=best_val``: what the references' next stage loads), else ``checkpoints/``."""
  if not path:
    raise ValueError(
      "this stage starts from a trained model: set --config.init_from to the "
      "work directory of the stage-1 run."
    )
  best = os.path.join(path, BEST_DIR)
  if latest_meta(best) is not None:
    return best
  candidate = os.path.join(path, "checkpoints")
  if os.path.isdir(candidate):
    return candidate
  if os.path.isdir(path):
    return path
  raise ValueError(f"init_from={path!r} does not exist.")


def _restore_replicated(path: str) -> dict:
  """A saved state item, whatever its structure, replicated over this run's devices.

  The target is built from the checkpoint's own metadata: restoring without one would
  ask for the devices of the run that saved it (another process count fails).
  """
  checkpointer = ocp.StandardCheckpointer()
  stored = checkpointer.metadata(path)
  stored = getattr(stored, "item_metadata", stored)
  repl = NamedSharding(Mesh(np.asarray(jax.devices()), ("all",)), PartitionSpec())
  target = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=repl) if hasattr(m, "shape") else m,
    stored.tree if hasattr(stored, "tree") else stored,
  )
  return checkpointer.restore(path, target)


def load_variables(init_from: str) -> tuple[dict, dict, dict]:
  """(params, batch_stats, metadata) of the newest intact checkpoint of an earlier run.

  The earlier stage's optimizer state is not needed (and has another structure), so
  the state item is restored without a target and only its variables are kept.
  """
  directory = os.path.abspath(resolve_init_from(init_from))
  if os.path.basename(directory) == BEST_DIR:
    log.info("init_from: the best-validation model of %s (its eval.select=best_val)", init_from)
  mngr = manager(directory, read_only=True)
  steps = sorted(mngr.all_steps(), reverse=True)
  mngr.close()
  if not steps:
    raise ValueError(f"no checkpoint found in {directory} (init_from).")
  problems = []
  for step in steps:
    path = os.path.join(directory, str(step))
    try:
      verify_checksums(directory, step)
      state = _restore_replicated(os.path.join(path, "state"))
      meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(os.path.join(path, "meta"))
      variables = (dict(state["params"]), dict(state.get("batch_stats") or {}))
      check_finite(variables, "array")
    except Exception as e:  # Damaged: any failure to read it back as written.
      problems.append(f"step {step}: {e if isinstance(e, DamagedCheckpoint) else short_reason(e)}")
      log.warning("init_from: checkpoint step %d in %s is damaged (%s)", step, directory, e)
      continue
    return (*variables, dict(meta))
  raise ValueError(
    f"init_from={init_from}: no intact checkpoint in {directory}:\n  " + "\n  ".join(problems)
  )


def graft(tree: dict, loaded: dict, prefix: str, source: str, target: str | None = None) -> dict:
  """Returns ``tree`` with its subtree at ``target`` replaced by ``loaded``'s at ``prefix``.

  Args:
    tree: the parameter (or statistics) tree to update.
    loaded: the earlier run's tree.
    prefix: path in ``loaded``, e.g. "backbone" or "head/fc".
    source: description of ``loaded`` for error messages.
    target: path in ``tree`` (default ``prefix``), e.g. "head/hallucinator".

  Raises:
    ValueError: the subtree is missing from ``loaded`` or its shapes differ.
  """
  target = target or prefix
  new_sub = loaded
  for k in prefix.split("/"):
    if not isinstance(new_sub, dict) or k not in new_sub:
      raise ValueError(f"{source} has no '{prefix}' to load.")
    new_sub = new_sub[k]
  keys = target.split("/")
  old_sub = tree
  for k in keys:
    old_sub = old_sub[k]
  check_shapes(source, "latest", new_sub, old_sub)

  def replace(node, depth):
    node = dict(node)
    k = keys[depth]
    node[k] = new_sub if depth == len(keys) - 1 else replace(node[k], depth + 1)
    return node

  return replace(tree, 0)


# ------------------------------------------------ the run a later stage starts from


def earlier_run(config: ml_collections.ConfigDict, stage) -> dict | None:
  """The checkpoint metadata of the run ``config.init_from`` names, for a stage that loads
  from one and where it has a checkpoint; else None."""
  if not (stage.copies_of(config) and config.init_from):
    return None
  try:
    return latest_meta(resolve_init_from(config.init_from))
  except ValueError:
    return None


def split_seed(config: ml_collections.ConfigDict, earlier: dict | None) -> int:
  """The seed the splits are drawn with: ``config.seed``, or, for a stage that starts from
  an earlier run of the same data (``earlier``: its checkpoint metadata), that run's, so
  that its validation carve and long-tail cut are reused: a classifier re-trained under
  another seed is then never validated or tested on its backbone's training images."""
  if not earlier:
    return int(config.seed)
  earlier_config = earlier.get("config") or {}
  if not config_lib.same_data(earlier_config.get("dataset") or {}, config.dataset.to_dict()):
    return int(config.seed)
  seed = (earlier.get("data") or {}).get("split_seed", earlier_config.get("seed"))
  seed = int(config.seed if seed is None else seed)
  if seed != config.seed:
    log.info(
      "splits drawn as init_from=%s drew them (seed %d; this run's seed %d draws its sampling "
      "and initialisation): the same validation and test images",
      config.init_from,
      seed,
      config.seed,
    )
  return seed


def check_same_splits(exp, earlier: dict | None) -> None:
  """A stage that starts from an earlier run of the same data must see that run's splits:
  its backbone was trained on that train split, so other val or test images may be ones it
  learnt. Raises ValueError naming the splits that differ and the fix."""
  if not earlier or "data" not in earlier:
    return  # An imported run or one from before ltjax recorded its data.
  earlier_dataset = (earlier.get("config") or {}).get("dataset") or {}
  same = config_lib.same_data(earlier_dataset, exp.config.dataset.to_dict())
  if not same or earlier.get("num_classes") != exp.splits.num_classes:
    return  # Other data or classes: ltjax.train.stages checks the classes.
  diffs = identity.differences(earlier["data"], exp.splits.identity())
  if diffs:
    raise ValueError(
      f"init_from={exp.config.init_from} was trained on other splits of this dataset than "
      f"this run would use ({identity.describe_differences(diffs)}): its backbone may have "
      "been trained on this run's validation or test images. Point --config.dataset.root "
      "(and lists_dir / packed_dir) at the data that run was trained on, or train the "
      "earlier stage again on this data."
    )
