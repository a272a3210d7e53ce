"""Your own data: cRT (classifier re-training) on a joint run of custom/joint.py.

The joint backbone fixed (BatchNorm in inference mode), a fresh linear classifier trained
with class-aware sampling (4 per class, shuffled within each batch), 10 epochs, SGD lr 0.1
cosine; the data fields as in custom/joint.py.

  ltjax train --config=custom/crt.py --workdir=runs/mine/crt --config.init_from=runs/mine/joint --config.dataset.root=DIR
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.custom_data(config_lib.base_config())
  c = config_lib.decoupling_classifier(c, "crt")
  c.update_frozen_bn = False  # ltjax's choice: the backbone stays exactly the joint one.
  c.num_epochs, c.batch_size = 10, 64
  c.optim.lr = 0.1
  return c
