"""Learning-rate schedules and the SGD groups (backbone, head, centroids, frozen) of every stage."""

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


GROUPS = ("backbone", "head", "centroids")


def group_labels(tree, freeze: tuple[str, ...] = ()):
  """The optimizer group of every leaf of ``{"params": ..., "centroids": ...}``.

  ``"centroids"`` for the OLTR centroids; ``"frozen"`` for parameters whose path (without the
  ``params/`` prefix, e.g. ``backbone/conv1/kernel``) matches one of the ``freeze`` regexes;
  ``"head"`` for the classifier (``head/...``); ``"backbone"`` for everything else (the
  backbone and the neck: the reference's ``feat_model``).
  """
  compiled = [re.compile(p) for p in freeze]

  def label(path, _):
    p = param_path(path)
    if p.startswith("centroids"):
      return "centroids"
    p = p.removeprefix("params/")
    if any(c.search(p) for c in compiled):
      return "frozen"
    return "head" if p.startswith("head/") else "backbone"

  return jax.tree_util.tree_map_with_path(label, tree)


def group_hyperparameters(
  config: ml_collections.ConfigDict,
) -> dict[str, tuple[float, float, float]]:
  """(base learning rate, momentum, weight decay) of each optimizer group.

  backbone: ``optim.lr``; head: ``optim.head_lr`` (unset: ``optim.lr``); both with
  ``optim.momentum`` and ``optim.weight_decay``. centroids: ``oltr.centroids_lr``,
  ``oltr.centroids_momentum``, ``oltr.centroids_weight_decay``.
  """
  o, r = config.optim, config.oltr
  head_lr = o.lr if o.head_lr is None else o.head_lr
  return {
    "backbone": (o.lr, o.momentum, o.weight_decay),
    "head": (head_lr, o.momentum, o.weight_decay),
    "centroids": (r.centroids_lr, r.centroids_momentum, r.centroids_weight_decay),
  }


def make_optimizer(
  config: ml_collections.ConfigDict, schedule_fn, tree, freeze: tuple[str, ...] = ()
) -> optax.GradientTransformation:
  """SGD groups over ``tree`` = ``{"params": ..., ["centroids": ...]}``: the one optimizer of
  every stage.

  Each group (see `group_labels`, `group_hyperparameters`) is PyTorch's SGD: L2 weight decay
  added to the gradient, then momentum, at ``schedule_fn(base_lr)``; every group follows the
  same schedule shape. Frozen parameters get exactly zero updates (no weight decay either).

  Raises:
    ValueError: the freeze patterns leave no parameter to train.
  """
  labels = group_labels(tree, tuple(freeze))
  used = set(jax.tree.leaves(labels))
  if not used & {"backbone", "head"}:
    raise ValueError(f"freeze patterns {tuple(freeze)} freeze every parameter.")
  transforms = {"frozen": optax.set_to_zero()}
  for group, (lr, momentum, weight_decay) in group_hyperparameters(config).items():
    if group in used:
      transforms[group] = optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.sgd(schedule_fn(lr), momentum=momentum or None),
      )
  return optax.multi_transform(transforms, labels)
