"""iNaturalist 2018, ResNet-50, cRT on the joint model (configs/inat2018/joint.py).

Reproduces facebookresearch/classifier-balancing config/iNaturalist18/cls_crt.yaml: the
stage-1 backbone fixed, a re-initialised linear classifier trained with class-aware sampling
(4 per class, shuffled within each batch), 30 epochs, batch 512, lr 0.2, momentum 0.9,
weight decay 1e-4, cosine to 0 stepped at the start of every epoch; BatchNorm of the fixed
backbone in train mode as the reference (update_frozen_bn); iNaturalist mean/std, no colour
jitter.

  ltjax train --config=configs/inat2018/crt.py --workdir=runs/inat_crt --config.init_from=runs/inat_joint --config.dataset.root=/data/inat2018 --config.dataset.lists_dir=/data/iNat_lists

Paper (Kang et al., ICLR 2020, Table 3, iNaturalist 2018, ResNet-50, 90-epoch joint model):
cRT all 65.2.
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
  c = config_lib.decoupling_classifier(c, "crt")
  c.optim.weight_decay = 1e-4
  c.num_epochs = 30
  return c
