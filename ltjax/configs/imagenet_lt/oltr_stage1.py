"""OLTR on ImageNet-LT, ResNet-10, stage 1: plain joint training, the model stage 2 starts from.

Reproduces zhmiao/OpenLongTailRecognition-OLTR config/ImageNet_LT/stage_1.py (newest):
instance sampling, 30 epochs, batch 128, SGD momentum 0.9, lr 0.1, weight decay 5e-4,
StepLR(10, 0.1) stepped after every epoch, no use_fc layer (the README's 12/19/2019 change;
stage 2 starts its fc_add fresh), from scratch.

  ltjax train --config=configs/imagenet_lt/oltr_stage1.py --workdir=runs/inlt_oltr1 --config.dataset.root=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

Stage 2's numbers are in oltr_stage2.py.
Deviations (README, "Reference experiments"): an epoch is exactly N samples (the reference
drops each epoch's last partial batch); the attention's output conv starts at zero, as the
paper's non-local block (the reference's ResNet initialisation loop overwrites it with N(0,
2/n)); BatchNorm statistics and the centroid update span the global batch, so stage 2 runs on
any number of devices (the reference supports one GPU).
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.imagenet_lt(config_lib.base_config())
  c.model.backbone = "resnet10"
  return config_lib.oltr_stage1(c)
