"""iNaturalist 2018, ResNet-50, representation learning (instance sampling), 90 epochs.

  ltjax train --config=configs/inat2018/joint.py --workdir=runs/inat2018_joint \\
      --config.dataset.root=/data/inat2018 --config.dataset.lists_dir=/data/iNat_lists

Paper target (Kang et al., ICLR 2020, 90 epochs): joint all-shot 61.7.
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.inat2018(config_lib.base_config())
  c.model.backbone = "resnet50"
  return config_lib.decoupling_joint(c, "instance")
