"""crt on digits-LT, on top of the joint model (the demo's crt stage).

  ltjax train --config=configs/digits/joint.py --workdir=runs/digits/joint
  ltjax train --config=configs/digits/crt.py --workdir=runs/digits/crt --config.init_from=runs/digits/joint

Figures to expect: README, "The demo's numbers".
"""

from ltjax.demo import crt_config


def get_config():
  return crt_config()
