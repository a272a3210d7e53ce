"""The base config: every field a run has, with the defaults of joint training.

Experiment files under ``configs/`` call :func:`base_config`, a dataset preset
(``ltjax.config.presets``) and a recipe (``ltjax.config.recipes``), then override fields;
the command line overrides them again with ``--config.field=value``. The returned config is
locked by the command line, so a misspelt key is an error. What each field means is in
``ltjax.config.docs.FIELD_DOCS``, or for a registered component's option in that class's
docstring (``ltjax.config.declared``); ``ltjax train --config=FILE --help`` shows both.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from ltjax.config.presets import IMAGENET_MEAN, IMAGENET_STD

# OLTR's paper / reference constants (Liu et al. 2019, Sec. 3.3 and the reference configs),
# the defaults of the ``oltr`` block; ``ltjax.losses.centroids`` names them MARGIN,
# REPEL_WEIGHT and LOSS_WEIGHT. Kept here, not imported from the JAX modules, so that
# loading a config (``ltjax verify``, ``--help``) does not import JAX.
OLTR_LOSS_WEIGHT = 0.01  # Of the discriminative centroids loss, next to cross-entropy.
OLTR_MARGIN = 10.0  # Repel margin: mean squared distance to the other centroids.
OLTR_REPEL_WEIGHT = 0.01  # Of the repel term inside the centroids loss.
OLTR_FC_ADD = 512  # The reference's use_fc layer width (``ltjax.models.oltr.REFERENCE_FC_ADD``).


def base_config() -> ml_collections.ConfigDict:
  """All fields, with the defaults of representation learning (joint training); their
  meanings: ``ltjax train --config=FILE --help`` (``ltjax.config.help``)."""
  c = ml_collections.ConfigDict()
  c.stage = "joint"
  c.method = "joint"
  c.seed = 0
  c.num_devices = 0
  c.init_from = ""
  # Default: inference mode, so that a frozen backbone is exactly the stage-1 one.
  c.update_frozen_bn = False

  c.dataset = d = ml_collections.ConfigDict()
  d.name = "digits"
  d.tfds_name = ""
  d.data_dir = ""
  d.train_split = "train"
  d.test_split = "test"
  d.image_size = 0
  d.imbalance_ratio = 10.0
  d.n_max = 0
  d.val_per_class = 0
  d.test_per_class = 0
  d.open_classes = ()
  d.root = ""
  d.lists_dir = ""
  d.open_set = False
  d.packed_dir = ""
  d.mean, d.std = IMAGENET_MEAN, IMAGENET_STD
  d.allow_train_duplicates = False
  # Your own data (ltjax/configs/custom/): name "lists" reads 'path label' list files, name
  # "folder" an image-folder tree root/<split>/<class>/ (classes in sorted order, as
  # torchvision's ImageFolder).
  d.train_list = ""
  d.val_list = ""
  d.test_list = ""
  d.open_list = ""
  d.num_classes = 0
  d.class_names = ""
  d.longtail = "exponential"

  c.data = ml_collections.ConfigDict()
  c.data.augment = "crop_flip"
  c.data.pad = 4
  c.data.flip = True
  c.data.crop_size = 224
  c.data.jitter = 0.4
  c.data.eval_transform = "none"
  c.data.tte_expand = 24
  c.data.decode_min_size = 0
  c.data.skip_corrupt = False
  c.data.decode_cache_mb = 1024
  c.data.num_threads = 2
  c.data.prefetch = 4
  c.data.mixup_alpha = 0.0
  c.data.cutmix_alpha = 0.0

  # A sampler's options are the fields of its class (ltjax.data.samplers).
  c.sampler = ml_collections.ConfigDict()
  c.sampler.name = "instance"
  c.sampler.q = 1.0
  c.sampler.k = 4
  c.sampler.shuffle_in_batch = False

  # A loss's options are the fields of its class (ltjax.losses.classification).
  c.loss = ml_collections.ConfigDict()
  c.loss.name = "softmax"
  c.loss.tau = 1.0
  c.loss.gamma = 2.0
  c.loss.beta = 0.9999
  c.loss.base = "softmax"
  c.loss.max_margin = 0.5
  c.loss.scale = 30.0
  c.loss.drw_epoch = placeholder(int)

  c.model = ml_collections.ConfigDict()
  c.model.backbone = "resnet10"
  c.model.head = "linear"
  c.model.head_scale = 25.0
  c.model.head_init = ""
  c.model.text_features = ""
  c.model.width = 1
  c.model.cifar_shortcut = "conv"
  c.model.clip_projection = True
  # Parameter-efficient fine-tuning of the ViTs (ltjax.models.peft.PEFT_METHODS).
  c.model.peft = ""
  c.model.adapter_dim = 0
  c.model.vpt_len = 10
  c.model.dtype = "float32"
  c.model.pretrained = ""
  c.model.pretrained_allow_pickle = False

  c.optim = o = ml_collections.ConfigDict()
  o.name = "sgd"
  o.lr = 0.2
  o.head_lr = placeholder(float)
  o.momentum = 0.9
  o.weight_decay = 5e-4
  o.schedule = "cosine"
  o.lr_update = "step"
  o.step_every_epochs = 10
  o.step_gamma = 0.1
  o.warmup_epochs = 0.0
  o.nesterov = False
  o.b2 = 0.999
  o.eps = 1e-8
  o.milestones = ()
  o.freeze = ()

  c.batch_size = 512
  c.num_epochs = 90
  c.log_every_steps = 50
  c.eval_every_epochs = 10
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 2

  # OLTR stage 2 (Liu et al. 2019, Sec. 3): the meta-embedding head with centroids.
  c.oltr = r = ml_collections.ConfigDict()
  r.use_attention = True
  r.fc_add = 0
  r.centroids_lr = 0.01
  r.centroids_momentum = 0.9
  r.centroids_weight_decay = 5e-4
  r.loss_weight = OLTR_LOSS_WEIGHT
  r.margin = OLTR_MARGIN
  r.repel_weight = OLTR_REPEL_WEIGHT

  c.eval = e = ml_collections.ConfigDict()
  e.batch_size = 512
  e.many_threshold = 100
  e.few_threshold = 20
  e.open_threshold = 0.1
  e.select = "final"
  e.evaluators = ("closed_set", "top5", "calibration", "open_set")
  e.posthoc = ()  # `ltjax evaluate --posthoc`'s methods; empty: every registered one.
  # The evaluators' options (the fields of ltjax.evaluate.evaluators' classes).
  e.ece_bins = 15  # calibration: Guo et al. 2017's bins.
  e.keep_known = 0.95  # open_set: the validation-chosen threshold keeps this fraction.
  return c
