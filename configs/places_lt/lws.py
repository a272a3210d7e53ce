"""Places-LT, ResNet-152, lws on a joint model (Kang et al.).

  ltjax train --config=configs/places_lt/lws.py --workdir=runs/places_lt_lws \\
      --config.init_from=runs/places_lt_joint \\
      --config.dataset.root=/data/places365 --config.dataset.lists_dir=/data/Places_LT

Paper target (Kang et al., ICLR 2020): all-shot 37.6.
The joint model is trained with the same backbone and the dataset block of this
config (`config_lib.decoupling_joint`); the paper starts Places-LT from an
ImageNet-pretrained ResNet-152, which ltjax cannot download: import one first (see the
issues).
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.places_lt(config_lib.base_config())
  c.model.backbone = "resnet152"
  return config_lib.decoupling_classifier(c, "lws")
