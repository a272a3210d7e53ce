"""OLTR on Places-LT, ResNet-152, stage 1: fine-tuning from ImageNet weights with use_fc.

Reproduces zhmiao/OpenLongTailRecognition-OLTR config/Places_LT/stage_1.py: the ImageNet
(Caffe) ResNet-152 (caffe: True), not frozen (the README's 02/11/2020 change), use_fc (512 +
ReLU), instance sampling, 30 epochs, batch 128, SGD momentum 0.9, weight decay 5e-4, lrs
0.001 (feature model, use_fc included) / 0.1 (classifier), StepLR(10, 0.1) stepped after
every epoch.
The ImageNet-pretrained ResNet-152: a bare PyTorch state dict in the torchvision layout, at
--config.model.pretrained (default pretrained/caffe_resnet152.pth, as the reference's
./logs/caffe_resnet152.pth): the Caffe ResNet-152 that the OLTR README links ("Caffe
pretrained ResNet152 weights can be downloaded from here"), or torchvision's
resnet152-394f9c45.pth (https://download.pytorch.org/models/resnet152-394f9c45.pth). Its
ImageNet classifier (fc.*) is skipped. Needs PyTorch to read it: pip install 'ltjax[torch]'.
Without the file, training stops at once with an error naming this field.

  ltjax train --config=configs/places_lt/oltr_stage1.py --workdir=runs/places_oltr1 --config.model.pretrained=/data/caffe_resnet152.pth --config.dataset.root=/data/places365 --config.dataset.lists_dir=/data/Places_LT

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
  c = config_lib.places_lt(config_lib.base_config())
  c.model.backbone = "resnet152"
  c = config_lib.oltr_stage1(c)
  c.oltr.fc_add = 512
  c.model.pretrained = "pretrained/caffe_resnet152.pth"
  c.optim.lr, c.optim.head_lr = 0.001, 0.1
  return c
