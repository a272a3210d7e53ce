"""The config layer: what a run is told to do, loaded without JAX.

A config is an ``ml_collections.ConfigDict``: :func:`base_config` (``schema``) with a
dataset preset (``presets``) and a training recipe (``recipes``) applied, checked by
:func:`validate` (``checks``), recorded and compared as a run's config (``runs``), and
explained by ``--help`` (``docs``, ``help``). Every public name is re-exported here, so that
``from ltjax import config as config_lib; config_lib.base_config()`` reads as before the
split. This layer imports no JAX, and nothing of ltjax but ``files``.
"""

from ltjax.config.checks import (
  EVAL_SELECT,
  LONGTAIL_PROFILES,
  validate,
)
from ltjax.config.docs import FIELD_DOCS
from ltjax.config.help import help_text, read_fields
from ltjax.config.presets import (
  CIFAR_LT,
  CIFAR_MEAN,
  CIFAR_STD,
  DIGITS_MEAN,
  DIGITS_STD,
  IMAGENET_MEAN,
  IMAGENET_STD,
  INAT_MEAN,
  INAT_STD,
  cifar_lt,
  custom_data,
  imagenet_lt,
  inat2018,
  places_lt,
)
from ltjax.config.recipes import (
  LIFT_BACKBONES,
  LOGIT_ADJUSTMENT_SCHEDULES,
  cifar_lt_joint,
  cifar_lt_ldam_drw,
  cifar_lt_logit_adjusted,
  decoupling_classifier,
  decoupling_joint,
  lift,
  oltr_stage1,
  oltr_stage2,
  reference_protocol,
)
from ltjax.config.runs import (
  DATA_LOCATIONS,
  EVALUATION_FIELDS,
  MAY_CHANGE_ON_RESUME,
  PATH_FIELDS,
  fingerprint,
  from_saved,
  load_file,
  of_run,
  resolve_paths,
  same_data,
)
from ltjax.config.schema import (
  OLTR_FC_ADD,
  OLTR_LOSS_WEIGHT,
  OLTR_MARGIN,
  OLTR_REPEL_WEIGHT,
  base_config,
)

__all__ = [
  "CIFAR_LT",
  "CIFAR_MEAN",
  "CIFAR_STD",
  "DATA_LOCATIONS",
  "DIGITS_MEAN",
  "DIGITS_STD",
  "EVALUATION_FIELDS",
  "EVAL_SELECT",
  "FIELD_DOCS",
  "IMAGENET_MEAN",
  "IMAGENET_STD",
  "INAT_MEAN",
  "INAT_STD",
  "LIFT_BACKBONES",
  "LOGIT_ADJUSTMENT_SCHEDULES",
  "LONGTAIL_PROFILES",
  "MAY_CHANGE_ON_RESUME",
  "OLTR_FC_ADD",
  "OLTR_LOSS_WEIGHT",
  "OLTR_MARGIN",
  "OLTR_REPEL_WEIGHT",
  "PATH_FIELDS",
  "base_config",
  "cifar_lt",
  "cifar_lt_joint",
  "cifar_lt_ldam_drw",
  "cifar_lt_logit_adjusted",
  "custom_data",
  "decoupling_classifier",
  "decoupling_joint",
  "fingerprint",
  "from_saved",
  "help_text",
  "imagenet_lt",
  "inat2018",
  "lift",
  "load_file",
  "of_run",
  "oltr_stage1",
  "oltr_stage2",
  "places_lt",
  "read_fields",
  "reference_protocol",
  "resolve_paths",
  "same_data",
  "validate",
]
