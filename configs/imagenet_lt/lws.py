"""ImageNet-LT, ResNeXt-50 32x4d, lws on the instance-balanced joint model (Kang et al.).

  ltjax train --config=configs/imagenet_lt/lws.py --workdir=runs/inlt_lws \\
      --config.init_from=runs/inlt_joint_instance \\
      --config.dataset.root=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

Paper target (Kang et al., ICLR 2020, Table 2): many 60.2, medium 47.2, few 30.3, all 49.9
(NCM 47.3 and tau-norm 49.4 all-shot come post-hoc from the joint model).
Not yet run by the team (no ImageNet copy or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.imagenet_lt(config_lib.base_config())
  c.model.backbone = "resnext50_32x4d"
  return config_lib.decoupling_classifier(c, "lws")
