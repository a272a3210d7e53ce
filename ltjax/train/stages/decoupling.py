"""Decoupling's stages (Kang et al., ICLR 2020): joint training, then classifier re-balancing
on the frozen stage-1 backbone (cRT, LWS). NCM and tau-normalisation train nothing: they are
post-hoc methods (``ltjax.evaluate.posthoc_methods``)."""

from __future__ import annotations

import dataclasses

import ml_collections

from ltjax import models
from ltjax.train.stages.base import Stage
from ltjax.train.stages.oltr import OLTROptions


@dataclasses.dataclass(frozen=True)
class Joint(Stage):
  """Joint training (representation learning; Kang et al. Sec. 3, OLTR stage 1): backbone and
  linear classifier trained together from a fresh start (``model.pretrained`` may start the
  backbone from ImageNet weights).

  Attributes:
    fc_add: OLTR stage 1's ``use_fc`` layer (``oltr.fc_add``): > 0 = its width, 0 = none.
  """

  name = "joint"
  reads_when_set = ("oltr.fc_add",)  # OLTR stage 1's use_fc layer (``neck``).

  fc_add: int = 0

  @classmethod
  def of(cls, config: ml_collections.ConfigDict) -> Joint:
    return dataclasses.replace(super().of(config), fc_add=OLTROptions.of(config).fc_add)

  def neck(self) -> dict | None:
    """The reference's ``use_fc`` layer when OLTR stage 1 asks for it: stage 2 can then load
    it."""
    return {"use_attention": False, "fc_add": self.fc_add} if self.fc_add else None


class ClassifierRetraining(Stage):
  """cRT (Kang et al. Sec. 4): the stage-1 backbone frozen, a re-initialised linear
  classifier trained (the references' class-aware sampling lives in the configs). The
  backbone comes from a stage-1 run (``init_from``) or, without one, from
  ``model.pretrained``: cRT on a foundation model's features."""

  name = "crt"
  freeze = ("^backbone/",)
  copies = (("backbone", "backbone"),)
  frozen_backbone = True
  pretrained_replaces_init_from = True

  def subtrees_to_load(self, config, earlier):
    """The stage-1 backbone (and classifier: LWS); a stage 1 with a neck (OLTR's attention
    or use_fc layer) is refused: this stage's model has none, so its features would not be
    the ones the run was trained with."""
    neck = sorted(earlier.get("neck", {}))
    if neck:
      raise ValueError(
        f"init_from={config.init_from} is a model with a neck ({', '.join(neck)}: OLTR's "
        f"attention or use_fc layer), which stage {self.name!r} does not build, so its "
        "features would silently change: start cRT / LWS from a joint run without "
        "oltr.fc_add (an OLTR stage 1 has one: train a plain joint run for them)."
      )
    return self.copies


class LearnableWeightScaling(ClassifierRetraining):
  """LWS (Kang et al. Sec. 4): backbone and classifier of stage 1 frozen, one scale per class
  learnt (``model.head=lws``: logits = (Wx + b) * f)."""

  name = "lws"
  freeze = ("^backbone/", "^head/fc/")
  copies = (("backbone", "backbone"), ("head/fc", "head/fc"))
  pretrained_replaces_init_from = False  # Its classifier comes from the stage-1 run.

  def check_loaded_head(self, config, meta):
    earlier = ((meta.get("config") or {}).get("model") or {}).get("head")
    # The stage-1 head's LWS twin (``Head.lws_twin``).
    want = getattr(models.HEADS.get(earlier), "lws_twin", "")
    if want and config.model.head != want:
      raise ValueError(
        f"init_from={config.init_from} has a {earlier} classifier: LWS re-scales it with "
        f"--config.model.head={want} (not {config.model.head!r})."
      )
