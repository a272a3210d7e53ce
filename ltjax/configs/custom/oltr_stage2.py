"""Your own data: OLTR stage 2 on an OLTR stage-1 run (custom/oltr_stage1.py): modulated
attention, the dynamic meta-embedding with class centroids, the discriminative centroids
loss, class-aware sampling, the reference's rates and StepLR (60 epochs, /10 every 20).
Open-set evaluation needs open-set test images: an open/ folder (image-folder tree) or
--config.dataset.open_list (list files) and --config.dataset.open_set=True; without them
the closed-set figures are reported.

  ltjax train --config=custom/oltr_stage2.py --workdir=runs/mine/oltr2 --config.init_from=runs/mine/oltr1 --config.dataset.root=DIR
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.custom_data(config_lib.base_config())
  c = config_lib.oltr_stage2(c)
  c.dataset.open_set = False  # True with an open/ folder or dataset.open_list.
  c.batch_size = 64
  return c
