"""lws on digits-LT, on top of the joint model (the demo's lws stage).

  ltjax train --config=configs/digits/joint.py --workdir=runs/digits/joint
  ltjax train --config=configs/digits/lws.py --workdir=runs/digits/lws --config.init_from=runs/digits/joint

Figures to expect: README, "The demo's numbers".
"""

from ltjax.demo import lws_config


def get_config():
  return lws_config()
