"""``ltjax demo``: the whole pipeline on digits-LT, the embedded default dataset.

digits-LT: scikit-learn's 1,797 handwritten digits (8x8, 10 classes). Per class, 30
images form a balanced test set and 20 a balanced validation set; the rest is cut to
an exponential long tail with imbalance ratio 20 (about 120 images for class 0 down
to 6 for class 9). Shot thresholds are scaled to this size: many n_j > 60, few n_j < 20.
"""

from __future__ import annotations

import logging
import os

import ml_collections

from ltjax import config as config_lib

log = logging.getLogger(__name__)


def joint_config() -> ml_collections.ConfigDict:
  """Joint training (instance-balanced sampling) on digits-LT: a few minutes on 2 CPU cores."""
  c = config_lib.base_config()
  c.dataset.name = "digits"
  c.dataset.imbalance_ratio = 20.0
  c.dataset.val_per_class = 20
  c.dataset.test_per_class = 30
  c.dataset.mean, c.dataset.std = config_lib.DIGITS_MEAN, config_lib.DIGITS_STD
  c.data.augment = "crop_flip"
  c.data.pad = 1
  c.data.flip = False  # Mirrored digits are other symbols.
  c.model.backbone = "cifar_resnet8"
  c.model.width = 2
  c.batch_size = 64
  c.num_epochs = 30
  c.optim.lr = 0.05
  c.optim.schedule = "cosine"
  c.log_every_steps = 20
  c.eval_every_epochs = 10
  c.checkpoint_every_steps = 200
  c.eval.batch_size = 128
  c.eval.many_threshold = 60
  c.eval.few_threshold = 20
  return c


def run(workdir: str) -> dict:
  """Runs every stage of the demo in ``workdir`` and returns results.json's content."""
  from ltjax.train import loop  # noqa: PLC0415

  os.makedirs(workdir, exist_ok=True)
  log.info("demo: joint training on digits-LT in %s", workdir)
  loop.train_and_evaluate(joint_config(), os.path.join(workdir, "joint"))
  import json  # noqa: PLC0415

  with open(os.path.join(workdir, "joint", "results.json")) as f:
    joint = json.load(f)
  results = {"joint": joint["joint"]}
  from ltjax.evaluate.runner import update_json  # noqa: PLC0415

  for method, summary in results.items():
    update_json(os.path.join(workdir, "results.json"), method, summary)
  return results
