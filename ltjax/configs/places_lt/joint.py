"""Places-LT, ResNet-152, representation learning (instance sampling) from ImageNet weights.

classifier-balancing ships no Places-LT stage-1 config. This follows, fact by fact:
* the Decoupling paper (Kang et al., ICLR 2020, Sec. 5.1): ResNet-152 pretrained on the full
  ImageNet-2012, as Liu et al.; SGD momentum 0.9, batch 512, cosine lr 0.2 -> 0 for all
  experiments "if not specified";
* the authors' answers in classifier-balancing issues #2 and #4: everything frozen except
  the last block (layer4) and the classifier; "either 30 or 90 epochs" (30 here, as OLTR's
  Places-LT stage 1); a cosine schedule as the other datasets (stepped at the start of every
  epoch, as classifier-balancing's run_networks.py);
* classifier-balancing's run_networks.py: frozen parameters keep BatchNorm in train mode.
The ImageNet-pretrained ResNet-152: a bare PyTorch state dict in the torchvision layout, at
--config.model.pretrained (default pretrained/caffe_resnet152.pth, as the reference's
./logs/caffe_resnet152.pth): the Caffe ResNet-152 that the OLTR README links ("Caffe
pretrained ResNet152 weights can be downloaded from here"), or torchvision's
resnet152-394f9c45.pth (https://download.pytorch.org/models/resnet152-394f9c45.pth). Its
ImageNet classifier (fc.*) is skipped. Needs PyTorch to read it: pip install 'ltjax[torch]'.
Without the file, training stops at once with an error naming this field.

  ltjax train --config=configs/places_lt/joint.py --workdir=runs/places_joint --config.model.pretrained=/data/resnet152-394f9c45.pth --config.dataset.root=/data/places365 --config.dataset.lists_dir=/data/Places_LT

Paper (Kang et al., ICLR 2020, Table 4, Places-LT, ResNet-152): joint all 27.2 (many 45.9,
medium 22.4, few 0.36); NCM 36.4 and tau-norm 37.9 post hoc (`ltjax evaluate --posthoc`).
Deviations, all ltjax-wide (README, "Reference experiments"): an epoch is exactly N samples
(the reference drops each epoch's last partial batch); BatchNorm statistics span the global
batch (the reference's DataParallel computes them per GPU, which depends on the GPU count and
is not reproduced).
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.places_lt(config_lib.base_config())
  c.model.backbone = "resnet152"
  c = config_lib.decoupling_joint(c, "instance")
  c.num_epochs = 30
  c.model.pretrained = "pretrained/caffe_resnet152.pth"
  c.optim.freeze = ("^backbone/(conv1|bn1|layer[123]_)",)  # Only layer4 (and the head) train.
  return c
