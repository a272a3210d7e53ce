"""OLTR on Places-LT, ResNet-152, stage 2 (dynamic meta-embedding, open-set evaluation).

  ltjax train --config=configs/places_lt/oltr_stage2.py --workdir=runs/places_lt_oltr2 \\
      --config.init_from=runs/places_lt_oltr1 \\
      --config.dataset.root=/data/places365 --config.dataset.lists_dir=/data/Places_LT

Paper target (Liu et al., CVPR 2019): many 44.7, medium 37.0, few 25.3, open-set F-measure 0.464.
The paper starts Places-LT from an ImageNet-pretrained ResNet-152, which ltjax cannot
download yet: until a weight importer exists, stage 1 trains from scratch and will fall
short of the paper.
Not yet run by the team (no copy of the data or accelerator on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.places_lt(config_lib.base_config())
  c.model.backbone = "resnet152"
  c = config_lib.oltr_stage2(c)
  # The reference Places-LT stage 2 (stage_2_meta_embedding.py): the ResNet-152 is fixed
  # (only the attention and the use_fc layer of the feature model train, at lr 1e-4),
  # meta-embedding head lr 0.01, 30 epochs, lr divided by 10 every 10, batch 128.
  c.optim.freeze = ("^backbone/",)
  c.optim.lr, c.optim.head_lr = 1e-4, 0.01
  c.num_epochs, c.optim.step_every_epochs = 30, 10
  c.batch_size = 128
  return c
