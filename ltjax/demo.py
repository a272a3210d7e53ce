"""``ltjax demo``: the whole pipeline on digits-LT, the embedded default dataset.

digits-LT: scikit-learn's 1,797 handwritten digits (8x8, 10 classes). Digits 8 and 9
are the open set: never trained on, their 60 test images are labelled -1 (unknown).
Per class, 30 images form a balanced test set and 20 (known classes) a balanced
validation set; the rest of the 8 known classes is cut to an exponential long tail with
imbalance ratio 20 (127 images, the smallest known class's remaining pool, for digit 0
down to 6 for digit 7). Shot thresholds are
scaled to this size: many n_j > 60, few n_j < 20.
"""

from __future__ import annotations

import logging
import os

import ml_collections

from ltjax import config as config_lib
from ltjax import files
from ltjax.stop import STOP

log = logging.getLogger(__name__)


def joint_config() -> ml_collections.ConfigDict:
  """Joint training (instance-balanced sampling) on digits-LT: a few minutes on 2 CPU cores."""
  c = config_lib.base_config()
  c.dataset.name = "digits"
  c.dataset.imbalance_ratio = 20.0
  c.dataset.val_per_class = 20
  c.dataset.test_per_class = 30
  c.dataset.open_classes = (8, 9)
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


def logit_adjusted_config() -> ml_collections.ConfigDict:
  """Joint training on digits-LT with the logit-adjusted loss (Menon et al., ICLR 2021,
  tau = 1, i.e. Balanced Softmax): the joint recipe, another loss."""
  c = joint_config()
  c.method = "logit_adjusted"
  c.loss.name, c.loss.tau = "logit_adjusted", 1.0
  return c


def crt_config(init_from: str = "") -> ml_collections.ConfigDict:
  """cRT on digits-LT: the joint backbone frozen, a new linear classifier trained with
  class-aware sampling (k=4), 10 epochs, cosine schedule (Kang et al. Sec. 4)."""
  c = joint_config()
  c.stage = c.method = "crt"
  c.init_from = init_from
  c.sampler.name = "class_aware"
  c.sampler.k = 4
  c.num_epochs = 10
  c.eval_every_epochs = 0
  return c


def lws_config(init_from: str = "") -> ml_collections.ConfigDict:
  """LWS on digits-LT: joint backbone and classifier frozen, one scale per class learnt
  with class-aware sampling (k=4), 5 epochs, cosine schedule."""
  c = crt_config(init_from)
  c.stage = c.method = "lws"
  c.model.head = "lws"
  c.num_epochs = 5
  return c


def _train_stage(config, stage_dir: str, workdir: str):
  """Trains (or resumes) one stage, records its test results in ``workdir``."""
  from ltjax.evaluate import runner
  from ltjax.train import experiment, loop, restore

  log.info("demo: %s", config.method)
  STOP.check()
  exp, state = experiment.setup(config)
  state = loop.train(exp, state, stage_dir, warn_if_finished=False)  # run() said it once.
  state, selected = restore.tested_model(exp, state, stage_dir)
  runner.evaluate_and_write(exp, state, workdir, config.method, extra=selected)
  return exp, state


def oltr_config(init_from: str = "") -> ml_collections.ConfigDict:
  """OLTR stage 2 on digits-LT: modulated attention + meta-embedding head with centroids,
  class-aware sampling (k=4), SGD lrs 0.01 (backbone) / 0.1 (head) / 0.01 (centroids),
  step schedule /10 every 10 epochs over 30 epochs (the reference: 60 epochs, every 20)."""
  c = joint_config()
  c.stage = c.method = "oltr"
  c.init_from = init_from
  c.model.head = "meta_embedding"
  c.sampler.name, c.sampler.k = "class_aware", 4
  c.num_epochs = 30
  c.optim.lr, c.optim.head_lr = 0.01, 0.1
  c.optim.schedule, c.optim.step_every_epochs, c.optim.step_gamma = "step", 10, 0.1
  c.eval_every_epochs = 0
  return c


def _check_earlier_demo(workdir: str, configs) -> None:
  """A ``workdir`` holding an earlier demo: of other settings (``--dtype``), a ValueError
  naming them and ``--workdir`` (``ltjax demo``'s flags: resuming under another config is
  not the demo's to allow); of the same, one line saying its stages are reused."""
  from ltjax.train import workdir as workdir_lib

  earlier = []
  for config in configs:
    saved = workdir_lib.read_config(os.path.join(workdir, config.method))
    if saved is None:
      continue
    earlier.append(config.method)
    changed, _ = workdir_lib.config_changes(saved, config, config_lib.base_config())
    if changed:
      raise ValueError(
        f"{workdir} holds a demo of other settings ({config.method}/: {'; '.join(changed)}): "
        f"pass --workdir=OTHER_DIR to run this one in another directory, or delete {workdir} "
        "to replace it."
      )
  if earlier:
    log.warning(
      "%s holds an earlier demo (%s): finished stages are reused and evaluated again, "
      "unfinished ones resume. Use another --workdir for a fresh demo.",
      workdir,
      ", ".join(earlier),
    )


def run(workdir: str, dtype: str = "float32", seed: int = 0) -> dict:
  """Runs the demo in ``workdir``: joint, then NCM, cRT, tau-norm, post-hoc logit
  adjustment, LWS and OLTR on top; and joint training with the logit-adjusted loss.

  Every stage resumes from its checkpoints if ``workdir`` holds a previous run (of the
  same ``dtype`` and ``seed``: use a fresh ``workdir`` for others).

  Args:
    workdir: where the stages' checkpoints and the results go.
    dtype: the models' computation dtype (``model.dtype``): float32 or bfloat16.
    seed: ``config.seed`` of every stage (data split, sampling, initialisation).

  Returns:
    results.json's content.
  """
  from ltjax.evaluate import posthoc, report

  joint_dir = os.path.join(workdir, "joint")

  def adjust(config):
    config.model.dtype, config.seed = dtype, seed
    return config

  joint, *later = [
    adjust(joint_config()),
    adjust(crt_config(joint_dir)),
    adjust(lws_config(joint_dir)),
    adjust(oltr_config(joint_dir)),
    adjust(logit_adjusted_config()),
  ]
  _check_earlier_demo(workdir, [joint, *later])
  os.makedirs(workdir, exist_ok=True)
  exp, state = _train_stage(joint, joint_dir, workdir)
  log.info("demo: NCM, tau-norm and post-hoc logit adjustment on the joint model's features")
  posthoc.evaluate_all(exp, state, workdir, os.path.join(joint_dir, "features"))
  for config in later:
    _train_stage(config, os.path.join(workdir, config.method), workdir)
  report.write_report(workdir)
  results = files.read_json(os.path.join(workdir, "results.json"))
  return {m: results[m] for m in report.ordered_methods(results)}
