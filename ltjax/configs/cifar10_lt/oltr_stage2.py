"""CIFAR-10-LT OLTR stage 2 on the joint ResNet-32 (stage 1 = configs/cifar10_lt/joint.py):
modulated attention, dynamic meta-embedding with centroids, class-aware sampling, 60
epochs, lrs 0.01 / 0.1 / 0.01 (Liu et al.'s stage-2 recipe). Closed-set only: CIFAR-LT
has no open set (hold classes out with `--config.dataset.open_classes=(8,9)` in both
stages to evaluate open-set recognition).

  ltjax train --config=configs/cifar10_lt/joint.py --workdir=runs/cifar10_lt/joint --config.dataset.data_dir=DIR
  ltjax train --config=configs/cifar10_lt/oltr_stage2.py --workdir=runs/cifar10_lt/oltr --config.init_from=runs/cifar10_lt/joint --config.dataset.data_dir=DIR

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
  c = config_lib.oltr_stage2(config_lib.cifar_lt(config_lib.base_config(), "cifar10"))
  c.oltr.fc_add = 0  # Stage 1 is the plain joint run (joint.py): no use_fc layer.
  c.dataset.open_set = False  # The open-set list is a split-list dataset's; CIFAR has none.
  return c
