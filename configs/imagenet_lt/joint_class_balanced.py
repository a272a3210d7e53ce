"""ImageNet-LT, ResNeXt-50 32x4d, representation learning, class_balanced sampling.

  ltjax train --config=configs/imagenet_lt/joint_class_balanced.py \\
      --workdir=runs/inlt_joint_class_balanced \\
      --config.dataset.root=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

Paper target (Kang et al., ICLR 2020, ImageNet-LT, ResNeXt-50, joint): the class_balanced row of the
paper's sampling comparison (Fig. 1 / Table 1).
Not yet run by the team (no ImageNet copy or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.imagenet_lt(config_lib.base_config())
  c.model.backbone = "resnext50_32x4d"
  return config_lib.decoupling_joint(c, "class_balanced")
