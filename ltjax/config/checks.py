"""Validation of a config before any data is read or model is built.

Every numeric field has its range here (``_RANGES``), checked by :func:`validate` with an
error that names the flag, the value and the range; the few choices the components do not
check themselves (normalisation, long-tail profile, model selection) are checked beside
them. Components check their own names and options when they are built (backbones, losses,
samplers, stages).
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np

_INT, _NUM = "an integer", "a number"
LONGTAIL_PROFILES = ("exponential", "none", "cao2019")
EVAL_SELECT = ("final", "best_val")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


#: field -> (kind, lowest, highest, whether the lowest is excluded); None: no bound.
_RANGES = {
  "seed": (_INT, 0, None, False),
  "num_devices": (_INT, 0, None, False),
  "batch_size": (_INT, 1, None, False),
  "num_epochs": (_NUM, 0, None, True),
  "log_every_steps": (_INT, 1, None, False),
  "eval_every_epochs": (_NUM, 0, None, False),
  "checkpoint_every_steps": (_INT, 1, None, False),
  "keep_checkpoints": (_INT, 1, None, False),
  "dataset.image_size": (_INT, 0, None, False),
  "dataset.imbalance_ratio": (_NUM, 1, None, False),
  "dataset.n_max": (_INT, 0, None, False),
  "dataset.val_per_class": (_INT, 0, None, False),
  "dataset.test_per_class": (_INT, 0, None, False),
  "dataset.num_classes": (_INT, 0, None, False),
  "data.pad": (_INT, 0, None, False),
  "data.crop_size": (_INT, 1, None, False),
  "data.jitter": (_NUM, 0, None, False),
  "data.tte_expand": (_INT, 0, None, False),
  "data.decode_min_size": (_INT, 0, None, False),
  "data.num_threads": (_INT, 1, None, False),
  "data.prefetch": (_INT, 1, None, False),
  "data.decode_cache_mb": (_INT, 0, None, False),
  "data.mixup_alpha": (_NUM, 0, None, False),
  "data.cutmix_alpha": (_NUM, 0, None, False),
  "model.width": (_NUM, 0, None, True),
  "optim.lr": (_NUM, 0, None, False),
  "optim.head_lr": (_NUM, 0, None, False),
  "optim.momentum": (_NUM, 0, 1, False),
  "optim.weight_decay": (_NUM, 0, None, False),
  "optim.step_every_epochs": (_NUM, 0, None, True),
  "optim.step_gamma": (_NUM, 0, None, True),
  "optim.warmup_epochs": (_NUM, 0, None, False),
  "optim.b2": (_NUM, 0, 1, False),
  "optim.eps": (_NUM, 0, None, True),
  "oltr.fc_add": (_INT, 0, None, False),
  "oltr.centroids_lr": (_NUM, 0, None, False),
  "oltr.centroids_momentum": (_NUM, 0, 1, False),
  "oltr.centroids_weight_decay": (_NUM, 0, None, False),
  "oltr.loss_weight": (_NUM, 0, None, False),
  "oltr.margin": (_NUM, 0, None, False),
  "oltr.repel_weight": (_NUM, 0, None, False),
  "eval.batch_size": (_INT, 1, None, False),
  "eval.many_threshold": (_NUM, 0, None, False),
  "eval.few_threshold": (_NUM, 0, None, False),
  "eval.open_threshold": (_NUM, 0, 1, False),
  "eval.ece_bins": (_INT, 1, None, False),
  "eval.keep_known": (_NUM, 0, 1, True),
}


def _get(config: ml_collections.ConfigDict, path: str):
  value = config
  for key in path.split("."):
    value = value[key]
  return value


def _check_normalization(d: ml_collections.ConfigDict) -> None:
  """``dataset.mean`` / ``std``: one finite number per channel, std > 0 (a std of 0 divides
  every image by zero)."""
  as_tuple = lambda v: tuple(v) if isinstance(v, list | tuple) else (v,)
  mean, std = as_tuple(d.mean), as_tuple(d.std)
  if len(mean) != len(std) or not mean:
    raise ValueError(
      f"--config.dataset.mean {mean} and --config.dataset.std {std} must give one value per "
      "image channel each."
    )
  for name, values in (("mean", mean), ("std", std)):
    for v in values:
      ok = isinstance(v, int | float | np.number) and math.isfinite(v) and abs(v) <= _FLOAT32_MAX
      if not ok or (name == "std" and v <= 0):
        need = "finite numbers > 0" if name == "std" else "finite numbers"
        raise ValueError(f"--config.dataset.{name} must hold {need}, got {values}.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Range-checks every numeric field, before any data is read or model built.

  Raises:
    ValueError: naming the field (as its command-line flag), the value and the range.
  """
  for path, (kind, low, high, open_low) in _RANGES.items():
    value = _get(config, path)
    if value is None and path == "optim.head_lr":
      continue  # Unset: the head follows optim.lr.
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool)
    is_num = is_int or (isinstance(value, float | np.floating) and math.isfinite(value))
    if is_num and kind is _NUM and abs(float(value)) > _FLOAT32_MAX:
      raise ValueError(
        f"--config.{path}={value!r} is not finite in float32, the dtype of parameters and "
        f"optimizer state (largest: {_FLOAT32_MAX:.3g}): training would write inf."
      )
    ok = is_int if kind is _INT else is_num
    if ok and low is not None:
      ok = value > low if open_low else value >= low
    if ok and high is not None:
      ok = value <= high
    if not ok:
      bound = f"> {low}" if open_low else f">= {low}"
      if high is not None:
        bound = f"in [{low}, {high}]"
      raise ValueError(f"--config.{path} must be {kind} {bound}, got {value!r}.")
  _check_normalization(config.dataset)
  if config.dataset.longtail not in LONGTAIL_PROFILES:
    raise ValueError(
      f"--config.dataset.longtail={config.dataset.longtail!r}; valid: "
      f"{', '.join(LONGTAIL_PROFILES)}."
    )
  if config.eval.select not in EVAL_SELECT:
    raise ValueError(
      f"--config.eval.select={config.eval.select!r}; valid: {', '.join(EVAL_SELECT)}."
    )
  if config.eval.select == "best_val" and not config.eval_every_epochs:
    raise ValueError(
      "--config.eval.select=best_val tests the best validated model, and "
      "--config.eval_every_epochs=0 validates never: set --config.eval_every_epochs=1 (the "
      "references validate every epoch)."
    )
  if config.eval.select == "best_val" and "closed_set" not in config.eval.evaluators:
    raise ValueError(
      "--config.eval.select=best_val keeps the model of the best validation accuracy, which "
      "the closed_set evaluator computes: add it to --config.eval.evaluators."
    )
  if config.eval.few_threshold > config.eval.many_threshold:
    raise ValueError(
      f"--config.eval.few_threshold ({config.eval.few_threshold}) must be <= "
      f"--config.eval.many_threshold ({config.eval.many_threshold})."
    )
