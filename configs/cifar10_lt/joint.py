"""CIFAR-10-LT joint training (representation learning), ResNet-32, instance sampling.

CIFAR-10-LT follows the community convention (Cui et al. 2019): the 50,000 training
images are cut to an exponential profile n_j = 5000 * ratio^(-j/9) (ratio 100:
5,000 down to 50 images, 12,406 in all); the balanced 10,000-image test set is kept.

Data: the TFDS `cifar10` dataset prepared as ArrayRecord (no TensorFlow needed to
read it): `tfds build cifar10 --data_dir=DIR --file_format=array_record` on a machine
with internet, then

  ltjax train --config=configs/cifar10_lt/joint.py --workdir=/tmp/c10lt \\
      --config.dataset.data_dir=DIR [--config.dataset.imbalance_ratio=50]

Not yet run to completion by the team (no CIFAR copy on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.base_config()
  c.dataset.name = "tfds"
  c.dataset.tfds_name = "cifar10"
  c.dataset.imbalance_ratio = 100.0
  c.dataset.n_max = 5000
  c.dataset.val_per_class = 0  # The convention has no validation split.
  c.dataset.mean, c.dataset.std = config_lib.CIFAR_MEAN, config_lib.CIFAR_STD
  c.data.augment = "crop_flip"
  c.data.pad = 4
  c.model.backbone = "cifar_resnet32"
  c.batch_size = 128
  c.num_epochs = 200
  c.optim.lr = 0.1
  c.optim.weight_decay = 2e-4
  c.optim.warmup_epochs = 5
  c.eval_every_epochs = 20
  return c
