"""OLTR on ImageNet-LT, ResNet-10, stage 1 (plain joint training; the model stage 2 starts from).

  ltjax train --config=configs/imagenet_lt/oltr_stage1.py --workdir=runs/imagenet_lt_oltr1 \\
      --config.dataset.root=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

Stage 2 target (Liu et al., CVPR 2019): many 43.2, medium 35.1, few 18.5,
closed-set overall 35.6, open-set F-measure 0.474.
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.imagenet_lt(config_lib.base_config())
  c.model.backbone = "resnet10"
  c = config_lib.oltr_stage1(c)
  c.batch_size = 256  # The reference config (stage_1.py).
  return c
