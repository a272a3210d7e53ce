"""crt on digits-LT, on top of the joint model (the demo's crt stage).

  ltjax train --config=configs/digits/joint.py --workdir=/tmp/digits/joint
  ltjax train --config=configs/digits/crt.py --workdir=/tmp/digits/crt \\
      --config.init_from=/tmp/digits/joint
"""

from ltjax.demo import crt_config


def get_config():
  return crt_config()
