"""iNaturalist 2018, ResNet-50, representation learning (instance sampling), 90 epochs.

Reproduces facebookresearch/classifier-balancing config/iNaturalist18/feat_unifrom.yaml
(sic): 90 epochs, batch 512, SGD momentum 0.9, lr 0.2, weight decay 1e-4, cosine to 0
stepped at the start of every epoch, RandomResizedCrop 224 + flip without colour jitter,
iNaturalist mean/std (0.466, 0.471, 0.380) / (0.195, 0.194, 0.192), from scratch; tested on
the val list.

  ltjax train --config=configs/inat2018/joint.py --workdir=runs/inat_joint --config.dataset.root=/data/inat2018 --config.dataset.lists_dir=/data/iNat_lists

Paper (Kang et al., ICLR 2020, Table 3, iNaturalist 2018, ResNet-50, 90 epochs): joint all
61.7; NCM 58.2 and tau-norm 65.6 post hoc (`ltjax evaluate --posthoc`).
Deviations, all ltjax-wide (README, "Reference experiments"): an epoch is exactly N samples
(the reference drops each epoch's last partial batch); BatchNorm statistics span the global
batch (the reference's DataParallel computes them per GPU, which depends on the GPU count and
is not reproduced).
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.inat2018(config_lib.base_config())
  c.model.backbone = "resnet50"
  c = config_lib.decoupling_joint(c, "instance")
  c.optim.weight_decay = 1e-4
  return c
