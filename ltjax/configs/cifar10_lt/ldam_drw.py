"""CIFAR-10-LT LDAM-DRW (Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware
Margin Loss", NeurIPS 2019; kaidic/LDAM-DRW cifar_train.py --loss_type LDAM --train_rule DRW):
ResNet-32 with the cosine classifier (model.head=normed_linear), the LDAM loss (max margin 0.5,
s = 30) and class-balanced re-weighting (beta 0.9999) deferred to epoch 160; 200 epochs, batch
128, lr 0.1 warmed up over 5 epochs, x0.01 at 160 and 180, weight decay 2e-4.

  ltjax train --config=cifar10_lt/ldam_drw.py --workdir=runs/cifar10_lt/ldam_drw --config.dataset.data_dir=DIR

Published figure (Table 2, ResNet-32, imbalance ratio 100, top-1 error on the balanced test
set, selected on test): LDAM-DRW 22.97% (77.0) (ratio 10: 11.84%).
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
  return config_lib.cifar_lt_ldam_drw(config_lib.cifar_lt(config_lib.base_config(), "cifar10"))
