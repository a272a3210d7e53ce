"""Your own data: OLTR stage 1, plain joint training as OLTR's recipe (instance sampling,
30 epochs, SGD lr 0.1, /10 every 10 epochs after each epoch) with the use_fc layer (512
units) that stage 2 loads; the data fields as in custom/joint.py.

  ltjax train --config=custom/oltr_stage1.py --workdir=runs/mine/oltr1 --config.dataset.root=DIR
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.custom_data(config_lib.base_config())
  c = config_lib.oltr_stage1(c)
  c.oltr.fc_add = config_lib.OLTR_FC_ADD  # The reference's use_fc, loaded by stage 2.
  c.batch_size = 64
  return c
