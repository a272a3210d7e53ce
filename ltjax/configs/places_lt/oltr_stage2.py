"""OLTR on Places-LT, ResNet-152, stage 2: dynamic meta-embedding, open-set evaluation.

Reproduces zhmiao/OpenLongTailRecognition-OLTR config/Places_LT/stage_2_meta_embedding.py
(newest): the ResNet-152 fixed (fix: True; the modulated attention and use_fc, which the
reference's freeze filter spares, train), BatchNorm in train mode (the reference calls
model.train() on every network); meta-embedding head, centroids loss weight 0.01, class-
aware sampling (4 per class); 30 epochs, batch 128, SGD momentum 0.9, weight decay 5e-4, lrs
0.0001 (attention, use_fc) / 0.01 (classifier) / 0.01 (centroids), StepLR(10, 0.1) stepped
after every epoch; open-set test (Places_LT_open.txt).

  ltjax train --config=configs/places_lt/oltr_stage2.py --workdir=runs/places_oltr2 --config.init_from=runs/places_oltr1 --config.dataset.root=/data/places365 --config.dataset.lists_dir=/data/Places_LT

Numbers: Liu et al., CVPR 2019, Places-LT: closed-set overall 35.9 (many 44.7, medium 37.0,
few 25.3), open-set F-measure 0.464; the reference README's reproduced open-set run
(03/05/2020): many 43.7, medium 40.2, few 28.0, F-measure 50.0.
Deviations (README, "Reference experiments"): an epoch is exactly N samples (the reference
drops each epoch's last partial batch); the attention's output conv starts at zero, as the
paper's non-local block (the reference's ResNet initialisation loop overwrites it with N(0,
2/n)); BatchNorm statistics and the centroid update span the global batch, so stage 2 runs on
any number of devices (the reference supports one GPU).
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.places_lt(config_lib.base_config())
  c.model.backbone = "resnet152"
  c = config_lib.oltr_stage2(c)
  c.optim.freeze = ("^backbone/",)
  c.optim.lr, c.optim.head_lr = 1e-4, 0.01
  c.num_epochs, c.optim.step_every_epochs = 30, 10
  return c
