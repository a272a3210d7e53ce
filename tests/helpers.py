"""Tiny configs and in-memory data for fast end-to-end tests."""

import importlib.util

import numpy as np

from ltjax.data.datasets import DataSplits
from ltjax.data.sources import ArraySource
from ltjax.demo import joint_config


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
  for k, v in overrides.items():
    node = c
    *parents, leaf = k.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


def load_config(path):
  """get_config() of a config file, as `ltjax --config=path` loads it."""
  spec = importlib.util.spec_from_file_location("config_under_test", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
