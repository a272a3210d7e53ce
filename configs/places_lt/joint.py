"""Places-LT, ResNet-152, representation learning (instance sampling).

  ltjax train --config=configs/places_lt/joint.py --workdir=runs/places_lt_joint \\
      --config.dataset.root=/data/places365 --config.dataset.lists_dir=/data/Places_LT

Paper target (Kang et al., ICLR 2020): joint all-shot 27.2. The paper fine-tunes an
ImageNet-pretrained ResNet-152 for 30 epochs; ltjax cannot download pretrained
weights, so this trains from scratch until an importer exists (see the issues), and
will fall short of the paper.
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.places_lt(config_lib.base_config())
  c.model.backbone = "resnet152"
  c = config_lib.decoupling_joint(c, "instance")
  c.num_epochs = 30
  return c
