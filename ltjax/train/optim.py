"""Learning-rate schedules, SGD with weight decay, and parameter freezing by path."""

from __future__ import annotations

import re

import jax
import ml_collections
import optax

SCHEDULES = ("cosine", "step", "constant")


def make_schedule(
  cfg: ml_collections.ConfigDict, steps_per_epoch: float, total_steps: int, lr: float | None = None
) -> optax.Schedule:
  """The learning rate per step: cosine to 0, step decay, or constant; optional warmup.

  ``lr`` overrides ``cfg.lr`` as the base rate (OLTR's optimizer groups).
  """
  lr = cfg.lr if lr is None else lr
  if cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total_steps, 1))
  elif cfg.schedule == "step":
    every = max(int(round(cfg.step_every_epochs * steps_per_epoch)), 1)
    bounds = {every * i: cfg.step_gamma for i in range(1, total_steps // every + 1)}
    main = optax.piecewise_constant_schedule(lr, bounds)
  elif cfg.schedule == "constant":
    main = optax.constant_schedule(lr)
  else:
    raise ValueError(f"unknown schedule {cfg.schedule!r}; valid: {', '.join(SCHEDULES)}.")
  warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
  if warmup <= 0:
    return main
  ramp = optax.linear_schedule(0.0, lr, warmup)
  return optax.join_schedules([ramp, main], [warmup])


def param_path(path) -> str:
  """'backbone/stage1_block0/conv1/kernel' for a jax tree path."""
  parts = (getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)
  return "/".join(str(p) for p in parts)


def freeze_labels(params, patterns: tuple[str, ...]):
  """'frozen' for parameters whose path matches one of the regexes, else 'trained'."""
  compiled = [re.compile(p) for p in patterns]
  return jax.tree_util.tree_map_with_path(
    lambda path, _: "frozen" if any(c.search(param_path(path)) for c in compiled) else "trained",
    params,
  )


def make_optimizer(
  cfg: ml_collections.ConfigDict, schedule: optax.Schedule, params, freeze: tuple[str, ...] = ()
) -> optax.GradientTransformation:
  """SGD with momentum and L2 weight decay added to the gradient (PyTorch's SGD).

  Args:
    cfg: ``config.optim``.
    schedule: learning rate per step.
    params: the parameter tree (for the freeze labels).
    freeze: regexes over parameter paths; matching parameters get exactly zero updates
      (no weight decay either).
  """
  sgd = optax.chain(
    optax.add_decayed_weights(cfg.weight_decay), optax.sgd(schedule, momentum=cfg.momentum or None)
  )
  if not freeze:
    return sgd
  labels = freeze_labels(params, tuple(freeze))
  if "trained" not in jax.tree.leaves(labels):
    raise ValueError(f"freeze patterns {tuple(freeze)} freeze every parameter.")
  return optax.multi_transform({"trained": sgd, "frozen": optax.set_to_zero()}, labels)


def make_oltr_optimizer(
  cfg: ml_collections.ConfigDict,
  oltr: ml_collections.ConfigDict,
  schedule_fn,
  tree,
  freeze: tuple[str, ...] = (),
) -> optax.GradientTransformation:
  """OLTR stage 2's three SGD groups over ``{"params": ..., "centroids": ...}``.

  Backbone and neck (``optim.lr``, 0.01 in the reference), the meta-embedding head
  (``oltr.head_lr``, 0.1) and the centroids (``oltr.centroids_lr``, 0.01, with their
  own momentum and weight decay). Every group follows the same schedule shape
  (``schedule_fn(base_lr)``). Parameters whose path (as in ``optim.freeze``, e.g.
  ``backbone/conv1/kernel``) matches a ``freeze`` regex get exactly zero updates: the
  reference's ``fix`` of the feature model is ``freeze=("^backbone/",)``, which leaves
  the neck (attention, ``fc_add``) training.
  """
  compiled = [re.compile(p) for p in freeze]

  def sgd(lr, momentum, weight_decay):
    return optax.chain(
      optax.add_decayed_weights(weight_decay), optax.sgd(schedule_fn(lr), momentum=momentum or None)
    )

  def label(path, _):
    p = param_path(path)
    if p.startswith("centroids"):
      return "centroids"
    if any(c.search(p.removeprefix("params/")) for c in compiled):
      return "frozen"
    return "head" if p.startswith("params/head/") else "backbone"

  labels = jax.tree_util.tree_map_with_path(label, tree)
  if freeze and not {"backbone", "head"} & set(jax.tree.leaves(labels)):
    raise ValueError(f"freeze patterns {tuple(freeze)} freeze every parameter.")
  return optax.multi_transform(
    {
      "backbone": sgd(cfg.lr, cfg.momentum, cfg.weight_decay),
      "head": sgd(oltr.head_lr, cfg.momentum, cfg.weight_decay),
      "centroids": sgd(oltr.centroids_lr, oltr.centroids_momentum, oltr.centroids_weight_decay),
      "frozen": optax.set_to_zero(),
    },
    labels,
  )
