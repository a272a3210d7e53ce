"""lws on digits-LT, on top of the joint model (the demo's lws stage).

  ltjax train --config=configs/digits/joint.py --workdir=/tmp/digits/joint
  ltjax train --config=configs/digits/lws.py --workdir=/tmp/digits/lws \\
      --config.init_from=/tmp/digits/joint
"""

from ltjax.demo import lws_config


def get_config():
  return lws_config()
