"""Pure, jittable steps: the one train step of every stage, evaluation and features."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ltjax.data.pp import device_ops
from ltjax.train.state import TrainState


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """uint8 NHWC -> float32 ((x / 255) - mean) / std, on device (uint8 crosses the bus)."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def _with_train_images(batch) -> dict:
  """The batch with ``image`` the model's input: the ``imagenet_device`` augmentation
  (``ltjax.data.pp.device_ops.resize_flip_jitter``) runs here when the batch carries its inputs."""
  if not device_ops.has_device_inputs(batch):
    return batch
  rest = {k: v for k, v in batch.items() if k not in device_ops.KEYS}
  return rest | {"image": device_ops.resize_flip_jitter(batch)}


def trainable(state: TrainState) -> dict:
  """What the optimizer updates: ``{"params": ...}`` and each of the stage's own arrays
  under its name (``state.extra``: OLTR's ``"centroids"``), one optimizer group each."""
  return {"params": state.params, **(state.extra or {})}


def _extra_of(tree: dict) -> dict | None:
  """The stage's arrays of a ``trainable`` tree (None when it has none)."""
  extra = {k: v for k, v in tree.items() if k != "params"}
  return extra or None


def no_model_inputs(extra) -> dict:
  """``Stage.model_inputs`` of a stage that gives its model nothing of its own state."""
  del extra
  return {}


def all_finite(tree) -> jax.Array:
  """Whether every floating-point leaf of ``tree`` is finite (a scalar bool)."""
  checks = [
    jnp.all(jnp.isfinite(x))
    for x in jax.tree.leaves(tree)
    if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
  ]
  return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


_MIX_STREAM = 0x6D6978  # fold_in tag of the mixing random numbers (dropout keeps its own).


def _frozen_leaves(tree, frozen: Callable | None) -> list[bool]:
  """Per leaf of ``tree`` (in ``jax.tree.leaves`` order), whether it is frozen."""
  if frozen is None:
    return [False] * len(jax.tree.leaves(tree))
  return [bool(f) for f in jax.tree.leaves(frozen(tree))]


def make_train_step(
  model: nn.Module,
  tx: optax.GradientTransformation,
  loss_fn: Callable,
  mean: Sequence[float],
  std: Sequence[float],
  *,
  forward_kwargs: Mapping[str, Any] | None = None,
  model_inputs: Callable = no_model_inputs,
  mix: Callable | None = None,
  frozen: Callable | None = None,
) -> Callable:
  """The train step of every stage: the stage's loss, its gradient, one optimizer update.

  What a stage keeps of its own (``state.extra``) reaches the model through
  ``stage.model_inputs`` and the loss as its ``extra`` argument, and is updated by the
  optimizer like the parameters; this step never asks what it holds.

  The step reads no config: ``ltjax.train.experiment`` hands it what the run's components
  made of theirs.

  Args:
    model: a ``ltjax.models.Classifier``.
    tx: the optimizer over ``trainable(state)`` (frozen parameters get exactly zero
      updates from it; ``ltjax.train.optim.Optimization.transformation``).
    loss_fn: the stage's loss, ``stage.make_loss(...)``: ``(logits, aux, labels,
      extra, step) -> (loss, extra metrics)``, ``extra`` the stage's arrays (or None).
    mean, std: the input normalisation (``dataset.mean``/``std``).
    forward_kwargs: the model's training-forward arguments (``Stage.apply_kwargs``: a
      frozen backbone runs without a backward pass, with BatchNorm in inference mode
      unless ``config.update_frozen_bn``).
    model_inputs: what the head takes of the stage's own state (``Stage.model_inputs``).
    mix: mixup / CutMix (``ltjax.data.pp.mixing.from_config(config.data)``, built once:
      ``experiment.Components``), applied to the normalised batch, per batch from the
      step's random key; None: never mixed.
    frozen: ``trainable(state) -> `` a tree of bools, True where the optimizer never
      updates the leaf (``ltjax.train.optim.frozen_mask``); the gradient is taken with
      respect to the other leaves only, so a parameter-efficient run computes no weight
      gradients of its frozen backbone (a frozen leaf's gradient is zero, and the
      gradient norm that of the trained leaves).

  Returns:
    ``train_step(state, batch) -> (state, metrics)``, pure; ``batch`` holds uint8
    ``image`` (B, H, W, C) and int32 ``label`` (B,), or an ``imagenet_device`` batch
    (``ltjax.data.pp.device_ops``), augmented here on the device. ``metrics``: ``loss``,
    ``accuracy``, ``grad_norm``, ``finite`` (False: the loss, the gradient norm or the
    updated state (parameters, optimizer state, BatchNorm statistics, the stage's arrays) held a nan
    or inf, and the step left the state unchanged but for ``step``) and the stage's extras
    (OLTR: ``ce``, ``centroid_loss``).
  """
  forward_kwargs = dict(forward_kwargs or {})

  def objective(tree, state: TrainState, batch, rng):
    variables = {"params": tree["params"], "batch_stats": state.batch_stats}
    extra = _extra_of(tree)
    images = normalize(batch["image"], mean, std)
    if mix is not None:
      mixed = mix(jax.random.fold_in(rng, _MIX_STREAM), images)
      images = mixed.images
    (logits, aux), new_vars = model.apply(
      variables,
      images,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": rng},
      **forward_kwargs,
      **model_inputs(extra),
    )
    loss, extras = loss_fn(logits, aux, batch["label"], extra, state.step)
    if mix is not None:  # lam L(y) + (1 - lam) L(y[perm]), as both papers define it.
      other, _ = loss_fn(logits, aux, batch["label"][mixed.perm], extra, state.step)
      loss = mixed.lam * loss + (1.0 - mixed.lam) * other
    return loss, (logits, new_vars["batch_stats"], extras)

  def gradient(tree, is_frozen: list[bool], state: TrainState, batch, rng):
    """``objective``'s value and its gradient with respect to the leaves that train (a
    frozen leaf's is zero)."""
    if not any(is_frozen):
      return jax.value_and_grad(objective, has_aux=True)(tree, state, batch, rng)
    leaves, treedef = jax.tree.flatten(tree)
    trained = [i for i, f in enumerate(is_frozen) if not f]

    def of_trained(values, state, batch, rng):
      full = list(leaves)
      for i, value in zip(trained, values, strict=True):
        full[i] = value
      return objective(treedef.unflatten(full), state, batch, rng)

    value, grads = jax.value_and_grad(of_trained, has_aux=True)(
      [leaves[i] for i in trained], state, batch, rng
    )
    full = [jnp.zeros_like(x) for x in leaves]
    for i, g in zip(trained, grads, strict=True):
      full[i] = g
    return value, treedef.unflatten(full)

  def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
    batch = _with_train_images(batch)
    rng = jax.random.fold_in(state.rng, state.step)
    old = trainable(state)
    is_frozen = _frozen_leaves(old, frozen)  # Known when traced: no cost per step.
    (loss, (logits, batch_stats, extras)), grads = gradient(old, is_frozen, state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, old)
    tree = optax.apply_updates(old, updates)
    changed = jax.tree.leaves(tree)  # What this step can have made non-finite.
    if any(is_frozen):  # Frozen leaves stay the very arrays they were (their update is 0).
      kept = jax.tree.leaves(old)
      changed = [new for new, f in zip(changed, is_frozen, strict=True) if not f]
      tree = jax.tree.unflatten(
        jax.tree.structure(old),
        [k if f else n for k, n, f in zip(kept, jax.tree.leaves(tree), is_frozen, strict=True)],
      )
      grads = [g for g, f in zip(jax.tree.leaves(grads), is_frozen, strict=True) if not f]
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    new_state = state.replace(
      params=tree["params"],
      extra=_extra_of(tree),
      batch_stats=batch_stats,
      opt_state=opt_state,
    )
    # A non-finite loss or gradient, or an update that would make anything the state saves
    # non-finite (a rate that overflows float32), leaves the state as it was (no host sync
    # here: the loop reads ``finite`` at its logging and checkpoint steps, and stops). A
    # frozen leaf is not read again: it is what the step started from.
    grad_norm = optax.tree.norm(grads)
    finite = (
      jnp.isfinite(loss)
      & jnp.isfinite(grad_norm)
      & all_finite([changed, new_state.batch_stats, new_state.opt_state])
    )
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    new_state = new_state.replace(step=state.step + 1)
    metrics = {"loss": loss, "accuracy": accuracy, "grad_norm": grad_norm, "finite": finite}
    return new_state, metrics | extras

  return train_step


def _test_logits(model, state: TrainState, batch, mean, std, logit_scale: float, model_inputs):
  """The model's inference-mode ``(logits, aux)``, the logits scaled as the loss scales them
  (``ltjax.losses.ClassificationLoss.logit_scale``: LDAM's s on its cosine head)."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  images = normalize(batch["image"], mean, std)
  logits, aux = model.apply(variables, images, train=False, **model_inputs(state.extra))
  if logit_scale != 1.0:
    logits = logits.astype(jnp.float32) * jnp.float32(logit_scale)
  return logits, aux


def _flat_views(batch) -> tuple[dict, int | None]:
  """An evaluation batch whose images hold several views of each example, ``(B, V, H, W,
  C)`` (the ``five_crop`` eval transform: ``ltjax.data.pp.augment.FiveCrop.views``), as a
  batch of its B * V images, example-major, and V; any other batch as it is, and None."""
  images = batch["image"]
  if images.ndim != 5:
    return batch, None
  return batch | {"image": images.reshape(-1, *images.shape[2:])}, images.shape[1]


def _mean_over_views(x: jax.Array, views: int | None) -> jax.Array:
  """``(B * V, ...)`` -> ``(B, ...)``: the mean over each example's V views (``views``
  None: ``x`` as it is). LIFT's ``output.view(bsz, ncrops, -1).mean(dim=1)``."""
  if views is None:
    return x
  return jnp.mean(x.reshape(-1, views, *x.shape[1:]), axis=1)


def make_eval_step(
  model: nn.Module,
  mean: Sequence[float],
  std: Sequence[float],
  outputs: Mapping[str, Callable],
  logit_scale: float = 1.0,
  model_inputs: Callable = no_model_inputs,
) -> Callable:
  """``eval_step(state, batch) -> {name: (B,) array}`` with the model in inference mode:
  each of ``outputs`` (``name -> fn(logits float32, labels)``, the chosen evaluators'
  ``ltjax.evaluate.evaluators.device_functions``: the argmax, max softmax probability, ...)
  on its logits as the loss sees them (times ``logit_scale``) and the batch's labels (-1:
  open set). ``model_inputs``: the stage's (``Stage.model_inputs``), what its head takes of
  ``state.extra``.

  ``batch["image"]``: uint8 (B, H, W, C), or (B, V, H, W, C) with V views of each example
  (the ``five_crop`` eval transform's crops): the model then runs on all B * V images and
  the outputs are computed on each example's logits averaged over its views (float32;
  LIFT's test-time ensemble, which averages logits, not probabilities). Which of the two
  is a property of the batch's shape, fixed when the step is traced: a (B, H, W, C) batch
  gives the program it always gave."""

  def eval_step(state: TrainState, batch) -> dict:
    images, views = _flat_views(batch)
    logits, _ = _test_logits(model, state, images, mean, std, logit_scale, model_inputs)
    logits32 = _mean_over_views(logits.astype(jnp.float32), views)
    return {name: fn(logits32, batch["label"]) for name, fn in outputs.items()}

  return eval_step


def make_feature_step(
  model: nn.Module,
  mean: Sequence[float],
  std: Sequence[float],
  logit_scale: float = 1.0,
  model_inputs: Callable = no_model_inputs,
) -> Callable:
  """``feature_step(state, batch) -> {"features" (B, D), "logits" (B, K)}``, inference mode,
  the logits as the eval step's (times ``logit_scale``).

  One forward serves NCM, tau-normalisation, post-hoc logit adjustment, centroids and plots.

  A batch of V views per example (``five_crop``, see ``make_eval_step``) gives each
  example's logits averaged over its views, as the eval step's, and its features averaged
  over them too: the post-hoc methods read one feature per example, the mean of its crops'.
  A method linear in the features (tau-normalisation's rescaled linear head) thereby gives
  the mean of its per-crop logits, as LIFT's ensemble; one that normalises them or takes
  distances (NCM, a cosine zero-shot head) is computed on the mean feature, which is not
  the mean of its per-crop logits.
  """

  def feature_step(state: TrainState, batch) -> dict:
    images, views = _flat_views(batch)
    logits, aux = _test_logits(model, state, images, mean, std, logit_scale, model_inputs)
    return {
      "features": _mean_over_views(aux["features"], views),
      "logits": _mean_over_views(logits, views),
    }

  return feature_step
