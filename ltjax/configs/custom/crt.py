"""Your own data: cRT (classifier re-training) on a joint run of custom/joint.py.

The joint backbone fixed (BatchNorm in inference mode), a fresh linear classifier trained
with class-aware sampling (4 per class, shuffled within each batch), 10 epochs, SGD lr 0.1
cosine; the data fields as in custom/joint.py. Not a reference reproduction: the cosine is
set every step (optim.lr_update=step), not before each epoch as the references' (whose last
epoch trains at lr 0). The model of the best validation accuracy is tested (eval.select=
best_val, as the references): the classifier starts fresh, so early epochs rarely win.

  ltjax train --config=custom/crt.py --workdir=runs/mine/crt --config.init_from=runs/mine/joint --config.dataset.root=DIR
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.custom_data(config_lib.base_config())
  c = config_lib.decoupling_classifier(c, "crt")
  c.update_frozen_bn = False  # ltjax's choice: the backbone stays exactly the joint one.
  c.num_epochs, c.batch_size = 10, 64
  c.optim.lr = 0.1
  c.optim.lr_update = "step"  # No epoch at lr 0 (the references' per-epoch cosine has one).
  return c
