"""The ``Stage`` every recipe shares: a subclass says what its recipe changes."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ltjax import losses, models
from ltjax.models import text_features, torch_weights
from ltjax.train import init_from as init_lib
from ltjax.train.stages import starts

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Stage:
  """What every stage shares; a subclass says what its recipe changes (class attributes and
  the methods it overrides). Defaults: everything trains from a fresh start with the
  backbone's own pooling and the classification loss of ``config.loss``.

  A run's stage is built once from its config (``of``) with the options it reads, its fields:
  what it builds and runs (``neck``, ``apply_kwargs``, ``init_extra``, ``extra_groups``,
  ``make_loss``) reads them, not the config. Its checks and its start (``check``,
  ``check_start``, ``start``) read the config whole: they compare it across components (the
  backbone, ``init_from``, ``model.pretrained``).

  Attributes:
    update_frozen_bn: cRT/LWS (a stage with a frozen backbone): update the frozen backbone's
      BatchNorm statistics under the stage's sampler, as the reference code does (it leaves
      BatchNorm in train mode). False: inference mode, so the backbone is exactly the
      stage-1 one.
  """

  name: ClassVar[str]
  #: Regexes over parameter paths ("backbone/layer1_0/conv1/kernel") that never update, on
  #: top of ``optim.freeze``.
  freeze: ClassVar[tuple[str, ...]] = ()
  #: (path in the earlier run, path in this model): the subtrees a fresh run copies from
  #: ``init_from`` (``subtrees_to_load`` may add or refuse some, given the earlier run).
  copies: ClassVar[tuple[tuple[str, str], ...]] = ()
  #: The backbone is frozen: the step computes no backward pass through it, and runs its
  #: BatchNorm in inference mode unless ``config.update_frozen_bn``.
  frozen_backbone: ClassVar[bool] = False
  #: mixup / CutMix may mix its batches (``data.mixup_alpha``, ``data.cutmix_alpha``).
  mixes_batches: ClassVar[bool] = True
  #: Without ``init_from``, ``model.pretrained`` may give the backbone ``copies`` would
  #: load (cRT on a foundation model's features: nothing else comes from a stage 1).
  pretrained_replaces_init_from: ClassVar[bool] = False
  #: The config block of its own options, which it reads whole (OLTR stage 2: ``oltr``,
  #: ``OLTROptions``); "" = none. ``--help`` lists that block for this stage only.
  block: ClassVar[str] = ""
  #: Fields of another recipe's block it reads only as an opt-in, which ``--help`` lists when
  #: set (joint training: OLTR stage 1's ``use_fc`` layer, ``oltr.fc_add``).
  reads_when_set: ClassVar[tuple[str, ...]] = ()

  update_frozen_bn: bool = False

  @classmethod
  def of(cls, config: ml_collections.ConfigDict) -> Stage:
    """This stage with the options it reads of ``config`` (a subclass with options of its own
    adds them: ``dataclasses.replace(super().of(config), ...)``)."""
    return cls(update_frozen_bn=bool(config.get("update_frozen_bn", False)))

  def copies_of(self, config: ml_collections.ConfigDict) -> tuple[tuple[str, str], ...]:
    """The subtrees this run copies from ``init_from``: ``copies``, or none when
    ``model.pretrained`` gives the backbone instead (``pretrained_replaces_init_from``)."""
    if self.pretrained_replaces_init_from and config.model.pretrained and not config.init_from:
      return ()
    return self.copies

  def keeps_pretrained_backbone(self, config: ml_collections.ConfigDict) -> bool:
    """The backbone is ``model.pretrained``'s as read: frozen, and not from ``init_from``
    (what zero-shot CLIP needs of the features)."""
    frozen = self.frozen_backbone or config.model.get("peft") == "linear"  # Head only.
    return bool(frozen and config.model.pretrained and not self.copies_of(config))

  def check(self, config: ml_collections.ConfigDict, backbone: models.backbones.Backbone) -> None:
    """Raises ValueError for a model config this stage cannot build (before any work);
    ``backbone`` is the run's (``experiment.Components``)."""
    neck = self.neck()
    if neck is not None and not backbone.pools_feature_map:
      raise ValueError(
        f"OLTR's neck (modulated attention, oltr.fc_add) pools the backbone's last feature "
        f"map, which is what a ResNet's features are; {config.model.backbone!r}'s features "
        "are its class token, so OLTR would train on other features than the backbone "
        "gives: OLTR runs on the ResNets (set --config.oltr.fc_add=0 for joint training)."
      )
    if config.model.pretrained and not backbone.pretrained_file:
      raise ValueError(
        f"model.pretrained: backbone {config.model.backbone!r} reads no weight file (the "
        "ResNets and ViTs do): unset --config.model.pretrained."
      )
    if config.model.pretrained:
      _warn_normalization(config, backbone)
    mixing = config.data.mixup_alpha > 0 or config.data.cutmix_alpha > 0
    if mixing and not self.mixes_batches:
      raise ValueError(
        f"stage {self.name!r} cannot train on mixed batches (data.mixup_alpha / "
        "data.cutmix_alpha): set both to 0."
      )
    self._check_head_init(config)
    copies = self.copies_of(config)
    if config.model.pretrained and any(dst.startswith("backbone") for _, dst in copies):
      if self.pretrained_replaces_init_from:
        raise ValueError(
          f"stage {self.name!r} takes its backbone from init_from or from model.pretrained, "
          f"not both: unset --config.init_from or --config.model.pretrained."
        )
      raise ValueError(
        f"model.pretrained starts a backbone from ImageNet weights, but stage {self.name!r} "
        "loads its backbone from init_from: unset --config.model.pretrained."
      )

  def check_start(self, config: ml_collections.ConfigDict) -> None:
    """Raises ValueError if a fresh run could not ``start`` (no ``init_from``, no
    ``model.pretrained`` file or no PyTorch to read it)."""
    if self.copies_of(config):
      init_lib.resolve_init_from(config.init_from)  # A clear message when unset or missing.
    if config.model.text_features:
      text_features.load(config.model.text_features)  # Readable, before any work.
    if config.model.pretrained:
      if not os.path.isfile(config.model.pretrained):
        backbone = models.backbones.get(config.model.backbone)
        raise ValueError(
          f"model.pretrained={config.model.pretrained} does not exist; give the path of "
          f"{backbone.pretrained_file or 'a weight file'} (see the config's docstring or "
          "README's 'Pretrained weights' for where to get it)."
        )
      try:
        torch_weights.import_torch()
      except ImportError as e:
        raise ValueError(f"model.pretrained: {e}") from e

  def neck(self) -> dict | None:
    """``ltjax.models.oltr.OLTRNeck`` arguments, or None for the backbone's own pooling."""
    return None

  def apply_kwargs(self) -> dict[str, Any]:
    """Keyword arguments of the model's training forward (``Classifier.__call__``)."""
    if not self.frozen_backbone:
      return {}
    return {"freeze_backbone": True, "backbone_train": self.update_frozen_bn}

  def init_extra(
    self, num_classes: int, feature_dim: Callable[[], int]
  ) -> dict[str, jax.Array] | None:
    """The stage's own arrays in a fresh train state (``TrainState.extra``), or None.

    Called inside the state's init (traced: return ``jnp`` arrays); ``feature_dim()`` is the
    width of the features the head receives. ``start`` may set their values before the
    first step."""
    del num_classes, feature_dim
    return None

  def extra_groups(self) -> dict[str, tuple[float, float, float]]:
    """``{name: (learning rate, momentum, weight decay)}``: the SGD group of each of the
    stage's arrays (the same schedule shape as the parameters')."""
    return {}

  def model_inputs(self, extra: dict | None) -> dict[str, Any]:
    """Keyword arguments of the model's head taken from the stage's arrays (``extra``)."""
    del extra
    return {}

  def make_loss(self, classify: losses.ClassificationLoss, class_counts, steps_per_epoch: float):
    """The train step's loss: ``loss_fn(logits, aux, labels, extra, step) -> (loss, extra
    metrics)``, here the run's classification loss ``classify`` (``config.loss``, built once:
    ``experiment.Components``) given the training class counts and the step's epoch
    (``ltjax.losses.LossInputs``); ``extra`` is the stage's arrays."""
    counts = jnp.asarray(class_counts, jnp.float32)

    def loss_fn(logits, aux, labels, extra, step):
      del aux, extra
      inputs = losses.LossInputs(counts, step / steps_per_epoch)
      return classify(logits, labels, inputs), {}

    return loss_fn

  def subtrees_to_load(
    self, config: ml_collections.ConfigDict, earlier: dict
  ) -> tuple[tuple[str, str], ...]:
    """The (source, destination) subtrees to copy from the earlier run's parameters."""
    del config, earlier
    return self.copies

  def check_loaded_head(self, config: ml_collections.ConfigDict, meta: dict) -> None:
    """Raises ValueError when this stage's head cannot take the classifier it loads from the
    earlier run (``meta``: its checkpoint metadata)."""
    del config, meta

  def start(self, exp, state):
    """The state a fresh run starts from (not called on resume): the pretrained backbone
    (``model.pretrained``), then the subtrees ``subtrees_to_load`` names, copied from
    ``config.init_from``."""
    if exp.config.model.pretrained:
      state = starts.load_pretrained(exp, state)
    if self.copies_of(exp.config):
      state = starts.load_earlier_stage(exp, state, self)
    if exp.config.model.head_init == "text_features":
      state = starts.init_head_from_text(exp, state)
    elif exp.config.model.head_init == "class_mean":
      state = starts.init_head_from_class_means(exp, state)
    return state

  #: ``model.head_init`` values: the head's own initialisation, CLIP's text features of the
  #: class names, the normalised class means of the training features.
  HEAD_INITS: ClassVar[tuple[str, ...]] = ("", "text_features", "class_mean")

  def _check_head_init(self, config: ml_collections.ConfigDict) -> None:
    init = config.model.head_init
    if not init:
      return
    if init not in self.HEAD_INITS:
      valid = ", ".join(repr(i) for i in self.HEAD_INITS)
      raise ValueError(f"--config.model.head_init={init!r}; valid: {valid}.")
    if init == "text_features" and not config.model.text_features:
      raise ValueError(
        "model.head_init='text_features' needs --config.model.text_features=FILE "
        "('ltjax clip-text' writes it)."
      )
    head = models.HEADS.get(config.model.head)
    if head is None or not head.starts_from_class_vectors:
      startable = [n for n, h in models.HEADS.items() if h.starts_from_class_vectors]
      raise ValueError(
        f"model.head_init={init!r} starts a {'/'.join(startable)} head, "
        f"not model.head={config.model.head!r}."
      )
    if any(dst.startswith("head") for _, dst in self.copies_of(config)):
      raise ValueError(
        f"stage {self.name!r} loads its classifier from init_from, so model.head_init={init!r} "
        "would not start it: unset --config.model.head_init."
      )


def _warn_normalization(config: ml_collections.ConfigDict, backbone: models.Backbone) -> None:
  """A warning when ``config.dataset.mean/std`` are not what the backbone's published
  weights were trained on: features of other inputs than theirs. The config is left as it
  is (a run's results follow its config alone); the warning names the flags to set."""
  expected = backbone.pretrained_normalization
  if expected is None:
    return
  have = (tuple(config.dataset.mean), tuple(config.dataset.std))
  same = all(
    len(a) == len(b) and np.allclose(a, b, rtol=0, atol=1e-6)
    for a, b in zip(have, expected, strict=True)
  )
  if same:
    return
  flags = " ".join(
    f"--config.dataset.{name}={','.join(repr(float(v)) for v in values)}"
    for name, values in zip(("mean", "std"), expected, strict=True)
  )
  log.warning(
    "model.pretrained: backbone %s's published weights were trained on pixels normalised "
    "with mean %s, std %s; this run normalises with dataset.mean=%s, dataset.std=%s. For "
    "the inputs they expect, set %s",
    config.model.backbone,
    expected[0],
    expected[1],
    have[0],
    have[1],
    flags,
  )
