"""Your own data: LWS (learnable weight scaling) on a joint run of custom/joint.py.

Backbone and classifier of the joint run fixed, one scale per class learnt with class-aware
sampling (4 per class, shuffled within each batch), 5 epochs, SGD lr 0.1 cosine; the data
fields as in custom/joint.py.

  ltjax train --config=custom/lws.py --workdir=runs/mine/lws --config.init_from=runs/mine/joint --config.dataset.root=DIR
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.custom_data(config_lib.base_config())
  c = config_lib.decoupling_classifier(c, "lws")
  c.update_frozen_bn = False  # ltjax's choice: the backbone stays exactly the joint one.
  c.num_epochs, c.batch_size = 5, 64
  c.optim.lr = 0.1
  return c
