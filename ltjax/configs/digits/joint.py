"""Joint training on digits-LT (the demo's first stage), instance-balanced sampling.

  ltjax train --config=configs/digits/joint.py --workdir=runs/digits/joint

NCM, tau-norm and post-hoc logit adjustment on top of it: ltjax evaluate --config=configs/digits/joint.py --workdir=runs/digits/joint --posthoc
Figures to expect (seeds 0-2, and why single images move between machines): README, "The
demo's numbers".
"""

from ltjax.demo import joint_config


def get_config():
  return joint_config()
