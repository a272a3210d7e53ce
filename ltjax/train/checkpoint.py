"""Orbax checkpoints of the train state, the input-pipeline state and run metadata.

A checkpoint step directory holds three items:
  state: the TrainState (restored into an abstract, sharded target: restoring without
    one turns optax states into lists);
  data: the grain iterator state as JSON. Our stream is a pure function of the step,
    so one JSON serves every process count (grain's own handler writes one file per
    process, which would tie a checkpoint to the number of hosts);
  meta: JSON metadata (config, stage, class counts).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ltjax.train.optim import param_path


def _manager(directory: str, keep: int = 2, read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
    max_to_keep=keep, create=not read_only, read_only=read_only
  )
  return ocp.CheckpointManager(
    os.path.abspath(directory), options=options, item_names=("state", "data", "meta")
  )


class Checkpointer:
  """Saves and restores (state, data state, metadata) under ``directory``."""

  def __init__(self, directory: str, keep: int = 2):
    self.directory = directory
    self._mngr = _manager(directory, keep)

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, step: int, state, data_state: dict, meta: dict) -> None:
    self._mngr.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(meta),
      ),
      force=True,
    )

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def abstract_like(state, shardings) -> Any:
  """ShapeDtypeStructs with shardings: the restore target."""
  return jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
  )


def _check_shapes(directory: str, step: int, stored, target) -> None:
  """Compares stored leaf shapes with the target's and raises a readable error."""
  want = {param_path(p): tuple(v.shape) for p, v in jax.tree_util.tree_leaves_with_path(target)}
  have = {
    param_path(p): tuple(getattr(v, "shape", ()))
    for p, v in jax.tree_util.tree_leaves_with_path(stored)
  }
  problems = [
    f"  {k}: checkpoint {have[k]} vs config {want[k]}"
    for k in sorted(want)
    if k in have and have[k] != want[k]
  ]
  missing = sorted(set(want) - set(have))
  extra = sorted(set(have) - set(want))
  problems += [f"  {k}: missing from the checkpoint" for k in missing[:10]]
  problems += [f"  {k}: in the checkpoint but not in the model" for k in extra[:10]]
  if problems:
    raise ValueError(
      f"checkpoint {directory} (step {step}) does not match the config:\n"
      + "\n".join(problems[:30])
      + "\nCheck model.backbone, model.width and the dataset's number of classes."
    )


def restore(directory: str, target, step: int | None = None) -> tuple[Any, dict, dict, int]:
  """Restores (state, data state, metadata, step) from ``directory``.

  Args:
    directory: a checkpoints directory written by :class:`Checkpointer`.
    target: abstract TrainState (see :func:`abstract_like`).
    step: which step; default the latest.

  Raises:
    ValueError: no checkpoint there, or its shapes do not match ``target``.
  """
  if not os.path.isdir(directory):
    raise ValueError(f"no checkpoint directory {directory}.")
  mngr = _manager(directory, read_only=True)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise ValueError(f"no checkpoint found in {directory}.")
  stored = ocp.StandardCheckpointer().metadata(
    os.path.join(os.path.abspath(directory), str(step), "state")
  )
  _check_shapes(directory, step, getattr(stored, "item_metadata", stored), target)
  restored = mngr.restore(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target),
      data=ocp.args.JsonRestore(),
      meta=ocp.args.JsonRestore(),
    ),
  )
  mngr.close()
  return restored["state"], restored["data"], restored["meta"], step


def resolve_init_from(path: str) -> str:
  """The checkpoints directory of a run given its work directory (or the directory itself)."""
  if not path:
    raise ValueError(
      "this stage starts from a trained model: set --config.init_from to the "
      "work directory of the stage-1 run."
    )
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
  """(params, batch_stats, metadata) of the latest checkpoint of an earlier run.

  The earlier stage's optimizer state is not needed (and has another structure), so
  the state item is restored without a target and only its variables are kept.
  """
  directory = os.path.abspath(resolve_init_from(init_from))
  mngr = _manager(directory, read_only=True)
  step = mngr.latest_step()
  mngr.close()
  if step is None:
    raise ValueError(f"no checkpoint found in {directory} (init_from).")
  path = os.path.join(directory, str(step))
  state = _restore_replicated(os.path.join(path, "state"))
  meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(os.path.join(path, "meta"))
  return dict(state["params"]), dict(state.get("batch_stats") or {}), dict(meta)


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
  _check_shapes(source, "latest", new_sub, old_sub)

  def replace(node, depth):
    node = dict(node)
    k = keys[depth]
    node[k] = new_sub if depth == len(keys) - 1 else replace(node[k], depth + 1)
    return node

  return replace(tree, 0)
