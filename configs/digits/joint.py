"""Joint training on digits-LT (the demo's first stage), instance-balanced sampling.

  ltjax train --config=configs/digits/joint.py --workdir=/tmp/digits_joint

Measured test figures (seed 0): README, "The demo's numbers".
"""

from ltjax.demo import joint_config


def get_config():
  return joint_config()
