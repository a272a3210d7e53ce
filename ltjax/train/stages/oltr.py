"""OLTR stage 2 (Liu et al., CVPR 2019): the meta-embedding head on the stage-1 backbone, and
the class centroids it keeps in the train state (``TrainState.extra``), which no other part of
ltjax names. OLTR stage 1 is joint training with ``oltr.fc_add`` (``decoupling.Joint``)."""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ltjax import losses, sharding
from ltjax.config import components
from ltjax.config.schema import OLTR_LOSS_WEIGHT, OLTR_MARGIN, OLTR_REPEL_WEIGHT
from ltjax.evaluate import runner
from ltjax.train.stages.base import Stage

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class OLTROptions:
  """OLTR's options, the ``config.oltr`` block (defaults as ``ltjax.config.schema``'s, the
  reference's): read by stage 2 (``OLTR``) whole, and by OLTR stage 1's joint run for its
  ``use_fc`` layer (``fc_add``).

  Attributes:
    use_attention: OLTR stage 2: modulated attention after the backbone's last stage.
    fc_add: OLTR: > 0 = dense to this width + ReLU after pooling (the reference's use_fc: 512);
      stage 1 (stage joint) may have it, so that stage 2 loads it.
    centroids_lr: OLTR stage 2: learning rate of the centroids' own SGD group.
    centroids_momentum: OLTR stage 2: momentum of the centroids' SGD group.
    centroids_weight_decay: OLTR stage 2: weight decay of the centroids' SGD group.
    loss_weight: OLTR stage 2: weight of the discriminative centroids loss on top of the
      classification loss.
    margin: OLTR stage 2: repel margin of the centroids loss.
    repel_weight: OLTR stage 2: weight of the repel term inside the centroids loss.
  """

  use_attention: bool = True
  fc_add: int = 0
  centroids_lr: float = 0.01
  centroids_momentum: float = 0.9
  centroids_weight_decay: float = 5e-4
  loss_weight: float = OLTR_LOSS_WEIGHT
  margin: float = OLTR_MARGIN
  repel_weight: float = OLTR_REPEL_WEIGHT

  @classmethod
  def of(cls, config: ml_collections.ConfigDict) -> OLTROptions:
    """The options ``config.oltr`` sets (the defaults for a config without the block)."""
    return components.build(cls, config.get("oltr") or {})


@dataclasses.dataclass(frozen=True)
class OLTR(Stage):
  """OLTR stage 2 (Liu et al. Sec. 3.1-3.3): modulated attention and the meta-embedding head
  on the stage-1 backbone, the centroids in the state, cross-entropy plus the discriminative
  centroids loss. The hallucinator starts from the stage-1 classifier; attention, selector
  and cosine classifier start fresh.

  Attributes:
    oltr: its options, the ``config.oltr`` block (``OLTROptions``).
  """

  name = "oltr"
  block = "oltr"  # OLTROptions.
  copies = (("backbone", "backbone"), ("head/fc", "head/hallucinator"))
  # The centroids loss pulls each feature to its label's centroid: a mixed image has two.
  mixes_batches = False

  oltr: OLTROptions = OLTROptions()

  @classmethod
  def of(cls, config: ml_collections.ConfigDict) -> OLTR:
    return dataclasses.replace(super().of(config), oltr=OLTROptions.of(config))

  def check(self, config: ml_collections.ConfigDict, backbone) -> None:
    if config.model.head != "meta_embedding":
      raise ValueError(f"stage oltr needs model.head='meta_embedding', got {config.model.head!r}.")
    super().check(config, backbone)

  def neck(self) -> dict | None:
    return {"use_attention": self.oltr.use_attention, "fc_add": self.oltr.fc_add}

  def init_extra(self, num_classes, feature_dim):
    """The class centroids (K, D), D the width of the features the head receives: zeros
    until ``start`` sets them to the class means."""
    return {"centroids": jnp.zeros((num_classes, feature_dim()), jnp.float32)}

  def extra_groups(self):
    """The centroids' own SGD group (the reference's ``optim_params`` of its centroids)."""
    r = self.oltr
    return {"centroids": (r.centroids_lr, r.centroids_momentum, r.centroids_weight_decay)}

  def model_inputs(self, extra):
    """The meta-embedding head reads the centroids (its visual memory)."""
    return {"centroids": extra["centroids"]}

  def make_loss(self, classify, class_counts, steps_per_epoch):
    """The classification loss (``config.loss``; the reference's is cross-entropy) +
    ``oltr.loss_weight`` x the discriminative centroids loss, whose attract term gives the
    centroids the reference centre-loss update (see ``ltjax.losses.disc_centroids_loss``),
    which ``loss_weight`` does not scale."""
    cross_entropy = super().make_loss(classify, class_counts, steps_per_epoch)
    r = self.oltr

    def loss_fn(logits, aux, labels, extra, step):
      ce, _ = cross_entropy(logits, aux, labels, extra, step)
      centroid_loss = losses.disc_centroids_loss(
        aux["features"], labels, extra["centroids"], margin=r.margin, repel_weight=r.repel_weight
      )
      return ce + r.loss_weight * centroid_loss, {"ce": ce, "centroid_loss": centroid_loss}

    return loss_fn

  def subtrees_to_load(self, config, earlier):
    """Stage 1's backbone and classifier, and its ``use_fc`` layer (``neck/fc_add``) when
    both stages have one. With ``oltr.fc_add`` but a stage 1 without the layer (the current
    reference's ImageNet-LT stage 1), it starts fresh, as the reference's stage 2 does."""
    earlier_fc = earlier.get("neck", {}).get("fc_add")
    fc_add = self.oltr.fc_add
    if not fc_add:
      if earlier_fc is not None:
        width = np.shape(earlier_fc["kernel"])[-1]
        raise ValueError(
          f"init_from={config.init_from} has a use_fc layer (fc_add, {width} units) that "
          f"oltr.fc_add=0 would drop: set --config.oltr.fc_add={width}."
        )
      return self.copies
    if earlier_fc is not None and np.shape(earlier_fc["kernel"])[-1] != fc_add:
      width = np.shape(earlier_fc["kernel"])[-1]
      raise ValueError(
        f"init_from={config.init_from} has a use_fc layer (fc_add) of {width} units, this "
        f"stage oltr.fc_add={fc_add}: set --config.oltr.fc_add={width} to load it."
      )
    classifier = earlier.get("head", {}).get("fc", {}).get("kernel")
    if earlier_fc is None and classifier is not None:
      # The hallucinator starts as stage 1's classifier, so it takes features as wide as that
      # classifier did; a fresh use_fc layer must output that many.
      width = np.shape(classifier)[0]
      if width != fc_add:
        raise ValueError(
          f"init_from={config.init_from}'s classifier (head/fc, which the hallucinator starts "
          f"from) takes {width}-wide features (its backbone's, no use_fc layer), but this "
          f"stage's neck outputs oltr.fc_add={fc_add} units: set "
          f"--config.oltr.fc_add=0 (no use_fc layer, as in that run) or "
          f"--config.oltr.fc_add={width} (a fresh one of that width)."
        )
    if earlier_fc is None:
      log.info(
        "init_from=%s has no fc_add layer: oltr.fc_add=%d starts fresh (as the reference "
        "stage 2 over a stage 1 without use_fc)",
        config.init_from,
        fc_add,
      )
      return self.copies
    return (*self.copies, ("neck/fc_add", "neck/fc_add"))

  def start(self, exp, state):
    """Loads stage 1, then sets the centroids to the class means of the stage-2 model's
    features over the un-sampled training set."""
    return init_centroids(exp, super().start(exp, state))


def init_centroids(exp, state):
  """OLTR: centroids = class means, over the un-sampled training set, of the features of the
  stage-2 model as it is now (stage-1 weights loaded, new layers fresh)."""
  means, n = runner.training_class_means(exp, state)
  centroids = jax.device_put(means, sharding.replicated(exp.mesh))
  log.info("centroids initialised from %d training features", n)
  return state.replace(extra={**state.extra, "centroids": centroids})
