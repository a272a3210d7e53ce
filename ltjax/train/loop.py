"""The training loop: setup, step, evaluate, checkpoint.

``train_and_evaluate(config, workdir)`` is all the command line calls; tests call it
(or the pieces) directly with tiny in-memory data.
"""

from __future__ import annotations

import contextlib
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

from ltjax import config as config_lib
from ltjax import models, sharding
from ltjax.data import pipeline
from ltjax.data.datasets import DataSpec, DataSplits, build_splits, reference_spec
from ltjax.data.pp import device_ops
from ltjax.evaluate import runner
from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import compile_options, optim, steps
from ltjax.train import workdir as workdir_lib
from ltjax.train.stages import Stage, get_stage
from ltjax.train.state import TrainState

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Experiment:
  """Everything about a run that is not the train state."""

  config: ml_collections.ConfigDict
  stage: Stage
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
  spec: DataSpec | None = None


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


def _check_config(config: ml_collections.ConfigDict) -> None:
  """Everything about the config that can be checked before any data is read."""
  config_lib.validate(config)
  optim.check(config)


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
  mesh = _checked_mesh(config, check_start)
  splits = splits if splits is not None else build_splits(config.dataset, config.seed, config.data)
  _warn_about_data(config, splits)
  spec = DataSpec(splits.num_classes, len(splits.train), input_shape(config, splits.train))
  exp, init, _ = _build(config, spec, mesh, splits)
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
    shardings; ``abstract_batch(exp)`` gives the matching batch.
  """
  mesh = _checked_mesh(config, check_start=False)
  spec = spec or reference_spec(config)
  exp, _, shapes = _build(config, spec, mesh, None)
  state = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, exp.state_sharding
  )
  return exp, state


def abstract_batch(exp: Experiment) -> dict:
  """``jax.ShapeDtypeStruct`` s of a global training batch of ``exp``, sharded on ``data``."""
  c, spec = exp.config, exp.spec
  data = sharding.batch_sharding(exp.mesh)
  b, (h, w, ch) = c.batch_size, spec.image_shape

  def leaf(shape, dtype):
    return jax.ShapeDtypeStruct((b, *shape), dtype, sharding=data)

  batch = {"image": leaf((h, w, ch), np.uint8), "label": leaf((), np.int32)}
  if c.data.augment == "imagenet_device":  # The host's crop buffers and per-record draws.
    shapes = device_ops.example_shapes(c.data.crop_size, ch)
    batch |= {k: leaf(shape, dtype) for k, (shape, dtype) in shapes.items()}
  return batch


def _checked_mesh(config: ml_collections.ConfigDict, check_start: bool):
  """Checks the config (before any data is read) and returns the mesh it runs on."""
  stage = get_stage(config.stage)
  _check_config(config)
  stage.check(config)
  if check_start:
    stage.check_start(config)
  mesh = sharding.make_mesh(config.num_devices)
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
  return mesh


def _build(config, spec: DataSpec, mesh, splits) -> tuple[Experiment, Callable, TrainState]:
  """The experiment of ``config`` on data of ``spec``, its state's init function and the
  state's shapes (``jax.ShapeDtypeStruct`` s)."""
  stage = get_stage(config.stage)
  model = build_model(config, spec.num_classes)
  steps_per_epoch, total_steps = optim.run_length(config, spec.num_train)
  schedule_fn = lambda lr: optim.make_schedule(config, spec.num_train, lr)
  freeze = stage.freeze + tuple(config.optim.freeze)
  tx_fn = lambda tree: optim.make_optimizer(config, schedule_fn, tree, freeze)
  init = _init_fn(model, tx_fn, spec.image_shape, spec.num_classes, stage.centroids)
  abstract = jax.eval_shape(init, config.seed)
  repl = sharding.replicated(mesh)
  state_sharding = jax.tree.map(lambda _: repl, abstract)
  tx = tx_fn(steps.trainable(abstract))  # The labels need the tree's structure only.
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
    spec,
  )
  return exp, init, abstract


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


def _truncate_rows(path: str, last_step: int) -> None:
  """Keeps the metrics.jsonl rows of steps <= ``last_step`` (and unreadable lines, as they
  are), rewritten atomically."""
  with open(path) as f:
    lines = f.readlines()
  keep = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      keep.append(line)
      continue
    if not isinstance(row, dict) or row.get("step", 0) <= last_step:
      keep.append(line)
  if len(keep) != len(lines):
    with open(f"{path}.tmp", "w") as f:
      f.writelines(keep)
    os.replace(f"{path}.tmp", path)
    log.info("metrics.jsonl: dropped %d row(s) after step %d", len(lines) - len(keep), last_step)


class MetricWriter:
  """metrics.jsonl and TensorBoard scalars, written by process 0 only.

  A run resumed from step ``resume_step`` first drops the rows written after it (a run
  killed after its last checkpoint logged steps it will log again), in metrics.jsonl and,
  with ``purge_step``, in TensorBoard.
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    self.enabled = jax.process_index() == 0
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      path = os.path.join(workdir, "metrics.jsonl")
      if resume_step and os.path.exists(path):
        _truncate_rows(path, resume_step)
      self._file = open(path, "a")
      try:
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(
          os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1 if resume_step else None
        )
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


def _log_train(writer, exp, step, fetched: list, t0, n_steps) -> None:
  """Logs the per-step metrics since the last log (fetched by ``_fetch_checked``)."""
  means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0] if k != "finite"}
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


def _log_val(step: int, val: dict) -> None:
  """One console line per validation pass (metrics.jsonl and TensorBoard have them too)."""
  groups = ("all", "many", "medium", "few")
  cells = [f"{k} {100 * val[k]:.1f}" for k in groups if k in val and val[k] == val[k]]
  log.info("step %d val accuracy (%%): %s", step, ", ".join(cells))


class Interrupted(KeyboardInterrupt):
  """A stop by SIGINT/SIGTERM, saying truthfully what was saved.

  Attributes:
    message: one line for the user: when it stopped and what is on disk.
  """

  def __init__(self, message: str):
    super().__init__(message)
    self.message = message


class StopRequests:
  """SIGINT/SIGTERM (Ctrl-C, a scheduler's preemption): the one signal mechanism of ltjax.

  Outside training steps a signal stops at once (``Interrupted``): nothing is being
  written then, so there is nothing to lose (the message says whether a training loop
  has already saved its checkpoints). While the training loop runs
  (``deferred()``), the train step donates the state: an exception raised in the middle
  of a step would leave the loop holding deleted arrays and nothing to save. There the
  first signal only sets ``signum``; a single process stops after the current step, saves
  a checkpoint and raises ``Interrupted``. A second signal raises at once (the latest
  periodic checkpoint is kept).

  With several processes, saving is collective and every step runs collectives, so one
  process cannot stop alone: ``agreed`` gathers every process's flag, and the loop calls
  it at logging steps (``log_every_steps``), where it syncs with the device anyway. A
  signal that reaches any process stops all of them at the same step.

  The command line installs the handlers first thing (``install``); library users get
  them for the duration of ``train``. Handlers can only be installed from the main thread
  (Python's rule); elsewhere signals keep their default behaviour.
  """

  def __init__(self):
    self.signum: int | None = None
    self.deferring = False
    self.trained = False  # A training loop of this process has ended (its saves are done).
    self._previous: dict = {}

  def install(self) -> bool:
    """Installs the handlers (main thread only); whether they were installed now."""
    if self._previous or threading.current_thread() is not threading.main_thread():
      return False
    for sig in (signal.SIGINT, signal.SIGTERM):
      self._previous[sig] = signal.getsignal(sig)
      signal.signal(sig, self._handle)
    return True

  def uninstall(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  @contextlib.contextmanager
  def deferred(self):
    """Signals set ``signum`` instead of raising, until the block ends."""
    installed_here = self.install()
    self.signum, self.deferring = None, True
    try:
      yield self
    finally:
      self.deferring, self.trained = False, True
      if installed_here:
        self.uninstall()

  def agreed(self) -> bool:
    """Whether any process has a stop request (collective when there are several)."""
    if jax.process_count() == 1:
      return self.signum is not None
    flags = multihost_utils.process_allgather(np.int32(self.signum is not None))
    return bool(np.max(flags))

  def _handle(self, signum, frame) -> None:
    del frame
    if not self.deferring:
      if self.trained:
        raise Interrupted(
          f"signal {signum} after training: its checkpoints are saved; what ran after it "
          "(evaluation, results) did not finish."
        )
      raise Interrupted(f"signal {signum} before training started: nothing was saved.")
    if self.signum is not None:
      raise KeyboardInterrupt(f"signal {signum} (second)")
    self.signum = signum
    if jax.process_count() > 1:
      log.warning(
        "signal %d: all processes stop together at the next logging step and save a "
        "checkpoint of it (again to stop at once, without saving).",
        signum,
      )
    else:
      log.warning(
        "signal %d: stopping after the current step, then saving a checkpoint of it "
        "(again to stop at once, without saving).",
        signum,
      )


STOP = StopRequests()


class _StopNow(Exception):
  """Raised by the loop itself when the processes agree to stop (not a signal)."""


def _check_writable(workdir: str) -> None:
  """A clear error now, rather than a traceback at the first metrics row or checkpoint."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".ltjax-write-probe-{os.getpid()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise ValueError(
      f"work directory {workdir} is not writable ({e.strerror or e}): choose a writable "
      "--workdir (`ltjax evaluate` reads a finished run from a read-only one)."
    ) from e


def _fetch_checked(pending: list, step: int, ckpt, config) -> list:
  """The per-step metrics since the last check, fetched to the host (the loop's one
  device->host sync); raises ValueError if a step had a non-finite loss or gradient norm
  (the train step skipped their updates, so the state itself is still finite)."""
  fetched = jax.device_get(pending)
  bad = [step - len(pending) + 1 + i for i, m in enumerate(fetched) if not m["finite"]]
  if not bad:
    return fetched
  last = ckpt.latest_step()
  saved = (
    f"the last good checkpoint is step {last} in {ckpt.directory}"
    if last is not None
    else "no checkpoint was saved"
  )
  where = f"step {bad[0]}" if len(bad) == 1 else f"{len(bad)} steps, {bad[0]} to {bad[-1]}"
  raise ValueError(
    f"training diverged: the loss or gradient norm was not finite at {where}. Those updates "
    f"were skipped and nothing from then on was saved: {saved}. Lower --config.optim.lr "
    f"(now {config.optim.lr}) or check the data; resuming repeats the same steps."
  )


def _stopped(message: str) -> Interrupted:
  log.warning("%s", message)
  return Interrupted(message)


def train(
  exp: Experiment, state: TrainState, workdir: str, *, allow_config_change: bool = False
) -> TrainState:
  """Runs (or resumes) training to ``exp.total_steps``, checkpointing along the way.

  The work directory is locked for the run (``ltjax.train.workdir.RunLock``). A fresh run
  writes its config (``config.json``) and starts the stage (``exp.stage.start``); a resumed
  one must have the same config (or ``allow_config_change``; see
  ``ltjax.train.workdir.check_resume``) and restores the newest intact checkpoint.

  Raises:
    ValueError: the directory is locked or not writable, the config changed, training
      diverged (non-finite loss or gradients: nothing after them is saved), or a
      checkpoint could not be written.
    Interrupted: SIGINT/SIGTERM; the message says what was saved.
  """
  _check_writable(workdir)
  with workdir_lib.RunLock(workdir):
    return _train(exp, state, workdir, allow_config_change)


def _train(exp: Experiment, state: TrainState, workdir: str, allow_config_change: bool):
  c = exp.config
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), c.keep_checkpoints)
  stream = make_stream(exp)
  it = pipeline.train_iterator(
    stream, exp.total_steps, num_threads=c.data.num_threads, prefetch=c.data.prefetch
  )
  start = ckpt.latest_step()
  if start is not None:
    saved = workdir_lib.read_config(workdir)
    defaults = config_lib.base_config()
    workdir_lib.check_resume(workdir, c, defaults, saved, allow_config_change)  # Before restoring.
    target = ckpt_lib.abstract_like(state, exp.state_sharding)
    state, data_state, meta, start = ckpt_lib.restore(ckpt.directory, target)
    if saved is None:  # A run from before config.json: its checkpoints hold the config too.
      workdir_lib.check_resume(workdir, c, defaults, meta.get("config"), allow_config_change)
    ckpt.set_aside_newer_than(start)  # Damaged steps that restore skipped.
    it.set_state(data_state)
    log.info("resumed from step %d in %s", start, ckpt.directory)
    if saved is None or allow_config_change:
      workdir_lib.write_config(workdir, c)
  else:
    workdir_lib.write_config(workdir, c)
    state = exp.stage.start(exp, state)
  start = start or 0
  writer = MetricWriter(workdir, resume_step=start)
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
  multi_process = jax.process_count() > 1
  with STOP.deferred() as stop:
    try:
      for step in range(start + 1, exp.total_steps + 1):
        batch = sharding.to_global(next(it), data_sharding)
        state, metrics = exp.train_step(state, batch)
        pending.append(metrics)
        since += 1
        bar.update(1)
        sync_point = step % c.log_every_steps == 0 or step == exp.total_steps
        checkpoint = step % c.checkpoint_every_steps == 0 or step == exp.total_steps
        if sync_point or checkpoint:  # Never log or save past a non-finite step.
          fetched = _fetch_checked(pending, step, ckpt, c)
        if sync_point:
          _log_train(writer, exp, step, fetched, t0, since)
          pending, t0, since = [], time.perf_counter(), 0
        if eval_every and step % eval_every == 0 and len(exp.splits.val):
          val = runner.evaluate_split(exp, state, exp.splits.val)
          writer.write(step, "val", {k: v for k, v in val.items() if v == v})
          _log_val(step, val)
        if checkpoint:
          ckpt.save(step, state, it.get_state(), run_metadata(exp))
        # One process stops at once; several agree at logging steps (see StopRequests).
        if (sync_point if multi_process else stop.signum is not None) and stop.agreed():
          raise _StopNow
    except _StopNow:
      # Nothing lost on Ctrl-C or a scheduler's SIGTERM: save where we are, then stop.
      _fetch_checked(pending, step, ckpt, c)
      why = f"signal {stop.signum}" if stop.signum else "a signal to another process"
      if step > (ckpt.latest_step() or 0):
        ckpt.save(step, state, it.get_state(), run_metadata(exp))
      ckpt.close()
      raise _stopped(
        f"stopped by {why} after step {step}: saved checkpoint step {step} in "
        f"{ckpt.directory}; run the same command again to resume."
      ) from None
    except KeyboardInterrupt:
      # A second signal, inside a step or between: stop at once, save nothing more (a
      # step's donated state may be gone; several processes cannot save alone).
      ckpt.close()
      latest = ckpt.latest_step()
      kept = (
        f"the latest checkpoint, step {latest} in {ckpt.directory}, is intact: run the "
        "same command again to resume from it."
        if latest is not None
        else "no checkpoint had been saved."
      )
      raise _stopped(f"stopped at once by a second signal during step {step}: {kept}") from None
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
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  splits: DataSplits | None = None,
  allow_config_change: bool = False,
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
  state = train(exp, state, workdir, allow_config_change=allow_config_change)
  return runner.evaluate_and_write(exp, state, workdir)
