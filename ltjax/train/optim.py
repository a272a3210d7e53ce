"""Learning-rate schedules and optimizers (two registries: ``optim.schedule``,
``optim.name``) and the groups (backbone, head, the stage's own arrays, frozen) of every
stage.

The references train with PyTorch's SGD (``sgd``, every recipe here); ``adamw`` is the
optimizer vision transformers and CLIP are commonly fine-tuned with. Each optimizer and
schedule is a registered dataclass whose fields are its options, read from ``config.optim``
by name, and an option of another member set away from its default is refused by name; the
groups' learning rate, momentum (AdamW: beta1) and weight decay come from the group.

A run's ``Optimization`` holds both with the rest of ``config.optim`` and the run's length,
built once (``from_config``): the rate per step, the groups' optimizer and the check that a
run trains at all are its methods.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from typing import ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ltjax.config import components

log = logging.getLogger(__name__)

#: When the learning rate changes: "step" (every train step, ltjax's default), or once per
#: epoch as the reference PyTorch code calls ``scheduler.step()``: "epoch_start" (before the
#: epoch's batches: classifier-balancing's ``run_networks.py``) or "epoch_end" (after them:
#: OLTR's ``run_networks.py``).
LR_UPDATES = ("step", "epoch_start", "epoch_end")


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """An optimizer family: ``group`` builds the transformation of one group."""

  name: ClassVar[str]

  def group(self, schedule, momentum: float, weight_decay: float) -> optax.GradientTransformation:
    """The update of one group at learning rate ``schedule(step)``."""
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The shape of a learning-rate schedule from base rate ``lr``: per step (``per_step``) or
  as a PyTorch scheduler stepped once per epoch (``at_epoch``; ``Optimization.lr_schedule``
  picks)."""

  name: ClassVar[str]
  #: Its epochs count from the run's start (a decay at epoch 160 is at epoch 160 of the
  #: run): a warm-up delays the per-step schedule instead of compressing it.
  counts_from_start: ClassVar[bool] = False

  def per_step(self, lr: float, total_steps: int, steps_per_epoch: float) -> optax.Schedule:
    """The rate of every step of a run of ``total_steps``."""
    raise NotImplementedError

  def at_epoch(self, lr: float, x: jax.Array, num_epochs: int) -> jax.Array:
    """The rate after ``x`` (float32) scheduler steps of a run of ``num_epochs``."""
    raise NotImplementedError


#: name -> the registered class (``optim.name``).
OPTIMIZERS: components.Registry = components.Registry("optimizer", "optim.name")
#: name -> the registered class (``optim.schedule``).
SCHEDULES: components.Registry = components.Registry("schedule", "optim.schedule")


def register(cls):
  """Adds an optimizer or a schedule to its registry under ``cls.name`` (a decorator)."""
  return (SCHEDULES if issubclass(cls, Schedule) else OPTIMIZERS).register(cls)


@register
@dataclasses.dataclass(frozen=True)
class SGD(Optimizer):
  """PyTorch's SGD: L2 weight decay added to the gradient, then (Nesterov) momentum.

  Attributes:
    nesterov: Nesterov momentum instead of PyTorch's heavy ball.
  """

  name = "sgd"
  nesterov: bool = False

  def group(self, schedule, momentum, weight_decay):
    return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.sgd(schedule, momentum=momentum or None, nesterov=bool(self.nesterov)),
    )


@register
@dataclasses.dataclass(frozen=True)
class AdamW(Optimizer):
  """Adam with decoupled weight decay (Loshchilov & Hutter, ICLR 2019), as PyTorch's AdamW:
  the group's momentum is beta1, its weight decay multiplies the learning rate.

  Attributes:
    b2: decay of the second-moment estimate (beta2; beta1 is ``optim.momentum``).
    eps: added to the second moment's square root.
  """

  name = "adamw"
  b2: float = 0.999
  eps: float = 1e-8

  def group(self, schedule, momentum, weight_decay):
    return optax.adamw(schedule, b1=momentum, b2=self.b2, eps=self.eps, weight_decay=weight_decay)


@register
@dataclasses.dataclass(frozen=True)
class Cosine(Schedule):
  """Cosine decay to 0 over the run (PyTorch's CosineAnnealingLR, eta_min 0)."""

  name = "cosine"

  def per_step(self, lr, total_steps, steps_per_epoch):
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))

  def at_epoch(self, lr, x, num_epochs):
    x = jnp.minimum(x, num_epochs)
    return lr * (1.0 + jnp.cos(jnp.pi * x / num_epochs)) / 2.0


@register
@dataclasses.dataclass(frozen=True)
class Step(Schedule):
  """Step decay (PyTorch's StepLR): the rate times ``step_gamma`` every
  ``step_every_epochs``.

  Attributes:
    step_every_epochs: the rate is multiplied by step_gamma every this many epochs.
    step_gamma: the factor of each decay.
  """

  name = "step"
  counts_from_start = True
  step_every_epochs: float = 10
  step_gamma: float = 0.1

  def per_step(self, lr, total_steps, steps_per_epoch):
    every = max(int(round(self.step_every_epochs * steps_per_epoch)), 1)
    bounds = {every * i: self.step_gamma for i in range(1, total_steps // every + 1)}
    return optax.piecewise_constant_schedule(lr, bounds)

  def at_epoch(self, lr, x, num_epochs):
    return lr * self.step_gamma ** jnp.floor(x / self.step_every_epochs)


@register
@dataclasses.dataclass(frozen=True)
class MultiStep(Schedule):
  """Decay at given epochs (PyTorch's MultiStepLR; the CIFAR-LT recipes').

  Attributes:
    milestones: the epochs at which the rate is multiplied by step_gamma, increasing (e.g.
      (160, 180)).
    step_gamma: the factor of each decay.
  """

  name = "multistep"
  counts_from_start = True
  milestones: tuple = ()
  step_gamma: float = 0.1

  def __post_init__(self):
    milestones = tuple(self.milestones)
    object.__setattr__(self, "milestones", milestones)
    if not milestones or any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
      raise ValueError(
        "optim.schedule='multistep' needs increasing --config.optim.milestones (epochs), "
        f"got {milestones!r}."
      )
    if any(m <= 0 for m in milestones):
      raise ValueError(f"--config.optim.milestones must be positive epochs, got {milestones!r}.")

  def per_step(self, lr, total_steps, steps_per_epoch):
    bounds: dict[int, float] = {}
    for m in self.milestones:  # Two milestones in one step: both factors.
      at_step = max(int(round(m * steps_per_epoch)), 1)
      bounds[at_step] = bounds.get(at_step, 1.0) * self.step_gamma
    return optax.piecewise_constant_schedule(lr, bounds)

  def at_epoch(self, lr, x, num_epochs):
    milestones = jnp.asarray(self.milestones, jnp.float32)
    return lr * self.step_gamma ** jnp.sum(x >= milestones).astype(jnp.float32)


@register
@dataclasses.dataclass(frozen=True)
class Constant(Schedule):
  """The base rate throughout (after any warm-up)."""

  name = "constant"

  def per_step(self, lr, total_steps, steps_per_epoch):
    return optax.constant_schedule(lr)

  def at_epoch(self, lr, x, num_epochs):
    return jnp.asarray(lr, jnp.float32)


def _from_block(registry: components.Registry, selector: str, cfg: ml_collections.ConfigDict):
  """The member of ``registry`` that ``cfg[selector]`` names, with its options from ``cfg``
  (``config.optim``).

  Raises:
    ValueError: an unknown name (listing the valid ones), or another member's option set
      away from its default (naming it and its owner).
  """
  cls = registry.lookup(cfg[selector])
  components.refuse_foreign_option(registry, cls.name, cfg)
  return components.build(cls, cfg)


def _per_epoch(schedule: Schedule, lr: float, num_epochs: int, offset: int, warmup_epochs: float):
  """lr(e) of a PyTorch scheduler (torch >= 1.1) stepped ``e + offset`` times by epoch e
  (``Schedule.at_epoch`` of x = e + offset). A warm-up of W epochs runs epoch e < W at
  lr (e + 1) / W (the per-epoch linear warm-up of the CIFAR-LT code, e.g. LDAM-DRW's
  ``adjust_learning_rate``).
  """
  warmup = int(warmup_epochs)

  def at(epoch):
    x = jnp.asarray(epoch + offset, jnp.float32)
    value = schedule.at_epoch(lr, x, num_epochs)
    if warmup:
      e = jnp.asarray(epoch, jnp.float32)
      value = jnp.where(e < warmup, lr * (e + 1.0) / warmup, value)
    return value

  return at


@dataclasses.dataclass(frozen=True)
class Optimization:
  """The run's optimization, built once from ``config.optim`` and the run's length
  (``from_config``): its optimizer and schedule (the registries' members, with their
  options), the groups' rates and how the rate moves. What the run builds of it (the rate
  per step, the optimizer's groups, the run's length) reads it, not the config.

  Attributes:
    lr: Learning rate of the backbone (and neck: the references' feat_model).
    head_lr: Learning rate of the classifier head; unset (None) = optim.lr.
    momentum: SGD momentum of the backbone and head ('adamw': its beta1).
    weight_decay: SGD weight decay of the backbone and head (PyTorch's: L2 added to the
      gradient).
    lr_update: When the rate changes: every 'step', or once per epoch as the references'
      scheduler.step() (before the epoch's batches: 'epoch_start', classifier-balancing;
      after: 'epoch_end', OLTR).
    warmup_epochs: Epochs of linear warm-up of the learning rate; 0 = none.
    freeze: Regexes over parameter paths like 'backbone/stage1_block0/conv1/kernel' that
      never update.
  """

  optimizer: Optimizer
  schedule: Schedule
  num_epochs: int  # config.num_epochs
  batch_size: int  # config.batch_size (global)
  lr: float = 0.2
  head_lr: float | None = None
  momentum: float = 0.9
  weight_decay: float = 5e-4
  lr_update: str = "step"
  warmup_epochs: float = 0.0
  freeze: tuple[str, ...] = ()

  def __post_init__(self):
    object.__setattr__(self, "freeze", tuple(self.freeze))
    if self.lr_update not in LR_UPDATES:
      raise ValueError(
        f"unknown --config.optim.lr_update {self.lr_update!r}; valid: {', '.join(LR_UPDATES)}."
      )
    warmup = self.warmup_epochs
    if self.lr_update != "step" and warmup and warmup != int(warmup):
      raise ValueError(
        f"optim.warmup_epochs={warmup} with a per-epoch lr_update must be a whole number of epochs."
      )

  def run_length(self, num_train: int) -> tuple[float, int]:
    """(steps per epoch, total steps) on ``num_train`` training images.

    An epoch is ``num_train`` samples for every sampler; a step is ``batch_size`` of them.
    """
    steps_per_epoch = num_train / self.batch_size
    return steps_per_epoch, max(int(math.ceil(self.num_epochs * steps_per_epoch)), 1)

  def lr_schedule(self, num_train: int, lr: float | None = None) -> optax.Schedule:
    """The learning rate per step: cosine to 0, step decay (every ``step_every_epochs``, or
    at the ``milestones`` epochs: "multistep"), or constant (``schedule``).

    ``lr_update = "step"`` changes it every step (with an optional linear warm-up of
    ``warmup_epochs``). ``"epoch_start"`` / ``"epoch_end"`` hold it for each epoch, with
    the value the reference code's per-epoch ``scheduler.step()`` gives that epoch (PyTorch
    >= 1.1): before the batches (classifier-balancing: a cosine's epoch e runs at
    lr (1 + cos(pi (e + 1) / T)) / 2, so the last epoch at 0) or after them (OLTR: a
    StepLR's epoch e runs at lr gamma^floor(e / step)). The epoch of a step is that of its
    first sample.

    Args:
      num_train: training images (an epoch).
      lr: the base rate (default ``lr``; the optimizer groups pass theirs).
    """
    lr = self.lr if lr is None else lr
    steps_per_epoch, total_steps = self.run_length(num_train)
    if self.lr_update != "step":
      offset = 1 if self.lr_update == "epoch_start" else 0
      at = _per_epoch(self.schedule, lr, self.num_epochs, offset, self.warmup_epochs)
      batch, n = self.batch_size, int(num_train)
      return lambda step: at((jnp.asarray(step, jnp.int32) * batch) // n)
    main = self.schedule.per_step(lr, total_steps, steps_per_epoch)
    warmup = int(round(self.warmup_epochs * steps_per_epoch))
    if warmup <= 0:
      return main
    if self.schedule.counts_from_start:  # Its boundaries are epochs of the whole run.
      absolute = main
      main = lambda count: absolute(count + warmup)  # noqa: E731
    ramp = optax.linear_schedule(0.0, lr, warmup)
    return optax.join_schedules([ramp, main], [warmup])

  def zero_lr_epochs(self, num_train: int) -> tuple[list[int], int]:
    """(the epochs, 0-based, whose every step the schedule runs at learning rate 0, the
    number of epochs the run's steps start in) (with the larger of ``lr`` and ``head_lr``):
    the last epoch of a cosine stepped at each epoch's start, as the references' ``coslr``;
    every epoch of such a run with ``num_epochs=1``."""
    lr = max(float(self.lr), float(self.head_lr if self.head_lr is not None else 0.0))
    _, total = self.run_length(num_train)
    steps = np.arange(total)
    # One program (op by op, the schedule's arithmetic compiled a dozen: ~0.7 s on a CPU).
    lrs = np.asarray(jax.jit(jax.vmap(self.lr_schedule(num_train, lr)))(jnp.asarray(steps)))
    epochs = (steps * self.batch_size) // int(num_train)  # A step's epoch: its first sample's.
    unique = np.unique(epochs)
    return [int(e) for e in unique if np.all(lrs[epochs == e] == 0)], len(unique)

  def check_trains(self, num_train: int) -> None:
    """Refuses a run that would train nothing (learning rate 0 on every step), and says
    which epochs train at 0 when some do (the last epoch of the references' cosine, stepped
    at each epoch's start, does: by design).

    Raises:
      ValueError: every epoch trains at learning rate 0, naming the fix.
    """
    zero, epochs = self.zero_lr_epochs(num_train)
    if not zero:
      return
    how = f"optim.schedule={self.schedule.name!r}, optim.lr_update={self.lr_update!r}"
    if len(zero) >= epochs:
      rates = [self.lr] + ([] if self.head_lr is None else [self.head_lr])
      if max(rates) == 0:  # Only the advice that applies: here no schedule would help.
        head = "" if self.head_lr is None else f", optim.head_lr={self.head_lr}"
        fix = f"optim.lr={self.lr}{head}: set --config.optim.lr to a positive rate."
      elif self.lr_update != "step":
        fix = (
          "A per-epoch schedule set before each epoch gives its last epoch lr 0; for a short "
          "run use --config.num_epochs=2 or more, or --config.optim.lr_update=step."
        )
      else:  # Not reachable with the checked factors (step_gamma > 0): said, not assumed.
        fix = "Check --config.optim.schedule and its factors (optim.step_gamma, milestones)."
      raise ValueError(
        f"the learning rate is 0 on every step of this run ({how}, "
        f"num_epochs={self.num_epochs}, lr {self.lr}): it would train nothing. {fix}"
      )
    shown = ", ".join(str(e + 1) for e in zero[:5]) + (", ..." if len(zero) > 5 else "")
    log.warning(
      "%d of the run's %d epochs train at learning rate 0 (epoch %s; %s)%s.",
      len(zero),
      epochs,
      shown,
      how,
      ": the references' cosine, stepped before each epoch, ends so"
      if self.lr_update == "epoch_start" and zero == [epochs - 1]
      else "",
    )

  def group_hyperparameters(
    self, extra_groups: dict | None = None
  ) -> dict[str, tuple[float, float, float]]:
    """(base learning rate, momentum, weight decay) of each optimizer group.

    backbone: ``lr``; head: ``head_lr`` (unset: ``lr``); both with ``momentum`` and
    ``weight_decay``. A stage's own arrays: what the stage says (``extra_groups``,
    ``Stage.extra_groups``; OLTR's centroids: ``oltr.centroids_lr``,
    ``oltr.centroids_momentum``, ``oltr.centroids_weight_decay``).
    """
    head_lr = self.lr if self.head_lr is None else self.head_lr
    return {
      "backbone": (self.lr, self.momentum, self.weight_decay),
      "head": (head_lr, self.momentum, self.weight_decay),
      **(extra_groups or {}),
    }

  def transformation(
    self,
    schedule_fn,
    tree,
    freeze: tuple[str, ...] = (),
    extra_groups: dict | None = None,
  ) -> optax.GradientTransformation:
    """The optimizer's groups over ``tree`` = ``{"params": ..., <the stage's arrays>}``: the
    one optimizer of every stage.

    Each group (see `group_labels`, `group_hyperparameters`) is ``optimizer``'s update (the
    default, PyTorch's SGD: L2 weight decay added to the gradient, then momentum) at
    ``schedule_fn(base_lr)``; every group follows the same schedule shape. Frozen parameters
    get exactly zero updates (no weight decay either).

    Raises:
      ValueError: the freeze patterns leave no parameter to train, or a stage's array has
        no group in ``extra_groups``.
    """
    labels = group_labels(tree, tuple(freeze))
    used = set(jax.tree.leaves(labels))
    if not used & {"backbone", "head"}:
      raise ValueError(f"freeze patterns {tuple(freeze)} freeze every parameter.")
    groups = self.group_hyperparameters(extra_groups)
    unknown = sorted(used - set(groups) - {"frozen"})
    if unknown:
      raise ValueError(
        f"the train state holds {unknown} but the stage gives no optimizer group for them "
        "(Stage.extra_groups)."
      )
    transforms = {"frozen": optax.set_to_zero()}
    for group, (lr, momentum, weight_decay) in groups.items():
      if group in used:
        transforms[group] = self.optimizer.group(schedule_fn(lr), momentum, weight_decay)
    return optax.multi_transform(transforms, labels)


def from_config(config: ml_collections.ConfigDict) -> Optimization:
  """The run's ``Optimization``: ``config.optim`` and the run's length.

  Raises:
    ValueError: an unknown optimizer, schedule or lr_update (listing the valid ones), another
      optimizer's or schedule's option set away from its default (naming it and its owner),
      or a warm-up they cannot have.
  """
  o = config.optim
  return Optimization(
    optimizer=_from_block(OPTIMIZERS, "name", o),
    schedule=_from_block(SCHEDULES, "schedule", o),
    num_epochs=config.num_epochs,
    batch_size=config.batch_size,
    lr=o.lr,
    head_lr=o.head_lr,
    momentum=o.momentum,
    weight_decay=o.weight_decay,
    lr_update=o.lr_update,
    warmup_epochs=o.warmup_epochs,
    freeze=tuple(o.freeze),
  )


def param_path(path) -> str:
  """'backbone/stage1_block0/conv1/kernel' for a jax tree path."""
  parts = (getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)
  return "/".join(str(p) for p in parts)


def group_labels(tree, freeze: tuple[str, ...] = ()):
  """The optimizer group of every leaf of ``{"params": ..., <the stage's arrays>}``
  (``ltjax.train.steps.trainable``).

  A stage's array is the group of its name (OLTR: ``"centroids"``); ``"frozen"`` for
  parameters whose path (without the ``params/`` prefix, e.g. ``backbone/conv1/kernel``)
  matches one of the ``freeze`` regexes; ``"head"`` for the classifier (``head/...``);
  ``"backbone"`` for everything else (the backbone and the neck: the reference's
  ``feat_model``).
  """
  compiled = [re.compile(p) for p in freeze]

  def label(path, _):
    p = param_path(path)
    top, _, rest = p.partition("/")
    if top != "params":
      return top
    if any(c.search(rest) for c in compiled):
      return "frozen"
    return "head" if rest.startswith("head/") else "backbone"

  return jax.tree_util.tree_map_with_path(label, tree)


def frozen_mask(freeze: tuple[str, ...]):
  """``tree -> `` a tree of bools: True for the leaves ``freeze`` keeps frozen
  (``group_labels``' ``"frozen"``), for the train step's gradient."""
  return lambda tree: jax.tree.map(lambda label: label == "frozen", group_labels(tree, freeze))


def parameter_counts(tree, freeze: tuple[str, ...]) -> dict[str, int]:
  """``{"trained": ..., "total": ...}``: the number of parameters (array elements) of
  ``tree`` (``{"params": ..., <the stage's arrays>}``) the optimizer updates, and of all."""
  labels = jax.tree.leaves(group_labels(tree, freeze))
  sizes = [int(np.prod(x.shape)) for x in jax.tree.leaves(tree)]
  trained = sum(n for n, label in zip(sizes, labels, strict=True) if label != "frozen")
  return {"trained": trained, "total": sum(sizes)}
