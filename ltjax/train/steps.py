"""Pure, jittable train, eval and feature-extraction steps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ltjax.data import device_augment
from ltjax.train.state import TrainState


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """uint8 NHWC -> float32 ((x / 255) - mean) / std, on device (uint8 crosses the bus)."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def _with_train_images(batch) -> dict:
  """The batch with ``image`` the model's input: the ``imagenet_device`` augmentation
  (``ltjax.data.device_augment.apply``) runs here when the batch carries its inputs."""
  if not device_augment.has_device_inputs(batch):
    return batch
  rest = {k: v for k, v in batch.items() if k not in device_augment.KEYS}
  return rest | {"image": device_augment.apply(batch)}


def make_train_step(
  model: nn.Module,
  tx: optax.GradientTransformation,
  mean: Sequence[float],
  std: Sequence[float],
  *,
  freeze_backbone: bool = False,
  backbone_train: bool = True,
) -> Callable:
  """Softmax cross-entropy training (joint training, and the heads of cRT and LWS).

  Args:
    model: a ``ltjax.models.Classifier``.
    tx: the optimizer (frozen parameters get exactly zero updates from it).
    mean, std: per-channel input normalisation.
    freeze_backbone: cut gradients at the features, so the step computes no backward
      pass through the backbone (cRT, LWS).
    backbone_train: BatchNorm mode of the backbone. cRT/LWS use False (inference mode,
      statistics frozen); True reproduces the reference code, whose BatchNorm
      statistics keep drifting under class-balanced sampling.

  Returns:
    ``train_step(state, batch) -> (state, metrics)``, pure; ``batch`` holds uint8
    ``image`` (B, H, W, C) and int32 ``label`` (B,), or an ``imagenet_device`` batch
    (``ltjax.data.device_augment``), augmented here on the device.
  """

  def loss_fn(params, state: TrainState, batch, rng):
    variables = {"params": params, "batch_stats": state.batch_stats}
    (logits, _), new_vars = model.apply(
      variables,
      normalize(batch["image"], mean, std),
      train=True,
      backbone_train=backbone_train,
      freeze_backbone=freeze_backbone,
      mutable=["batch_stats"],
      rngs={"dropout": rng},
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, (logits, new_vars["batch_stats"])

  def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
    batch = _with_train_images(batch)
    rng = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, batch_stats)), grads = grad_fn(state.params, state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    new_state = state.replace(
      step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    return new_state, {"loss": loss, "accuracy": accuracy}

  return train_step


def make_eval_step(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> Callable:
  """``eval_step(state, batch) -> {"pred", "max_prob"}`` with the model in inference mode."""

  def eval_step(state: TrainState, batch) -> dict:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits, _ = model.apply(
      variables, normalize(batch["image"], mean, std), train=False, centroids=state.centroids
    )
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return {"pred": jnp.argmax(logits, -1).astype(jnp.int32), "max_prob": jnp.max(probs, -1)}

  return eval_step


def make_feature_step(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> Callable:
  """``feature_step(state, batch) -> {"features" (B, D), "logits" (B, K)}``, inference mode.

  One forward serves NCM, tau-normalisation, centroids and plots.
  """

  def feature_step(state: TrainState, batch) -> dict:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits, aux = model.apply(
      variables, normalize(batch["image"], mean, std), train=False, centroids=state.centroids
    )
    return {"features": aux["features"], "logits": logits}

  return feature_step


def make_oltr_train_step(
  model: nn.Module,
  tx: optax.GradientTransformation,
  mean: Sequence[float],
  std: Sequence[float],
  *,
  loss_weight: float,
  margin: float,
  repel_weight: float,
) -> Callable:
  """OLTR stage 2: cross-entropy + ``loss_weight`` x discriminative centroids loss.

  The optimizer ``tx`` acts on ``{"params": ..., "centroids": ...}``. The centroids
  enter the meta-embedding head as constants, so only the centroids loss moves them;
  its attract term gives them the reference centre-loss update (see
  ``ltjax.losses.disc_centroids_loss``), which ``loss_weight`` does not scale.
  """
  from ltjax.losses import disc_centroids_loss  # noqa: PLC0415

  def loss_fn(trainable, state: TrainState, batch, rng):
    variables = {"params": trainable["params"], "batch_stats": state.batch_stats}
    (logits, aux), new_vars = model.apply(
      variables,
      normalize(batch["image"], mean, std),
      train=True,
      centroids=trainable["centroids"],
      mutable=["batch_stats"],
      rngs={"dropout": rng},
    )
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    centroid_loss = disc_centroids_loss(
      aux["features"],
      batch["label"],
      trainable["centroids"],
      margin=margin,
      repel_weight=repel_weight,
    )
    loss = ce + loss_weight * centroid_loss
    return loss, (logits, new_vars["batch_stats"], ce, centroid_loss)

  def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
    batch = _with_train_images(batch)
    rng = jax.random.fold_in(state.rng, state.step)
    trainable = {"params": state.params, "centroids": state.centroids}
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, batch_stats, ce, centroid_loss)), grads = grad_fn(trainable, state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    new_state = state.replace(
      step=state.step + 1,
      params=trainable["params"],
      centroids=trainable["centroids"],
      batch_stats=batch_stats,
      opt_state=opt_state,
    )
    return new_state, {"loss": loss, "accuracy": accuracy, "ce": ce, "centroid_loss": centroid_loss}

  return train_step
