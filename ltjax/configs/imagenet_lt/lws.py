"""ImageNet-LT, ResNeXt-50 32x4d, LWS on the instance-balanced joint model.

Reproduces facebookresearch/classifier-balancing config/ImageNet_LT/cls_lws.yaml: the
stage-1 backbone fixed, one scale per class (the stage-1 classifier fixed) trained with
class-aware sampling (4 per class, shuffled within each batch), 5 epochs, batch 512, lr 0.2,
momentum 0.9, weight decay 5e-4, cosine to 0 stepped at the start of every epoch. As the
reference, the fixed backbone's BatchNorm runs in train mode and its statistics move
(update_frozen_bn); --config.update_frozen_bn=False keeps the stage-1 backbone bit-identical
instead (ltjax's choice elsewhere).

  ltjax train --config=configs/imagenet_lt/lws.py --workdir=runs/inlt_lws --config.init_from=runs/inlt_joint_instance --config.dataset.root=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

Numbers (Kang et al., ICLR 2020, ImageNet-LT, ResNeXt-50, as the classifier-balancing README
lists them), many / medium / few / all: LWS 60.2 / 47.2 / 30.3 / 49.9 (post hoc on the joint
model: NCM 56.6 / 45.3 / 28.1 / 47.3 and tau-norm 59.1 / 46.9 / 30.7 / 49.4, `ltjax evaluate
--posthoc`).
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
  return config_lib.decoupling_classifier(c, "lws")
