"""Losses: the classification losses a stage trains with (``classification``: the registry
``config.loss`` chooses from: softmax, logit_adjusted, focal, class_balanced, ldam) and
OLTR's discriminative centroids loss (``centroids``)."""

from ltjax.losses.centroids import (
  LOSS_WEIGHT,
  MARGIN,
  REPEL_MAX,
  REPEL_WEIGHT,
  disc_centroids_loss,
)
from ltjax.losses.classification import (
  LOSSES,
  ClassificationLoss,
  LossInputs,
  effective_number_weights,
  from_config,
  get,
  log_prior,
  register,
)

__all__ = [
  "LOSSES",
  "LOSS_WEIGHT",
  "MARGIN",
  "REPEL_MAX",
  "REPEL_WEIGHT",
  "ClassificationLoss",
  "LossInputs",
  "disc_centroids_loss",
  "effective_number_weights",
  "from_config",
  "get",
  "log_prior",
  "register",
]
