"""Joint training on digits-LT (the demo's first stage), instance-balanced sampling.

  ltjax train --config=configs/digits/joint.py --workdir=/tmp/digits_joint

Expected (seed 0, 2 CPU cores, about a minute): see BENCHMARKS.md / README.
"""

from ltjax.demo import joint_config


def get_config():
  return joint_config()
