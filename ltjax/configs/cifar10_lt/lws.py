"""CIFAR-10-LT LWS: the joint ResNet-32 and its classifier frozen, one scale per class learnt
with class-aware sampling (k=4), 5 epochs (Kang et al.'s recipe).

  ltjax train --config=configs/cifar10_lt/joint.py --workdir=runs/cifar10_lt/joint --config.dataset.data_dir=DIR
  ltjax train --config=configs/cifar10_lt/lws.py --workdir=runs/cifar10_lt/lws --config.init_from=runs/cifar10_lt/joint --config.dataset.data_dir=DIR

The Decoupling paper has no CIFAR experiment and gives no CIFAR figure: this is its
classifier recipe (classifier-balancing config/*/cls_lws.yaml: batch 512, lr 0.2, cosine,
weight decay 5e-4) unchanged, on the cross-entropy representation of joint.py. Any loss
trains the classifier (`--config.loss.name=class_balanced|focal|logit_adjusted`; `ldam`
with cRT and `--config.model.head=normed_linear`; README, "Losses").

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
  return config_lib.decoupling_classifier(c, "lws")
