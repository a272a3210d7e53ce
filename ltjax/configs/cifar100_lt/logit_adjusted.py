"""CIFAR-100-LT with the logit-adjusted loss (Menon et al., "Long-tail learning via logit
adjustment", ICLR 2021, Eq. 10, tau = 1; google-research/logit_adjustment main.py --mode=loss):
its training schedule (batch 128, SGD Nesterov 0.9, lr 0.1 with a per-step linear warm-up, x0.1
at three milestones, 1,419 epochs, L2 1e-4, inputs x / 255 - 0.5) on the LDAM-DRW ResNet-32
(the official network is its own Keras ResNet-32: see ltjax.config.cifar_lt_logit_adjusted).

  ltjax train --config=cifar100_lt/logit_adjusted.py --workdir=runs/cifar100_lt/logit_adjusted --config.dataset.data_dir=DIR

Published figure: the official code's README reports 44.06% balanced test accuracy
for the logit-adjustment loss (ERM 39.87%) on CIFAR-100-LT (imbalance 100, its own EXP-100
cut of the same sizes). Balanced Softmax (Ren et al., NeurIPS 2020) is this loss at tau = 1
as well.
Data: the TFDS `cifar100` dataset as ArrayRecord (read without TensorFlow): run
`tfds build cifar100 --data_dir=DIR --file_format=array_record` once on a machine with
internet. Imbalance ratio 100 by default; add `--config.dataset.imbalance_ratio=50` (or 10).
Training set: the published CIFAR-LT cut of Cao et al. 2019 (`dataset.longtail=cao2019`), image
for image; validation: 20 images per class the cut leaves out (the head class's are training
images), never test (README, CIFAR-10-LT).
Two differences from the official training, not yet measured: its epoch is int(N / 128) = 84
steps (batches of 128, the remainder of N = 10,847 dropped), ltjax's N / 128 = 84.74, so ltjax
trains 120,250 steps against 119,196 (0.9% more), warms up over 1,864 steps against 1,848, and
decays 513, 786 and 957 steps later; its crop pads 2 px of mid-grey (resize_with_crop_or_pad to
36 on inputs in [-0.5, 0.5]), ltjax's 4 px of black (data.pad=4, pixel 0).
Not yet run to completion by the team (no CIFAR copy on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.cifar_lt(config_lib.base_config(), "cifar100")
  return config_lib.cifar_lt_logit_adjusted(c, "cifar100")
