"""Experiment assembly: a config (and its data) -> the model, optimizer, jitted steps and the
freshly initialised, sharded train state.

``setup(config)`` is what ``ltjax train`` and ``ltjax evaluate`` build before anything runs;
``abstract_setup(config)`` builds the same steps from the data's shape alone (no arrays), so
they can be lowered, exported or compiled for memory analysis on any machine. The loop
(``ltjax.train.loop``) runs what these return.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ltjax import config as config_lib
from ltjax import losses, models, sharding
from ltjax.data import datasets, pipeline, samplers
from ltjax.data.datasets import DataSpec, DataSplits, build_splits, reference_spec
from ltjax.data.pp import augment, mixing
from ltjax.evaluate import evaluators
from ltjax.stop import STOP
from ltjax.train import compile_options, optim, steps
from ltjax.train import frozen as frozen_lib
from ltjax.train import init_from as init_lib
from ltjax.train import stages as stages_lib
from ltjax.train.stages import Stage
from ltjax.train.state import TrainState

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Components:
  """The run's registered components, each built once from its config block by its
  registry, which refuses an option of another member by name (``checked``): what the rest
  of the run asks, instead of reading those blocks again."""

  stage: Stage  # config.stage, with the options it reads (``Stage.of``)
  optimization: optim.Optimization  # config.optim, num_epochs, batch_size
  backbone: models.backbones.Backbone  # config.model (its backbone and fine-tuning options)
  head: models.Head  # config.model (its head and the head's options)
  sampler: samplers.Sampler  # config.sampler
  loss: losses.ClassificationLoss  # config.loss (the stage's loss wraps it: make_loss)
  evaluation: evaluators.Evaluation  # config.eval (the post-hoc methods' choice too)
  augmentation: augment.Augmentation  # config.data.augment and its options
  eval_transform: augment.EvalTransform  # config.data.eval_transform and its options
  mixing: mixing.Mixing | None  # config.data.mixup_alpha / cutmix_alpha (None: no mixing)

  @classmethod
  def of(cls, config: ml_collections.ConfigDict) -> Components:
    return cls(
      stages_lib.from_config(config),
      optim.from_config(config),
      models.backbones.from_config(config.model),
      models.head_registry.from_config(config.model),
      samplers.from_config(config),
      losses.from_config(config),
      evaluators.Evaluation.from_config(config.eval),
      augment.from_config(config.data),
      augment.eval_from_config(config.data),
      mixing.from_config(config.data),
    )


@dataclasses.dataclass
class Experiment:
  """Everything about a run that is not the train state."""

  config: ml_collections.ConfigDict
  stage: Stage
  optimization: optim.Optimization
  mesh: jax.sharding.Mesh
  splits: DataSplits | None  # None from abstract_setup.
  model: object
  steps_per_epoch: float
  total_steps: int
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  state_sharding: object
  train_step: Callable
  eval_step: Callable
  feature_step: Callable
  loss_fn: Callable  # The stage's loss (``stage.make_loss``), as the train step calls it.
  backbone: models.backbones.Backbone  # ``Components``'.
  sampler: samplers.Sampler
  evaluation: evaluators.Evaluation
  augmentation: augment.Augmentation
  eval_transform: augment.EvalTransform
  mixing: mixing.Mixing | None
  spec: DataSpec | None = None
  #: The seed the splits were drawn with: ``config.seed``, or that of the run a later stage
  #: starts from (``init_from.split_seed``), so that it reuses that run's carve.
  split_seed: int | None = None
  #: ``{"trained", "total"}`` parameter counts (``optim.parameter_counts``).
  parameters: dict | None = None
  #: Regexes of the parameters that never update: the stage's, ``optim.freeze`` and the
  #: fine-tuning method's (``optim.frozen_mask`` of them is the train step's ``frozen``).
  freeze: tuple[str, ...] = ()
  #: ``ltjax.train.frozen.reference``: the frozen parameters its checkpoints leave in
  #: ``model.pretrained`` (None: checkpoints hold everything; always None from
  #: ``abstract_setup``).
  frozen_weights: dict | None = None


def model_of(config: ml_collections.ConfigDict, parts: Components, num_classes: int):
  """The ``ltjax.models.Classifier`` of ``config``: the run's backbone, the head of
  ``config.model``, the neck its stage asks for."""
  return models.assemble(
    parts.backbone, parts.head, num_classes, dtype=config.model.dtype, neck=parts.stage.neck()
  )


def frozen_reference(exp: Experiment) -> dict | None:
  """What of a parameter-efficient run its checkpoints leave in ``model.pretrained``
  (``ltjax.train.frozen``): the method's frozen parameters, when the backbone is read from
  that file (not copied from ``init_from``)."""
  config = exp.config
  if any(dst.startswith("backbone") for _, dst in exp.stage.copies_of(config)):
    return None
  if not config.model.pretrained or not os.path.isfile(config.model.pretrained):
    return None
  return frozen_lib.reference(exp.backbone.frozen_patterns(), config.model.pretrained)


def _init_fn(model, tx_fn, image_shape, num_classes: int, stage: Stage):
  def init(seed):
    # Parameters are drawn with the "rbg" generator: its initialisers compile several
    # times faster on CPU than threefry's, and the state is replicated, so the draw
    # does not depend on the device count.
    params_rng = jax.random.key(seed, impl="rbg")
    state_rng = jax.random.key_data(jax.random.fold_in(jax.random.PRNGKey(seed), 1))
    x = jnp.zeros((1, *image_shape), jnp.float32)
    rngs = {"params": params_rng, "dropout": params_rng}

    def feature_dim() -> int:  # The neck's output width (traced only when a stage asks).
      (features, _), _ = model.init_with_output(rngs, x, train=False, method=model.features)
      return features.shape[-1]

    extra = stage.init_extra(num_classes, feature_dim)
    variables = model.init(rngs, x, train=False, **stage.model_inputs(extra))
    state = TrainState(
      step=jnp.zeros((), jnp.int32),
      params=variables["params"],
      batch_stats=variables.get("batch_stats", {}),
      opt_state=None,
      rng=state_rng,
      extra=extra,
    )
    tree = steps.trainable(state)
    return state.replace(opt_state=tx_fn(tree).init(tree))

  return init


def _warn_about_data(config: ml_collections.ConfigDict, splits: DataSplits) -> None:
  """Warnings for a run that is legal but probably not what was meant."""
  counts, n = splits.train_counts, len(splits.train)
  empty = np.flatnonzero(counts == 0)
  if empty.size:
    log.warning(
      "%d of %d classes have no training images (first: %s): the %s sampler never shows "
      "them and they are never predicted correctly; check the training list.",
      empty.size,
      len(counts),
      ", ".join(str(int(k)) for k in empty[:5]),
      config.sampler.name,
    )
  if config.batch_size > n:
    log.warning(
      "batch_size %d is larger than the training set (%d images): one step is %.1f epochs.",
      config.batch_size,
      n,
      config.batch_size / n,
    )


def checked(config: ml_collections.ConfigDict, check_start: bool = True):
  """Checks everything about ``config`` that can be checked before any data is read (field
  ranges, the optimizer, each component's options, the stage's model and, with
  ``check_start``, what a fresh run loads), and returns ``(Components, mesh)``.

  Raises:
    ValueError: naming the field to change.
  """
  config_lib.resolve_paths(config)  # As config.json records them: see PATH_FIELDS.
  config_lib.validate(config)
  parts = Components.of(config)
  stage = parts.stage
  datasets.warn_unread(config.dataset)
  parts.loss.check(config)  # What the loss needs of the model (LDAM: a cosine head).
  stage.check(config, parts.backbone)
  if check_start:
    stage.check_start(config)
  mesh = sharding.make_mesh(config.num_devices)
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
  return parts, mesh


def setup(
  config: ml_collections.ConfigDict,
  splits: DataSplits | None = None,
  *,
  check_start: bool = True,
  seed_of_splits: int | None = None,
) -> tuple[Experiment, TrainState]:
  """Builds the experiment and its freshly initialised, sharded train state.

  The state is what initialisation draws, before the stage's start (``exp.stage.start``:
  what it loads from ``config.init_from``, OLTR's centroids), which ``train`` runs for a
  fresh run and skips when it resumes from the run's own checkpoints. The config is checked
  before any data is read, including what the start needs (``init_from``) unless
  ``check_start=False``: for callers that replace the whole state (a finished run's
  checkpoint, an imported one). The splits are drawn with ``seed_of_splits`` (a finished
  run's own, from its checkpoint) or ``init_from.split_seed``'s.
  """
  parts, mesh = checked(config, check_start)
  earlier = None
  if seed_of_splits is None and check_start:
    earlier = init_lib.earlier_run(config, parts.stage)
  seed = seed_of_splits if seed_of_splits is not None else init_lib.split_seed(config, earlier)
  splits = splits if splits is not None else build_splits(config.dataset, seed, config.data)
  STOP.check()
  _warn_about_data(config, splits)
  spec = DataSpec(
    splits.num_classes,
    len(splits.train),
    input_shape(parts.augmentation, splits.train),
    tuple(int(n) for n in splits.train_counts),
  )
  exp, init, _ = _build(config, parts, spec, mesh, splits)
  exp.split_seed = seed
  exp.frozen_weights = frozen_reference(exp)
  n = exp.parameters
  log.info(
    "parameters: %s trained of %s (%.3g%%)",
    f"{n['trained']:,}",
    f"{n['total']:,}",
    100.0 * n["trained"] / max(n["total"], 1),
  )
  init_lib.check_same_splits(exp, earlier)
  state = jax.jit(init, out_shardings=exp.state_sharding, static_argnums=0)(config.seed)
  return exp, state


def abstract_setup(config: ml_collections.ConfigDict, spec: DataSpec | None = None) -> tuple:
  """The experiment of ``config`` and its abstract train state, without data or arrays.

  Builds everything ``setup`` builds (model, optimizer, the jitted train, eval and feature
  steps with their shardings) from the data's shape alone, so the production steps can be
  lowered, exported or compiled for memory analysis (tests/test_lowering.py,
  scripts/memory_plan.py) on any machine. ``exp.splits`` is None.

  Args:
    config: the experiment config.
    spec: the data's shape; default ``ltjax.data.datasets.reference_spec(config)`` (the
      reference split-list datasets).

  Returns:
    ``(exp, state)``: ``state`` is a tree of ``jax.ShapeDtypeStruct`` with the state's
    shardings; ``abstract_batch(exp)`` gives the matching training batch,
    ``abstract_eval_batch(exp)`` the eval and feature steps' batch.
  """
  parts, mesh = checked(config, check_start=False)
  spec = spec or reference_spec(config)
  exp, _, shapes = _build(config, parts, spec, mesh, None)
  state = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, exp.state_sharding
  )
  return exp, state


def abstract_batch(exp: Experiment) -> dict:
  """``jax.ShapeDtypeStruct`` s of a global training batch of ``exp``, sharded on ``data``."""
  data = sharding.batch_sharding(exp.mesh)
  shapes = pipeline.example_shapes(exp.augmentation, exp.spec.image_shape)
  return {
    k: jax.ShapeDtypeStruct((exp.config.batch_size, *shape), dtype, sharding=data)
    for k, (shape, dtype) in shapes.items()
  }


def abstract_eval_batch(exp: Experiment) -> dict:
  """``jax.ShapeDtypeStruct`` s of a global evaluation batch of ``exp`` (what the eval and
  feature steps take: ``image`` and ``label``, ``config.eval.batch_size`` examples; with
  ``five_crop`` each image is its crops, ``pipeline.eval_example_shapes``), sharded on
  ``data``."""
  data = sharding.batch_sharding(exp.mesh)
  shapes = pipeline.eval_example_shapes(exp.eval_transform, exp.spec.image_shape)
  return {
    k: jax.ShapeDtypeStruct((exp.config.eval.batch_size, *shape), dtype, sharding=data)
    for k, (shape, dtype) in shapes.items()
  }


def _train_step_fn(stage: Stage, model, tx, loss_fn, mean, std, mix, frozen) -> Callable:
  """The train step (``steps.make_train_step``) given what the run's components make of
  their config blocks: the normalisation, the stage's forward arguments and head inputs,
  mixup / CutMix."""
  return steps.make_train_step(
    model,
    tx,
    loss_fn,
    mean,
    std,
    forward_kwargs=stage.apply_kwargs(),
    model_inputs=stage.model_inputs,
    mix=mix,
    frozen=frozen,
  )


def train_step_fn(exp: Experiment, frozen: Callable | None = None) -> Callable:
  """``exp``'s train step, not jitted (``exp.train_step`` is it, jitted with its shardings
  and donation), with ``frozen`` (``optim.frozen_mask``) for the leaves it never updates:
  None differentiates every leaf."""
  mean, std = exp.config.dataset.mean, exp.config.dataset.std
  return _train_step_fn(exp.stage, exp.model, exp.tx, exp.loss_fn, mean, std, exp.mixing, frozen)


def _build(
  config, parts: Components, spec: DataSpec, mesh, splits
) -> tuple[Experiment, Callable, TrainState]:
  """The experiment of ``config`` (its ``parts``) on data of ``spec``, its state's init
  function and the state's shapes (``jax.ShapeDtypeStruct`` s)."""
  stage = parts.stage
  model = model_of(config, parts, spec.num_classes)
  opt = parts.optimization
  freeze = stage.freeze + opt.freeze + parts.backbone.frozen_patterns()
  extra_groups = stage.extra_groups()
  steps_per_epoch, total_steps = opt.run_length(spec.num_train)
  schedule_fn = lambda lr: opt.lr_schedule(spec.num_train, lr)
  tx_fn = lambda tree: opt.transformation(schedule_fn, tree, freeze, extra_groups)
  init = _init_fn(model, tx_fn, spec.image_shape, spec.num_classes, stage)
  abstract = jax.eval_shape(init, config.seed)
  repl = sharding.replicated(mesh)
  state_sharding = jax.tree.map(lambda _: repl, abstract)
  tx = tx_fn(steps.trainable(abstract))  # The labels need the tree's structure only.
  data = sharding.batch_sharding(mesh)
  mean, std = config.dataset.mean, config.dataset.std
  options = compile_options.for_devices(mesh.devices.flat)
  loss_fn = stage.make_loss(parts.loss, spec.class_counts(), steps_per_epoch)
  # Evaluation scores the logits the loss trains (LDAM's scale); its outputs stay sharded
  # as the batch (each device its rows: ``ltjax.evaluate.runner`` fetches them batch by batch).
  logit_scale = parts.loss.logit_scale
  # The model's input fits the evaluation transform.
  pipeline.check_eval_transform(parts.eval_transform, parts.augmentation, spec.image_shape)
  train_step = jax.jit(
    _train_step_fn(stage, model, tx, loss_fn, mean, std, parts.mixing, optim.frozen_mask(freeze)),
    in_shardings=(state_sharding, data),
    out_shardings=(state_sharding, repl),
    donate_argnums=0,
    compiler_options=options,
  )
  eval_step = jax.jit(
    steps.make_eval_step(
      model, mean, std, parts.evaluation.device_functions, logit_scale, stage.model_inputs
    ),
    in_shardings=(state_sharding, data),
    out_shardings=data,
    compiler_options=options,
  )
  feature_step = jax.jit(
    steps.make_feature_step(model, mean, std, logit_scale, stage.model_inputs),
    in_shardings=(state_sharding, data),
    out_shardings=data,
    compiler_options=options,
  )
  exp = Experiment(
    config,
    stage,
    opt,
    mesh,
    splits,
    model,
    steps_per_epoch,
    total_steps,
    jax.jit(schedule_fn(opt.lr)),  # Logged per row: one program, not one per op.
    tx,
    state_sharding,
    train_step,
    eval_step,
    feature_step,
    loss_fn,
    parts.backbone,
    parts.sampler,
    parts.evaluation,
    parts.augmentation,
    parts.eval_transform,
    parts.mixing,
    spec,
    parameters=optim.parameter_counts(steps.trainable(abstract), freeze),
    freeze=freeze,
  )
  return exp, init, abstract


def input_shape(augmentation: augment.Augmentation, source) -> tuple[int, ...]:
  """(H, W, C) of the model's input: the stored size, or the crop size when the training
  augmentation resizes."""
  image = np.asarray(source.get_batch(np.array([0]))[0][0])
  if augmentation.resizes:
    return (augmentation.crop_size, augmentation.crop_size, image.shape[-1])
  return image.shape


def make_stream(exp: Experiment) -> pipeline.TrainStream:
  """The training stream of ``exp``: its sampler, augmentation and this process's slice."""
  c = exp.config
  return pipeline.TrainStream(
    exp.splits.train,
    sampler=exp.sampler,
    seed=c.seed,
    global_batch=c.batch_size,
    augment=exp.augmentation,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )


def data_record(exp: Experiment) -> dict:
  """What the run's data is: each split's identity (``ltjax.data.identity``) and the seed
  its splits were drawn with."""
  return {**exp.splits.identity(), "split_seed": exp.split_seed}


def run_metadata(exp: Experiment) -> dict:
  """The metadata item of every checkpoint: config, stage, the training class counts and
  the data (``data_record``)."""
  return {
    "config": exp.config.to_dict(),
    "stage": exp.config.stage,
    "num_classes": exp.splits.num_classes,
    "train_counts": exp.splits.train_counts.tolist(),
    "data": data_record(exp),
  }
