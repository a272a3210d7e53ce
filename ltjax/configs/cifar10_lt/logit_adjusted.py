"""CIFAR-10-LT with the logit-adjusted loss (Menon et al., "Long-tail learning via logit
adjustment", ICLR 2021, Eq. 10, tau = 1; google-research/logit_adjustment main.py --mode=loss):
its training schedule (batch 128, SGD Nesterov 0.9, lr 0.1 with a per-step linear warm-up, x0.1
at three milestones, 1,241 epochs, L2 1e-4, inputs x / 255 - 0.5) on the LDAM-DRW ResNet-32
(the official network is its own Keras ResNet-32: see ltjax.config.cifar_lt_logit_adjusted).

  ltjax train --config=cifar10_lt/logit_adjusted.py --workdir=runs/cifar10_lt/logit_adjusted --config.dataset.data_dir=DIR

Published figure: the official code's README reports 77.89% balanced test accuracy
for the logit-adjustment loss (ERM 71.36%) on CIFAR-10-LT (imbalance 100, its own EXP-100
cut of the same sizes). Balanced Softmax (Ren et al., NeurIPS 2020) is this loss at tau = 1
as well.
Data: the TFDS `cifar10` dataset as ArrayRecord (read without TensorFlow): run
`tfds build cifar10 --data_dir=DIR --file_format=array_record` once on a machine with
internet. Imbalance ratio 100 by default; add `--config.dataset.imbalance_ratio=50` (or 10).
Training set: the published CIFAR-LT cut of Cao et al. 2019 (`dataset.longtail=cao2019`), image
for image; validation: 20 images per class the cut leaves out (the head class's are training
images), never test (README, CIFAR-10-LT).
Not yet run to completion by the team (no CIFAR copy on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.cifar_lt(config_lib.base_config(), "cifar10")
  return config_lib.cifar_lt_logit_adjusted(c, "cifar10")
