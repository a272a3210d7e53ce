"""Your own data: joint training (representation learning), instance-balanced sampling.

Your data: an image-folder tree DIR/train/<class>/..., DIR/test/<class>/... (and DIR/val/...;
without it 5 images per class are carved out of train); or list files of 'path label' lines
(--config.dataset.name=lists --config.dataset.train_list=... --config.dataset.test_list=...
[--config.dataset.val_list=...], paths relative to --config.dataset.root). Any image size
(random-resized crops to --config.data.crop_size=224), any number of classes, the training
split's own imbalance. ResNet-18 from scratch, 30 epochs, batch 64, SGD lr 0.1 cosine.

  ltjax train --config=custom/joint.py --workdir=runs/mine/joint --config.dataset.root=DIR
  ltjax evaluate --workdir=runs/mine/joint --posthoc

Then cRT and LWS (custom/crt.py, custom/lws.py) and OLTR (custom/oltr_stage2.py) start from
--config.init_from=runs/mine/joint. A first try on the tiny example dataset
(`ltjax example-data --out=DIR`) takes seconds with --config.data.crop_size=32
--config.model.backbone=cifar_resnet8 (README, "Your own data").
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.custom_data(config_lib.base_config())
  c.stage = c.method = "joint"
  c.sampler.name = "instance"
  c.num_epochs, c.batch_size = 30, 64
  c.optim.lr, c.optim.schedule = 0.1, "cosine"
  c.eval_every_epochs = 5
  c.checkpoint_every_steps = 500
  return c
