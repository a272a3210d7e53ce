"""The training loop: setup, step, evaluate, checkpoint.

``train_and_evaluate(config, workdir)`` is all the command line calls; tests call it
(or the pieces) directly with tiny in-memory data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from jax.experimental import multihost_utils

from ltjax import models, sharding
from ltjax.data import pipeline
from ltjax.data.datasets import DataSplits, build_splits
from ltjax.evaluate import runner
from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import compile_options, optim, steps
from ltjax.train.stages import Stage, get_stage
from ltjax.train.state import TrainState

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Experiment:
  """Everything about a run that is not the train state."""

  config: ml_collections.ConfigDict
  stage: Stage
  mesh: jax.sharding.Mesh
  splits: DataSplits
  model: object
  steps_per_epoch: float
  total_steps: int
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  state_sharding: object
  train_step: Callable
  eval_step: Callable
  feature_step: Callable


def build_model(config: ml_collections.ConfigDict, num_classes: int):
  """The ``ltjax.models.Classifier`` of ``config``, with the neck its stage asks for."""
  kwargs = {"width": config.model.width} if config.model.width != 1 else {}
  return models.build_model(
    config.model.backbone,
    config.model.head,
    num_classes,
    dtype=config.model.dtype,
    neck=get_stage(config.stage).neck(config),
    **kwargs,
  )


def _init_fn(model, tx_fn, image_shape, num_classes: int, with_centroids: bool):
  def init(seed):
    # Parameters are drawn with the "rbg" generator: its initialisers compile several
    # times faster on CPU than threefry's, and the state is replicated, so the draw
    # does not depend on the device count.
    params_rng = jax.random.key(seed, impl="rbg")
    state_rng = jax.random.key_data(jax.random.fold_in(jax.random.PRNGKey(seed), 1))
    x = jnp.zeros((1, *image_shape), jnp.float32)
    rngs = {"params": params_rng, "dropout": params_rng}
    centroids = None
    if with_centroids:  # (K, D): D is the neck's output width.
      (features, _), _ = model.init_with_output(rngs, x, train=False, method=model.features)
      centroids = jnp.zeros((num_classes, features.shape[-1]), jnp.float32)
    variables = model.init(rngs, x, train=False, centroids=centroids)
    state = TrainState(
      step=jnp.zeros((), jnp.int32),
      params=variables["params"],
      batch_stats=variables.get("batch_stats", {}),
      opt_state=None,
      rng=state_rng,
      centroids=centroids,
    )
    tree = steps.trainable(state)
    return state.replace(opt_state=tx_fn(tree).init(tree))

  return init


def _check_intervals(config: ml_collections.ConfigDict) -> None:
  for key in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    if not isinstance(config[key], int) or config[key] < 1:
      raise ValueError(f"{key} must be an integer >= 1, got {config[key]!r}.")
  if not config.num_epochs > 0:
    raise ValueError(f"num_epochs must be > 0, got {config.num_epochs!r}.")
  if not config.eval_every_epochs >= 0:
    raise ValueError(f"eval_every_epochs must be >= 0 (0: none), got {config.eval_every_epochs!r}.")


def setup(
  config: ml_collections.ConfigDict, splits: DataSplits | None = None, *, check_start: bool = True
) -> tuple:
  """Builds the experiment and its freshly initialised, sharded train state.

  The state is what initialisation draws, before the stage's start (``exp.stage.start``:
  what it loads from ``config.init_from``, OLTR's centroids), which ``train`` runs for a
  fresh run and skips when it resumes from the run's own checkpoints. The config is checked
  before any data is read, including what the start needs (``init_from``) unless
  ``check_start=False``: for callers that replace the whole state (a finished run's
  checkpoint, an imported one).
  """
  stage = get_stage(config.stage)
  _check_intervals(config)
  stage.check(config)
  if check_start:
    stage.check_start(config)
  mesh = sharding.make_mesh(config.num_devices)
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
  splits = splits if splits is not None else build_splits(config.dataset, config.seed, config.data)
  model = build_model(config, splits.num_classes)
  steps_per_epoch, total_steps = optim.run_length(config, len(splits.train))
  schedule_fn = lambda lr: optim.make_schedule(config, len(splits.train), lr)
  freeze = stage.freeze + tuple(config.optim.freeze)
  tx_fn = lambda tree: optim.make_optimizer(config, schedule_fn, tree, freeze)
  init = _init_fn(
    model, tx_fn, input_shape(config, splits.train), splits.num_classes, stage.centroids
  )
  abstract = jax.eval_shape(init, config.seed)
  repl = sharding.replicated(mesh)
  state_sharding = jax.tree.map(lambda _: repl, abstract)
  state = jax.jit(init, out_shardings=state_sharding, static_argnums=0)(config.seed)
  tx = tx_fn(steps.trainable(state))
  data = sharding.batch_sharding(mesh)
  mean, std = config.dataset.mean, config.dataset.std
  options = compile_options.for_devices(mesh.devices.flat)
  train_step = jax.jit(
    steps.make_train_step(model, tx, stage, config),
    in_shardings=(state_sharding, data),
    out_shardings=(state_sharding, repl),
    donate_argnums=0,
    compiler_options=options,
  )
  eval_step = jax.jit(
    steps.make_eval_step(model, mean, std),
    in_shardings=(state_sharding, data),
    out_shardings=repl,
    compiler_options=options,
  )
  feature_step = jax.jit(
    steps.make_feature_step(model, mean, std),
    in_shardings=(state_sharding, data),
    out_shardings=repl,
    compiler_options=options,
  )
  exp = Experiment(
    config,
    stage,
    mesh,
    splits,
    model,
    steps_per_epoch,
    total_steps,
    schedule_fn(config.optim.lr),
    tx,
    state_sharding,
    train_step,
    eval_step,
    feature_step,
  )
  return exp, state


def input_shape(config: ml_collections.ConfigDict, source) -> tuple[int, ...]:
  """(H, W, C) of the model's input: the stored size, or the crop size when resized."""
  image = np.asarray(source.get_batch(np.array([0]))[0][0])
  if config.data.augment in ("imagenet", "imagenet_device"):
    return (config.data.crop_size, config.data.crop_size, image.shape[-1])
  return image.shape


def make_stream(exp: Experiment) -> pipeline.TrainStream:
  """The training stream of ``exp``: its sampler, augmentation and this process's slice."""
  c = exp.config
  options = {}
  if c.sampler.name == "qpower":
    options["q"] = c.sampler.q
  elif c.sampler.name == "progressive":
    options["num_epochs"] = c.num_epochs
  elif c.sampler.name == "class_aware":
    options["k"] = c.sampler.k
    if c.sampler.shuffle_in_batch:  # The reference cRT/LWS: one batch mixes its classes.
      options["batch_size"] = c.batch_size
  return pipeline.TrainStream(
    exp.splits.train,
    sampler=c.sampler.name,
    sampler_options=options,
    seed=c.seed,
    global_batch=c.batch_size,
    augment=c.data.augment,
    pad=c.data.pad,
    flip=c.data.flip,
    size=c.data.crop_size,
    jitter=c.data.jitter,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )


def run_metadata(exp: Experiment) -> dict:
  return {
    "config": exp.config.to_dict(),
    "stage": exp.config.stage,
    "num_classes": exp.splits.num_classes,
    "train_counts": exp.splits.train_counts.tolist(),
  }


class MetricWriter:
  """metrics.jsonl and TensorBoard scalars, written by process 0 only."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._file = open(os.path.join(workdir, "metrics.jsonl"), "a")
      try:
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      except ImportError:  # pragma: no cover - tensorboardX is a dependency.
        log.warning("tensorboardX missing: no TensorBoard scalars.")

  def write(self, step: int, split: str, scalars: dict) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), "split": split, **{k: float(v) for k, v in scalars.items()}}
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      if self._tb is not None:
        self._tb.close()


def _log_train(writer, exp, step, pending, t0, n_steps) -> None:
  """Fetches the accumulated per-step metrics (the only device->host sync) and logs."""
  fetched = jax.device_get(pending)
  means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
  elapsed = max(time.perf_counter() - t0, 1e-9)
  means["lr"] = float(exp.schedule(step - 1))
  means["images_per_s"] = n_steps * exp.config.batch_size / elapsed
  means["epoch"] = step / exp.steps_per_epoch
  writer.write(step, "train", means)
  log.info(
    "step %d/%d epoch %.2f loss %.4f acc %.3f lr %.4g %.0f img/s",
    step,
    exp.total_steps,
    means["epoch"],
    means["loss"],
    means["accuracy"],
    means["lr"],
    means["images_per_s"],
  )


class StopRequests:
  """SIGINT/SIGTERM (Ctrl-C, a scheduler's preemption) as a flag checked between steps.

  The train step donates the state: an exception raised in the middle of a step would
  leave the loop holding deleted arrays and nothing to save. Inside this context the
  first signal only sets ``signum``; the loop stops after the step, saves a checkpoint
  and raises ``KeyboardInterrupt``. A second signal raises at once (the latest periodic
  checkpoint is kept). Installed from the main thread only (Python's rule).

  With several processes, saving is collective and every step runs collectives, so one
  process cannot stop alone: ``agreed`` gathers every process's flag, and the loop calls
  it at logging steps (``log_every_steps``), where it syncs with the device anyway. A
  signal that reaches any process stops all of them at the same step.
  """

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict = {}

  def __enter__(self) -> StopRequests:
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.getsignal(sig)
        signal.signal(sig, self._handle)
    return self

  def agreed(self) -> bool:
    """Whether any process has a stop request (collective when there are several)."""
    if jax.process_count() == 1:
      return self.signum is not None
    flags = multihost_utils.process_allgather(np.int32(self.signum is not None))
    return bool(np.max(flags))

  def _handle(self, signum, frame) -> None:
    del frame
    if self.signum is not None:
      raise KeyboardInterrupt(f"signal {signum} (second)")
    self.signum = signum
    log.warning("signal %d: stopping after this step (again to stop at once).", signum)

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def train(exp: Experiment, state: TrainState, workdir: str) -> TrainState:
  """Runs (or resumes) training to ``exp.total_steps``, checkpointing along the way."""
  c = exp.config
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), c.keep_checkpoints)
  stream = make_stream(exp)
  it = pipeline.train_iterator(
    stream, exp.total_steps, num_threads=c.data.num_threads, prefetch=c.data.prefetch
  )
  start = ckpt.latest_step()
  if start is not None:
    target = ckpt_lib.abstract_like(state, exp.state_sharding)
    state, data_state, _, start = ckpt_lib.restore(ckpt.directory, target)
    it.set_state(data_state)
    log.info("resumed from step %d in %s", start, ckpt.directory)
  else:
    state = exp.stage.start(exp, state)
  start = start or 0
  writer = MetricWriter(workdir)
  data_sharding = sharding.batch_sharding(exp.mesh)
  eval_every = int(round(c.eval_every_epochs * exp.steps_per_epoch)) if c.eval_every_epochs else 0
  pending, t0, since = [], time.perf_counter(), 0
  bar = tqdm.tqdm(
    total=exp.total_steps,
    initial=start,
    desc=f"{c.stage}",
    unit="step",
    disable=jax.process_index() != 0 or not sys.stderr.isatty(),
    mininterval=1,
  )
  step = start
  multi_process, agreed_stop = jax.process_count() > 1, False
  with StopRequests() as stop:
    try:
      for step in range(start + 1, exp.total_steps + 1):
        batch = sharding.to_global(next(it), data_sharding)
        state, metrics = exp.train_step(state, batch)
        pending.append(metrics)
        since += 1
        bar.update(1)
        sync_point = step % c.log_every_steps == 0 or step == exp.total_steps
        if sync_point:
          _log_train(writer, exp, step, pending, t0, since)
          pending, t0, since = [], time.perf_counter(), 0
        if eval_every and step % eval_every == 0 and len(exp.splits.val):
          val = runner.evaluate_split(exp, state, exp.splits.val)
          writer.write(step, "val", {k: v for k, v in val.items() if v == v})
        if step % c.checkpoint_every_steps == 0 or step == exp.total_steps:
          ckpt.save(step, state, it.get_state(), run_metadata(exp))
        # One process stops at once; several agree at logging steps (see StopRequests).
        if (sync_point if multi_process else stop.signum is not None) and stop.agreed():
          agreed_stop = True
          why = f"signal {stop.signum}" if stop.signum else "another process was signalled"
          raise KeyboardInterrupt(why)
    except KeyboardInterrupt:
      # Nothing lost on Ctrl-C or a scheduler's SIGTERM: save where we are, then stop.
      if multi_process and not agreed_stop:
        # A second signal: saving is collective, and the other processes are not here.
        log.warning("interrupted at step %d; the latest checkpoint is kept.", step)
        raise
      try:
        done = int(jax.device_get(state.step))
      except RuntimeError:  # A second signal inside a step: the donated state is gone.
        log.warning("interrupted inside step %d; the latest checkpoint is kept.", step)
        raise KeyboardInterrupt from None
      log.warning("interrupted after step %d: saving a checkpoint before exiting.", done)
      if done > (ckpt.latest_step() or 0):
        ckpt.save(done, state, it.get_state(), run_metadata(exp))
      raise
    finally:
      bar.close()
      ckpt.close()
      writer.close()
  return state


def restore_trained(
  config: ml_collections.ConfigDict, workdir: str, splits: DataSplits | None = None
) -> tuple[Experiment, TrainState]:
  """The experiment of ``config`` with the latest state saved in ``workdir``
  (``config.init_from`` is not read: the checkpoint holds every variable)."""
  exp, state = setup(config, splits, check_start=False)
  target = ckpt_lib.abstract_like(state, exp.state_sharding)
  state, _, _, step = ckpt_lib.restore(os.path.join(workdir, "checkpoints"), target)
  log.info("restored step %d from %s", step, workdir)
  return exp, state


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, splits: DataSplits | None = None
) -> dict:
  """Trains (resuming if ``workdir`` has checkpoints), evaluates on test, writes results.

  Returns:
    The method's results (many/medium/few/all/mean_class and open-set metrics if the
    test set has open-set images), also merged into ``workdir/results.json``.
  """
  exp, state = setup(config, splits)
  log.info(
    "%s: %d train images, %d classes, %d steps (%.1f per epoch) on %d devices",
    config.stage,
    len(exp.splits.train),
    exp.splits.num_classes,
    exp.total_steps,
    exp.steps_per_epoch,
    exp.mesh.size,
  )
  state = train(exp, state, workdir)
  return runner.evaluate_and_write(exp, state, workdir)
