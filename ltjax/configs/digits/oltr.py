"""OLTR stage 2 on digits-LT, on top of the joint model (the demo's oltr stage).

Modulated attention + dynamic meta-embedding with the class centroids in the train state,
discriminative centroids loss (weight 0.01), class-aware sampling; digits 8 and 9 are the
open set of the test split.

  ltjax train --config=configs/digits/joint.py --workdir=runs/digits/joint
  ltjax train --config=configs/digits/oltr.py --workdir=runs/digits/oltr --config.init_from=runs/digits/joint

Figures to expect: README, "The demo's numbers".
"""

from ltjax.demo import oltr_config


def get_config():
  return oltr_config()
