"""Tiny configs and in-memory data for fast end-to-end tests."""

import os
import subprocess
import sys

import numpy as np

from ltjax.data.datasets import DataSplits
from ltjax.data.sources import ArraySource
from ltjax.demo import joint_config, oltr_config


def tiny_splits(num_classes=4, size=8, channels=1, seed=0, counts=(24, 12, 6, 3)):
  """Long-tailed random images whose class is encoded in the mean brightness."""
  rng = np.random.default_rng(seed)
  counts = list(counts)[:num_classes]

  def make(n_per_class):
    labels = np.repeat(np.arange(num_classes), n_per_class)
    images = (
      rng.integers(0, 60, (len(labels), size, size, channels)) + labels[:, None, None, None] * 50
    )
    return ArraySource(images.astype(np.uint8), labels, num_classes)

  train = make(counts)
  return DataSplits(
    train=train, val=make([4] * num_classes), test=make([4] * num_classes), num_classes=num_classes
  )


def set_num_classes(monkeypatch, dataset, num_classes):
  """Makes the dataset table's ``dataset`` (e.g. imagenet_lt) a ``num_classes``-class one for
  the duration of a test (tiny generated lists)."""
  import dataclasses

  from ltjax.data import datasets

  entry = dataclasses.replace(datasets.get(dataset), num_classes=num_classes)
  monkeypatch.setitem(datasets.DATASETS, dataset, entry)


def _override(c, overrides):
  for k, v in overrides.items():
    node = c
    *parents, leaf = k.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


def tiny_config(**overrides):
  c = joint_config()
  c.batch_size = 16
  c.eval.batch_size = 16
  c.num_epochs = 1
  c.model.width = 1
  c.log_every_steps = 1
  c.eval_every_epochs = 0
  c.checkpoint_every_steps = 2
  c.data.num_threads = 1
  if overrides.get("data.augment", c.data.augment) != c.data.augment:
    c.data.pad, c.data.flip = 4, True  # Digits' crop_flip options, which another never reads.
  return _override(c, overrides)


def stop_config(**overrides):
  """tiny_config for 12 steps, logging every 4, checkpoints only at a stop and the end."""
  return tiny_config(
    **{"num_epochs": 4, "log_every_steps": 4, "checkpoint_every_steps": 100, **overrides}
  )


def tiny_stage2_config(joint_dir, **overrides):
  """OLTR stage 2 (the demo's recipe) on top of a tiny_config joint run in joint_dir."""
  c = oltr_config(joint_dir)
  base = tiny_config()
  for key in ("batch_size", "num_epochs", "log_every_steps", "checkpoint_every_steps"):
    c[key] = base[key]
  c.eval.batch_size = base.eval.batch_size
  c.model.width = base.model.width
  c.data.num_threads = 1
  return _override(c, overrides)


def flat_state(state) -> dict:
  """{"params/<path>": array, "batch_stats/...", "centroids/c"} of a train state (each of the
  stage's own arrays as "<name>/c"), on host."""
  import jax

  from ltjax.train.optim import param_path

  trees = {"params": state.params, "batch_stats": state.batch_stats}
  for name, array in (state.extra or {}).items():
    trees[name] = {"c": array}
  return {
    f"{name}/{param_path(p)}": np.asarray(jax.device_get(v))
    for name, tree in trees.items()
    for p, v in jax.tree_util.tree_leaves_with_path(tree)
  }


def run_ltjax(*args, cwd):
  """`python -m ltjax.cli ARGS` in cwd, as a user runs it (one CPU device)."""
  env = dict(os.environ, XLA_FLAGS="")
  return subprocess.run(
    [sys.executable, "-m", "ltjax.cli", *args],
    capture_output=True,
    text=True,
    cwd=cwd,
    env=env,
    timeout=300,
  )


def load_config(path):
  """get_config() of a config file, as `ltjax --config=path` loads it."""
  from ltjax import config as config_lib

  return config_lib.load_file(path)


def shrink_imagenet_config(c, num_epochs=1):
  """An ImageNet-size config made cheap for a 4-class image tree: small backbone and crops,
  batch 8, shot thresholds 10/3 so that each shot group has classes."""
  c.model.backbone = "cifar_resnet8"
  c.data.crop_size = 16
  c.data.num_threads = 2
  c.batch_size = c.eval.batch_size = 8
  c.num_epochs = num_epochs
  c.eval.many_threshold, c.eval.few_threshold = 10, 3
  return short_run(c)


def short_run(c):
  """A reference config cut to an epoch or two: its per-epoch cosine, set before each epoch,
  would run the one epoch at lr 0 (refused), so the rate follows the steps instead."""
  if c.optim.lr_update == "epoch_start" and c.num_epochs < 2:
    c.optim.lr_update = "step"
  return c


#: A row of results.json of a closed-set run tested at its last step.
CLOSED_SET_KEYS = {"many", "medium", "few", "all", "mean_class", "ece", "nll"}
CLOSED_SET_KEYS |= {"selection", "selected_step", "selected_epoch", "computed_with"}
#: Top-5 accuracy, reported with more than 5 classes only.
TOP5_KEYS = {"top5_many", "top5_medium", "top5_few", "top5_all"}


def expected_first_step(exp, state, batch):
  """(loss, params after one step) of ``exp`` from ``state`` on the host ``batch``, recomputed
  outside the train step: the model's training forward, the stage's loss, its gradient by
  ``jax.grad``, and PyTorch SGD's first update p - lr_group(0) * (g + wd_group * p) (momentum
  starts at zero), with frozen parameters (the stage's, ``optim.freeze``, ``model.peft``'s)
  unchanged."""
  import jax  # Deferred like the other jax users here: conftest sets XLA_FLAGS first.

  from ltjax.train import optim, steps

  config, stage = exp.config, exp.stage
  tree = jax.device_get(steps.trainable(state))
  stats = jax.device_get(state.batch_stats)
  x = steps.normalize(np.asarray(batch["image"]), config.dataset.mean, config.dataset.std)

  def loss_fn(tree):
    variables = {"params": tree["params"], "batch_stats": stats}
    extra = {k: v for k, v in tree.items() if k != "params"} or None
    (logits, aux), _ = exp.model.apply(
      variables,
      x,
      train=True,
      mutable=["batch_stats"],
      **stage.apply_kwargs(),
      **stage.model_inputs(extra),
    )
    labels = np.asarray(batch["label"])
    return exp.loss_fn(logits, aux, labels, extra, 0)[0]

  loss, grads = jax.value_and_grad(loss_fn)(tree)
  from ltjax.models import backbones  # The fine-tuning method's frozen part (model.peft).

  frozen = (
    stage.freeze
    + tuple(config.optim.freeze)
    + backbones.from_config(config.model).frozen_patterns()
  )
  labels = optim.group_labels(tree, frozen)
  hyper = optim.from_config(config).group_hyperparameters(stage.extra_groups())

  def update(label, p, g):
    if label == "frozen":
      return p
    lr, _, wd = hyper[label]
    lr0 = optim.from_config(config).lr_schedule(len(exp.splits.train), lr)(0)
    return p - lr0 * (g + wd * p)

  return float(loss), jax.tree.map(update, labels, tree, grads)


def first_step(config, splits=None):
  """(start state, state after one train step, recomputed (loss, params) of
  ``expected_first_step``, step metrics, host batch) of ``config``, states on the host."""
  import jax

  from ltjax import sharding
  from ltjax.train import experiment

  exp, state = experiment.setup(config, splits or tiny_splits())
  start = jax.device_get(exp.stage.start(exp, state))
  batch = experiment.make_stream(exp)(0)
  expected = expected_first_step(exp, start, batch)
  state, metrics = exp.train_step(
    jax.device_put(start, exp.state_sharding),
    sharding.to_global(batch, sharding.batch_sharding(exp.mesh)),
  )
  return start, jax.device_get(state), expected, metrics, batch


def write_state_dict(config, splits, path, seed=0):
  """A random bare PyTorch state dict (torchvision layout) for ``config``'s backbone, as
  ``model.pretrained`` reads it; torch.save'd to ``path``."""
  import jax
  import torch
  from flax import traverse_util

  from ltjax.models import torch_weights
  from ltjax.train import experiment

  plain = config.copy_and_resolve_references()
  plain.model.pretrained, plain.stage, plain.model.head = "", "joint", "linear"
  _, state = experiment.setup(plain, splits)
  rng = np.random.default_rng(seed)
  out = {}
  for collection in ("params", "batch_stats"):
    tree = jax.device_get(getattr(state, collection))["backbone"]
    for sub, value in traverse_util.flatten_dict(tree).items():
      full = ("backbone", *sub)
      _, key = torch_weights.torch_name(full, collection)
      value = np.asarray(value)
      if value.ndim == 4:
        value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
      noise = rng.uniform(0.9, 1.1, value.shape) if collection == "batch_stats" else 1.0
      out[key] = torch.from_numpy(np.ascontiguousarray(value * noise, np.float32))
  torch.save(out, path)
  return path


def own_data_config(root, data=None, **dataset):
  """The custom/ configs' base on the own-data tree at ``root``: ``dataset`` fields as
  keywords, ``data`` fields as a dict."""
  from ltjax import config as config_lib

  c = config_lib.custom_data(config_lib.base_config())
  c.dataset.root = str(root)
  c.dataset.update(dataset)
  c.data.update(data or {})
  return c


def augreg_npz(path, patch=4, width=32, depth=2, heads=2, mlp=64, grid=4, classes=5, seed=0):
  """A random AugReg ViT in the names and layouts of google-research/vision_transformer's
  ``.npz`` (what timm's ``_load_weights`` reads), with its 21k-style classifier."""
  rng = np.random.default_rng(seed)
  normal = lambda *shape: (0.2 * rng.standard_normal(shape)).astype(np.float32)
  scale = lambda n: (1 + 0.2 * rng.standard_normal(n)).astype(np.float32)
  hd = width // heads
  w = {
    "embedding/kernel": normal(patch, patch, 3, width),
    "embedding/bias": normal(width),
    "cls": normal(1, 1, width),
    "Transformer/posembed_input/pos_embedding": normal(1, grid * grid + 1, width),
    "Transformer/encoder_norm/scale": scale(width),
    "Transformer/encoder_norm/bias": normal(width),
    "head/kernel": normal(width, classes),
    "head/bias": normal(classes),
  }
  for i in range(depth):
    b = f"Transformer/encoderblock_{i}/"
    mha = b + "MultiHeadDotProductAttention_1/"
    for ln in ("LayerNorm_0", "LayerNorm_2"):
      w[f"{b}{ln}/scale"], w[f"{b}{ln}/bias"] = scale(width), normal(width)
    for n in ("query", "key", "value"):
      w[f"{mha}{n}/kernel"] = normal(width, heads, hd) / np.sqrt(width / 4)
      w[f"{mha}{n}/bias"] = normal(heads, hd)
    w[f"{mha}out/kernel"], w[f"{mha}out/bias"] = normal(heads, hd, width), normal(width)
    w[f"{b}MlpBlock_3/Dense_0/kernel"], w[f"{b}MlpBlock_3/Dense_0/bias"] = (
      normal(width, mlp),
      normal(mlp),
    )
    w[f"{b}MlpBlock_3/Dense_1/kernel"], w[f"{b}MlpBlock_3/Dense_1/bias"] = (
      normal(mlp, width),
      normal(width),
    )
  np.savez(path, **w)
  return str(path), w
