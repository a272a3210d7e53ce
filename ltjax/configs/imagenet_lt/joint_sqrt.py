"""ImageNet-LT, ResNeXt-50 32x4d, representation learning with sqrt sampling.

Reproduces facebookresearch/classifier-balancing config/ImageNet_LT/feat_squareroot.yaml: 90
epochs, batch 512, SGD momentum 0.9, lr 0.2, weight decay 5e-4, cosine to 0 stepped at the
start of every epoch, RandomResizedCrop 224 + flip + ColorJitter 0.4, ImageNet mean/std,
from scratch.

  ltjax train --config=configs/imagenet_lt/joint_sqrt.py --workdir=runs/inlt_joint_sqrt --config.dataset.root=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

Numbers (Kang et al., ICLR 2020, ImageNet-LT, ResNeXt-50, as the classifier-balancing README
lists them), many / medium / few / all: square-root 64.3 / 41.2 / 17.0 / 46.8.
Deviations, all ltjax-wide (README, "Reference experiments"): an epoch is exactly N samples
(the reference drops each epoch's last partial batch); BatchNorm statistics span the global
batch (the reference's DataParallel computes them per GPU, which depends on the GPU count and
is not reproduced).
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.imagenet_lt(config_lib.base_config())
  c.model.backbone = "resnext50_32x4d"
  return config_lib.decoupling_joint(c, "sqrt")
