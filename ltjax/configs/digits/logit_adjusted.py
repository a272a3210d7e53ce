"""Joint training on digits-LT with the logit-adjusted loss (Menon et al., "Long-tail learning
via logit adjustment", ICLR 2021, Eq. 10, tau = 1: Balanced Softmax, Ren et al., NeurIPS 2020);
the demo's logit_adjusted row. Any other loss the same way:
`--config.loss.name=focal|class_balanced|ldam` (README, "Losses").

  ltjax train --config=configs/digits/logit_adjusted.py --workdir=runs/digits/logit_adjusted

Figures to expect: README, "The demo's numbers".
"""

from ltjax.demo import logit_adjusted_config


def get_config():
  return logit_adjusted_config()
