"""iNaturalist 2018, ResNet-50, lws on a joint model (Kang et al.).

  ltjax train --config=configs/inat2018/lws.py --workdir=runs/inat2018_lws \\
      --config.init_from=runs/inat2018_joint \\
      --config.dataset.root=/data/inat2018 --config.dataset.lists_dir=/data/iNat_lists

Paper target (Kang et al., ICLR 2020): all-shot 65.9 (90-epoch joint model).
The joint model is trained with the same backbone and the dataset block of this
config (`config_lib.decoupling_joint`).
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.inat2018(config_lib.base_config())
  c.model.backbone = "resnet50"
  return config_lib.decoupling_classifier(c, "lws")
