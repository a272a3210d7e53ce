"""OLTR on ImageNet-LT, ResNet-10, stage 2: dynamic meta-embedding, open-set evaluation.

Reproduces zhmiao/OpenLongTailRecognition-OLTR config/ImageNet_LT/stage_2_meta_embedding.py
(newest): modulated attention, use_fc (512 + ReLU, fresh: the newest stage 1 has none), the
meta-embedding head, the discriminative centroids loss (weight 0.01); class-aware sampling,
4 per class; 60 epochs, batch 128, SGD momentum 0.9, weight decay 5e-4, lrs 0.01 (feature
model) / 0.1 (classifier) / 0.01 (centroids), StepLR(20, 0.1) stepped after every epoch;
open-set test (ImageNet_LT_open.txt).

  ltjax train --config=configs/imagenet_lt/oltr_stage2.py --workdir=runs/inlt_oltr2 --config.init_from=runs/inlt_oltr1 --config.dataset.root=/data/imagenet --config.dataset.lists_dir=/data/ImageNet_LT

Numbers: Liu et al., CVPR 2019, ImageNet-LT, closed-set overall 35.6 (many 43.2, medium
35.1, few 18.5), open-set F-measure 0.474; the reference README's reproduced open-set run
(03/05/2020): many 44.2, medium 35.2, few 17.5, F-measure 44.6.
Deviations (README, "Reference experiments"): an epoch is exactly N samples (the reference
drops each epoch's last partial batch); the attention's output conv starts at zero, as the
paper's non-local block (the reference's ResNet initialisation loop overwrites it with N(0,
2/n)); BatchNorm statistics and the centroid update span the global batch, so stage 2 runs on
any number of devices (the reference supports one GPU).
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.imagenet_lt(config_lib.base_config())
  c.model.backbone = "resnet10"
  return config_lib.oltr_stage2(c)
