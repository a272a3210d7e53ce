"""Places-LT, ResNet-152, LWS on the joint model (configs/places_lt/joint.py).

Reproduces facebookresearch/classifier-balancing config/Places_LT/cls_lws.yaml: the stage-1
backbone fixed, one scale per class (the stage-1 classifier fixed) trained with class-aware
sampling (4 per class, shuffled within each batch), 5 epochs, batch 256, lr 0.1 (the
classifier's; the fixed feature model's 0.01 is unused), momentum 0.9, weight decay 5e-4,
cosine to 0 stepped at the start of every epoch; BatchNorm of the fixed backbone in train
mode as the reference (update_frozen_bn).

  ltjax train --config=configs/places_lt/lws.py --workdir=runs/places_lws --config.init_from=runs/places_joint --config.dataset.root=/data/places365 --config.dataset.lists_dir=/data/Places_LT

Paper (Kang et al., ICLR 2020, Table 4, Places-LT, ResNet-152), many / medium / few / all:
LWS 40.6 / 39.1 / 28.6 / 37.6.
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
  c = config_lib.decoupling_classifier(c, "lws")
  c.batch_size, c.optim.lr = 256, 0.1
  return c
