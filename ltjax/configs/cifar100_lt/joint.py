"""CIFAR-100-LT joint training (representation learning), ResNet-32, instance sampling.

  ltjax train --config=configs/cifar100_lt/joint.py --workdir=runs/cifar100_lt/joint --config.dataset.data_dir=DIR

NCM and tau-norm on top of it (selected on the validation split, never on test):

  ltjax evaluate --config=configs/cifar100_lt/joint.py --workdir=runs/cifar100_lt/joint --config.dataset.data_dir=DIR --posthoc

Other samplers: `--config.sampler.name=class_balanced|sqrt|progressive|class_aware`.
Reference figures (ResNet-32, imbalance ratio 100, top-1 on the balanced test set): Cao et al.,
"Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss", NeurIPS 2019,
Table 2: cross-entropy ("ERM") error 61.68% (accuracy 38.3), their LDAM-DRW 57.96%
(42.0). Kang et al. and Liu et al. report no CIFAR-LT figures.
Data: the TFDS `cifar100` dataset as ArrayRecord (read without TensorFlow): run
`tfds build cifar100 --data_dir=DIR --file_format=array_record` once on a machine with
internet. Imbalance ratio 100 by default; add `--config.dataset.imbalance_ratio=50` (or 10).
Training set: the published CIFAR-LT cut of Cao et al. 2019 (`dataset.longtail=cao2019`), image
for image; validation: 20 images per class the cut leaves out (the head class's are training
images), never test (README, CIFAR-10-LT).
Not yet run to completion by the team (no CIFAR copy on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  return config_lib.cifar_lt_joint(config_lib.cifar_lt(config_lib.base_config(), "cifar100"))
