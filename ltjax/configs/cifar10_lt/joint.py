"""CIFAR-10-LT cross-entropy ("ERM"), ResNet-32, instance sampling, the LDAM-DRW code's
schedule (Cao et al., NeurIPS 2019, cifar_train.py: 200 epochs, batch 128, lr 0.1 warmed up
over 5 epochs, x0.01 at epochs 160 and 180, weight decay 2e-4). Also the representation that
cRT, LWS, OLTR stage 2 and the post-hoc methods start from.

  ltjax train --config=cifar10_lt/joint.py --workdir=runs/cifar10_lt/joint --config.dataset.data_dir=DIR

NCM, tau-norm and post-hoc logit adjustment (Menon et al., ICLR 2021, Sec. 4; each selected
on the validation split, never on test) on top of it:

  ltjax evaluate --workdir=runs/cifar10_lt/joint --posthoc

Other samplers: `--config.sampler.name=class_balanced|sqrt|progressive|class_aware`; other
losses: `--config.loss.name=focal|class_balanced|logit_adjusted` (README, "Losses").
Published figures (ResNet-32, imbalance ratio 100, top-1 on the balanced test set, selected on
test): Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
NeurIPS 2019, Table 2: ERM error 29.64% (accuracy 70.4) (ratio 10: 13.61%). Post-hoc logit
adjustment: the logit_adjustment code's README reports ERM 71.36% and post-hoc
77.32% accuracy, with its own (1,241 / 1,419-epoch) schedule.
Data: the TFDS `cifar10` dataset as ArrayRecord (read without TensorFlow): run
`tfds build cifar10 --data_dir=DIR --file_format=array_record` once on a machine with
internet. Imbalance ratio 100 by default; add `--config.dataset.imbalance_ratio=50` (or 10).
Training set: the published CIFAR-LT cut of Cao et al. 2019 (`dataset.longtail=cao2019`), image
for image; validation: 20 images per class the cut leaves out (the head class's are training
images), never test (README, CIFAR-10-LT).
Not yet run to completion by the team (no CIFAR copy on the development machine).
"""

from ltjax import config as config_lib


def get_config():
  return config_lib.cifar_lt_joint(config_lib.cifar_lt(config_lib.base_config(), "cifar10"))
