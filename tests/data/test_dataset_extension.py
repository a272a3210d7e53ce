"""Adding a dataset: one ``register(Dataset(...))`` entry beside the builder of its splits
(``ltjax/data/datasets/``), with its own ``config.dataset`` option, which the loop, the
evaluation and ``--help`` use without asking which it is. Copy it to add your own."""

import numpy as np
import pytest
from helpers import tiny_config

from ltjax.data import datasets
from ltjax.data.sources.base import ArraySource
from ltjax.train import experiment, loop


def build_stripes(cfg, seed, data_cfg=None):
  """A toy long-tailed dataset: 8x8 grey images whose class is a bright column at
  ``cfg.stripe`` x the class index (its own option), 30 / 15 / 8 / 4 training images."""
  del data_cfg
  rng = np.random.default_rng(seed)

  def make(counts):
    labels = np.repeat(np.arange(4), counts)
    images = rng.integers(0, 40, (len(labels), 8, 8, 1)).astype(np.uint8)
    images[np.arange(len(labels)), :, (labels * cfg.stripe) % 8, 0] = 250
    return ArraySource(images, labels, 4)

  return datasets.DataSplits(
    train=make([30, 15, 8, 4]),
    val=make([4] * 4),
    test=make([6] * 4),
    num_classes=4,
    class_names=("zero", "one", "two", "three"),
  )


STRIPES = datasets.Dataset(
  name="toy_stripes",
  build=build_stripes,
  summary="toy: one bright column per class",
  num_classes=4,
  fields=("stripe",),
)


@pytest.fixture
def stripes(monkeypatch):
  monkeypatch.setitem(datasets.DATASETS, STRIPES.name, STRIPES)


def stripes_config(**overrides):
  config = tiny_config(**{"dataset.name": STRIPES.name, **overrides})
  with config.unlocked():  # A real dataset adds its option's default to config.dataset.
    config.dataset.stripe = 2
  return config


def test_a_new_dataset_with_its_own_option_trains_and_evaluates(stripes, tmp_path):
  config = stripes_config()
  splits = datasets.build_splits(config.dataset, config.seed, config.data)
  assert splits.train_counts.tolist() == [30, 15, 8, 4]
  assert splits.train.get_batch(np.asarray([0]))[0][0, 0, 0, 0] == 250  # stripe 2, class 0.
  # The loop builds its splits from the table, trains, checkpoints and tests like any data.
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert set(summary) >= {"many", "medium", "few", "all"}
  assert 0.0 <= summary["all"] <= 1.0


def test_the_new_datasets_fields_are_its_own(stripes, caplog):
  config = stripes_config()
  # The table says which config.dataset fields it reads: the others set are named.
  config.dataset.imbalance_ratio = 3.0
  unread = datasets.unread_fields(config.dataset)
  assert "dataset.imbalance_ratio=3.0" in unread
  assert not any(field.startswith("dataset.stripe") for field in unread)
  # A run says so before any work, naming what the dataset reads instead.
  with caplog.at_level("WARNING"):
    experiment.checked(config)
  assert "not read by dataset toy_stripes, so without effect: dataset.imbalance_ratio=3.0" in (
    caplog.text
  )
  assert "Its fields: stripe." in caplog.text
  with pytest.raises(ValueError, match="'toy_stripe': unknown dataset; valid: .*'toy_stripes'"):
    datasets.get("toy_stripe")
