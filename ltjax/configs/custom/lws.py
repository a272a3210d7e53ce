"""Your own data: LWS (learnable weight scaling) on a joint run of custom/joint.py.

Backbone and classifier of the joint run fixed, one scale per class learnt with class-aware
sampling (4 per class, shuffled within each batch), 5 epochs, SGD lr 0.1 cosine; the data
fields as in custom/joint.py. Not a reference reproduction: the cosine is set every step
(optim.lr_update=step; the references' per-epoch cosine trains its last epoch at lr 0), and
the final model is tested (eval.select=final), not the best validated one: LWS starts as the
joint classifier (every scale 1), and on a small validation split (5 images per class carved
from train, or a small val/) the references' rule, keep an epoch only if strictly better,
often keeps the first epoch, i.e. nearly the joint model. With a validation split large enough
to tell the epochs apart, --config.eval.select=best_val restores the references' protocol.

  ltjax train --config=custom/lws.py --workdir=runs/mine/lws --config.init_from=runs/mine/joint --config.dataset.root=DIR
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.custom_data(config_lib.base_config())
  c = config_lib.decoupling_classifier(c, "lws")
  c.update_frozen_bn = False  # ltjax's choice: the backbone stays exactly the joint one.
  c.num_epochs, c.batch_size = 5, 64
  c.optim.lr = 0.1
  c.optim.lr_update = "step"  # No epoch at lr 0 (the references' per-epoch cosine has one).
  c.eval.select = "final"  # See the docstring: best_val would often keep epoch 1.
  return c
