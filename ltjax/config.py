"""The default config every experiment file starts from.

Experiment files under ``configs/`` call :func:`base_config` and override fields;
the command line overrides them again with ``--config.field=value``. The returned
config is locked by the command line, so a misspelt key is an error.
"""

from __future__ import annotations

import importlib.util
import math

import ml_collections
import numpy as np
from ml_collections.config_dict import placeholder

# Mean/std of the pixel values in [0, 1], per channel.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# classifier-balancing data/dataloader.py RGB_statistics['iNaturalist18'].
INAT_MEAN, INAT_STD = (0.466, 0.471, 0.380), (0.195, 0.194, 0.192)
# The CIFAR-LT code's (LDAM-DRW cifar_train.py, and most CIFAR code since).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
DIGITS_MEAN, DIGITS_STD = (0.305,), (0.376,)  # Measured on sklearn digits scaled to [0, 1].

# OLTR's paper / reference constants (Liu et al. 2019, Sec. 3.3 and the reference configs),
# the defaults of the ``oltr`` block; ``ltjax.losses.centroids`` names them MARGIN,
# REPEL_WEIGHT and LOSS_WEIGHT. Kept here, not imported from the JAX modules, so that
# loading a config (``ltjax verify``, ``--help``) does not import JAX.
OLTR_LOSS_WEIGHT = 0.01  # Of the discriminative centroids loss, next to cross-entropy.
OLTR_MARGIN = 10.0  # Repel margin: mean squared distance to the other centroids.
OLTR_REPEL_WEIGHT = 0.01  # Of the repel term inside the centroids loss.
OLTR_FC_ADD = 512  # The reference's use_fc layer width (``ltjax.models.oltr.REFERENCE_FC_ADD``).


def base_config() -> ml_collections.ConfigDict:
  """All fields, with the defaults of representation learning (joint training)."""
  c = ml_collections.ConfigDict()
  c.stage = "joint"  # Which training recipe; see ltjax.train.stages.STAGES.
  c.method = "joint"  # Name of this model's entry in results.json.
  c.seed = 0
  c.num_devices = 0  # 0 = every device of every process.
  c.init_from = ""  # Work (or checkpoints) directory of the stage-1 run (cRT, LWS).
  # cRT/LWS: update the frozen backbone's BatchNorm statistics under the stage's sampler,
  # as the reference code does (it leaves BatchNorm in train mode). Default: inference
  # mode, so the backbone is exactly the stage-1 one.
  c.update_frozen_bn = False

  c.dataset = d = ml_collections.ConfigDict()
  d.name = "digits"  # See ltjax.data.datasets.DATASETS.
  # TFDS name (optionally ":version"). With name "tfds": the dataset to cut a long tail from
  # (cifar10, ...). With a split-list dataset: read the train/val/test lists' images from
  # this prepared TFDS dataset instead of root (imagenet_lt: imagenet2012, or TFDS's own
  # imagenet_lt; places_lt: places365_small; inat2018: i_naturalist2018), matching list
  # entries to TFDS records by file name; the lists are still read from lists_dir.
  d.tfds_name = ""
  d.data_dir = ""  # TFDS data directory of tfds_name; "" = the TFDS default.
  d.train_split = "train"
  d.test_split = "test"
  d.image_size = 0  # 0 = as stored.
  d.imbalance_ratio = 10.0  # n_max / n_min of the exponential train profile.
  d.n_max = 0  # Head-class size; 0 = as many as the pool allows.
  d.val_per_class = 0
  d.test_per_class = 0  # Only for datasets without a test split (digits).
  d.open_classes = ()  # Class ids held out of training; their test images become -1.
  d.root = ""  # Split-list datasets: the image directory the list paths are relative to.
  d.lists_dir = ""  # Split-list datasets: where ImageNet_LT_train.txt etc. are (default root).
  # Split-list datasets: append the open-set list (label -1) to test. Its images are in no
  # TFDS dataset: with tfds_name they are still read from root (or packed_dir).
  d.open_set = False
  # Split-list datasets: read every split from the ArrayRecord shards that `ltjax prepare`
  # wrote to this directory instead of the image files under root (then not needed). With
  # tfds_name set, only the open split is read from here.
  d.packed_dir = ""
  d.mean, d.std = IMAGENET_MEAN, IMAGENET_STD
  # A record listed twice in the train split is refused (as one in two splits always is);
  # True keeps such repeats (oversampling by repetition, on purpose).
  d.allow_train_duplicates = False
  # Your own data (ltjax/configs/custom/): name "lists" reads 'path label' list files (paths
  # relative to root, or absolute), name "folder" an image-folder tree root/<split>/<class>/
  # (classes in sorted order, as torchvision's ImageFolder). The training split's own
  # imbalance is kept; without a val list (or val/ folder) val_per_class images per class
  # are carved from train by seed (never from test).
  d.train_list = ""
  d.val_list = ""  # Optional.
  d.test_list = ""
  d.open_list = ""  # Optional open-set images (label -1), read with open_set=True.
  d.num_classes = 0  # 0 = from the data (largest label + 1; the folders); else checked.
  d.class_names = ""  # Optional file of class names, one per line ("folder": the folders).
  # How the training split of "digits" and "tfds" is cut: "exponential" (n_j = n_max *
  # imbalance_ratio^(-j/(K-1)), images drawn by seed), "none" (a dataset's own class
  # distribution, as it is) or "cao2019" (TFDS CIFAR-10/100 only: the published CIFAR-LT
  # training set of Cao et al. 2019, image for image; see ltjax.data.datasets
  # .build_cao2019_splits for its validation rule).
  d.longtail = "exponential"

  c.data = ml_collections.ConfigDict()
  # See ltjax.data.pp.augment.AUGMENTATIONS. "imagenet_device": "imagenet"'s random numbers,
  # but the resize, flip and jitter run in the train step (ltjax.data.pp.device_ops).
  c.data.augment = "crop_flip"
  c.data.pad = 4
  c.data.flip = True
  c.data.crop_size = 224  # Output side of the "imagenet" augmentation and eval transform.
  # ColorJitter strength (brightness = contrast = saturation, hue 0) of the "imagenet"
  # augmentations; 0 = no jitter (the references' iNaturalist recipe).
  c.data.jitter = 0.4
  c.data.eval_transform = "none"  # See ltjax.data.pp.augment.EVAL_TRANSFORMS.
  # Training images only: JPEG decoding may downscale by powers of two while the shorter
  # side stays >= this (libjpeg's scaled decoding, as PIL's draft mode): ~1.2x faster
  # decoding of images whose shorter side is >= 2x this (BENCHMARKS.md, "JPEG decoder
  # choice"), slightly other pixels than the references' full decode. 0 = full resolution,
  # as the references; evaluation always decodes in full.
  c.data.decode_min_size = 0
  c.data.skip_corrupt = False  # Replace unreadable images by another of the class (logged).
  # Decoded train and val images kept in memory, up to this many MB (0: none): a dataset of
  # small images is decoded once, not every epoch (the same pixels; BENCHMARKS.md, issue 35).
  c.data.decode_cache_mb = 1024
  c.data.num_threads = 2  # grain reader threads.
  c.data.prefetch = 4  # Batches read ahead (at least data.num_threads are).
  # mixup (Zhang et al., ICLR 2018) and CutMix (Yun et al., ICCV 2019) in the train step, on
  # device: lambda ~ Beta(alpha, alpha) per batch, the batch mixed with a permutation of
  # itself, the loss lambda L(y) + (1 - lambda) L(y'). 0 = off; both > 0: each batch one
  # of the two with probability 0.5. Not with OLTR stage 2 (its centroids loss).
  c.data.mixup_alpha = 0.0
  c.data.cutmix_alpha = 0.0

  c.sampler = ml_collections.ConfigDict()
  c.sampler.name = "instance"  # See ltjax.data.samplers.SAMPLERS.
  c.sampler.q = 1.0  # Only for "qpower".
  c.sampler.k = 4  # Only for "class_aware".
  # Only for "class_aware": shuffle within each batch, so that a batch mixes its classes
  # (the references' `shuffle: true` with ClassAwareSampler).
  c.sampler.shuffle_in_batch = False

  # The classification loss every stage trains with (OLTR adds its centroids term): see
  # ltjax.losses.LOSSES.
  c.loss = ml_collections.ConfigDict()
  c.loss.name = "softmax"  # softmax | logit_adjusted | focal | class_balanced | ldam
  c.loss.tau = 1.0  # logit_adjusted: z + tau log(prior) (1 = Balanced Softmax).
  c.loss.gamma = 2.0  # focal, class_balanced with base "focal": (1 - p)^gamma.
  c.loss.beta = 0.9999  # class_balanced, ldam's DRW: effective-number weights.
  c.loss.base = "softmax"  # class_balanced: over "softmax" or "focal".
  c.loss.max_margin = 0.5  # ldam: the largest class margin.
  c.loss.scale = 30.0  # ldam: s, the logit scale.
  c.loss.drw_epoch = placeholder(int)  # ldam: re-weighting from this epoch (None: never).

  c.model = ml_collections.ConfigDict()
  c.model.backbone = "resnet10"  # See ltjax.models.BACKBONES.
  c.model.head = "linear"  # See ltjax.models.HEADS.
  c.model.width = 1  # Channel multiplier of the cifar_resnet backbones.
  # Shortcut of the cifar_resnet backbones where the shape changes: "conv" (1x1 conv + BN,
  # He et al.'s option B) or "pad" (strided identity, zero-padded channels: option A, the
  # network of the LDAM-DRW and most CIFAR-LT code).
  c.model.cifar_shortcut = "conv"
  c.model.dtype = "float32"  # Computation dtype; parameters stay float32.
  # A PyTorch state dict (torchvision / reference ResNet layout, e.g. torchvision's ImageNet
  # resnet152 or OLTR's caffe_resnet152.pth) that a fresh run's backbone starts from; its
  # ImageNet classifier (fc.*) is skipped. "" = random initialisation.
  c.model.pretrained = ""
  # Also unpickle Python objects other than tensors in model.pretrained (can run code: only
  # for files you trust; the same opt-in as `ltjax import-torch --allow_pickle`).
  c.model.pretrained_allow_pickle = False

  c.optim = o = ml_collections.ConfigDict()
  o.lr = 0.2  # Backbone (and neck: the references' feat_model).
  o.head_lr = placeholder(float)  # Classifier head; unset (None) = optim.lr.
  o.momentum = 0.9
  o.weight_decay = 5e-4
  o.schedule = "cosine"  # cosine | step | multistep | constant
  # When the rate changes: every step, or once per epoch as the references' scheduler.step()
  # (before the epoch's batches: "epoch_start", classifier-balancing; after: "epoch_end",
  # OLTR). See ltjax.train.optim.make_schedule.
  o.lr_update = "step"
  o.step_every_epochs = 10  # step schedule: lr *= step_gamma every this many epochs.
  o.step_gamma = 0.1
  o.warmup_epochs = 0.0
  o.nesterov = False  # Nesterov momentum (SGD).
  # "multistep" schedule: lr *= step_gamma at each of these epochs (e.g. (160, 180)).
  o.milestones = ()
  o.freeze = ()  # Regexes over parameter paths like "backbone/stage1_block0/conv1/kernel".

  c.batch_size = 512  # Global, over all devices and processes.
  c.num_epochs = 90
  c.log_every_steps = 50
  c.eval_every_epochs = 10  # Validation accuracy during training; 0 = only at the end.
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 2

  # OLTR stage 2 (Liu et al. 2019, Sec. 3): the meta-embedding head with centroids.
  c.oltr = r = ml_collections.ConfigDict()
  r.use_attention = True  # Modulated attention after the backbone's last stage.
  r.fc_add = 0  # > 0: dense to this width + ReLU after pooling (reference use_fc: 512).
  r.centroids_lr = 0.01  # The centroids' own SGD group.
  r.centroids_momentum = 0.9
  r.centroids_weight_decay = 5e-4
  r.loss_weight = OLTR_LOSS_WEIGHT  # Of the discriminative centroids loss on top of CE.
  r.margin = OLTR_MARGIN  # Repel margin of the centroids loss.
  r.repel_weight = OLTR_REPEL_WEIGHT  # Weight of the repel term inside the centroids loss.

  c.eval = e = ml_collections.ConfigDict()
  e.batch_size = 512
  e.many_threshold = 100  # many-shot: n_j > 100 (papers' convention).
  e.few_threshold = 20  # few-shot: n_j < 20.
  e.open_threshold = 0.1  # Open-set: predict "unknown" below this max probability.
  # Which model is tested: "final" (the last step) or "best_val" (the validation with the
  # best overall accuracy, every eval_every_epochs; kept apart in <workdir>/best/).
  e.select = "final"
  return c


def _split_list_dataset(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  c.dataset.name = name
  c.dataset.mean, c.dataset.std = IMAGENET_MEAN, IMAGENET_STD
  c.data.augment = "imagenet"  # RandomResizedCrop(224) + flip + colour jitter 0.4.
  c.data.eval_transform = "resize_center_crop"  # Resize 256, centre crop 224.
  c.data.crop_size = 224
  c.data.num_threads = 16  # JPEG decoding: give the reader threads the host's cores.
  c.eval.batch_size = 512
  c.eval.many_threshold, c.eval.few_threshold = 100, 20
  return c


def custom_data(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Your own images (``ltjax/configs/custom/``): dataset "folder" (an image-folder tree
  under ``dataset.root``; ``dataset.name=lists`` for list files), any image size: the
  ImageNet augmentation to ``data.crop_size`` (224) and Resize + CenterCrop for evaluation,
  ImageNet mean/std (right for ImageNet-like photos; set yours otherwise), a ResNet-18,
  5 validation images per class carved from train when there is no val split, and the
  papers' shot thresholds (many > 100, few < 20 training images)."""
  d = c.dataset
  d.name, d.root = "folder", ""
  d.mean, d.std = IMAGENET_MEAN, IMAGENET_STD
  d.val_per_class = 5
  c.model.backbone = "resnet18"
  c.data.augment, c.data.eval_transform, c.data.crop_size = "imagenet", "resize_center_crop", 224
  c.eval.many_threshold, c.eval.few_threshold = 100, 20
  return c


def imagenet_lt(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """ImageNet-LT (Liu et al. 2019): 115,846 train images of 1,000 classes (1,280 to 5
  per class), balanced 20,000 val and 50,000 test, and an open set. Set
  ``dataset.root`` to the ImageNet-2012 image directory and ``dataset.lists_dir`` to
  the directory of ImageNet_LT_{train,val,test,open}.txt; or, instead of ``root``,
  ``dataset.tfds_name=imagenet2012`` (and ``dataset.data_dir``) to read the images from
  a prepared TFDS ImageNet (ArrayRecord)."""
  return _split_list_dataset(c, "imagenet_lt")


def places_lt(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Places-LT (Liu et al. 2019): 62,500 train images of 365 classes (4,980 to 5 per
  class), balanced val and test, and an open set; ``dataset.root`` = Places-365 images,
  or ``dataset.tfds_name=places365_small`` (256x256 Places365-Standard) instead."""
  return _split_list_dataset(c, "places_lt")


def inat2018(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """iNaturalist 2018: 437,513 train images of 8,142 classes; evaluated on the official
  val list (24,426 images, 3 per class), as the references do. ``dataset.root`` = the
  directory holding train_val2018/, or ``dataset.tfds_name=i_naturalist2018`` instead.
  iNaturalist's own mean/std and no colour jitter, as classifier-balancing's
  ``data/dataloader.py``."""
  c = _split_list_dataset(c, "inat2018")
  c.dataset.mean, c.dataset.std = INAT_MEAN, INAT_STD
  c.data.jitter = 0.0
  return c


CIFAR_LT = {"cifar10": 5000, "cifar100": 500}  # TFDS name -> images per class in train.


def cifar_lt(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """CIFAR-10-LT / CIFAR-100-LT from TFDS, the training set of the published numbers: the
  cut of Cao et al. (NeurIPS 2019, the LDAM-DRW code's ``IMBALANCECIFAR10/100``; used by
  nearly every CIFAR-LT table since), image for image (``dataset.longtail='cao2019'``):
  n_c = int(img_max * ratio^(-c/(K-1))), img_max 5,000 / 500, imbalance ratio 100
  (``--config.dataset.imbalance_ratio=50`` or 10 for the papers' other columns); the whole
  balanced test set; the LDAM-DRW code's ResNet-32 (option-A shortcuts; its He-normal
  initialisation is fan-in, ltjax's fan-out, and its classifier's normal, ltjax's
  PyTorch-default uniform), pad-4 crop + flip, its mean/std.

  What differs from the papers' protocol: they select on the test set; ltjax selects (NCM,
  tau-norm) on a validation split of 20 images per class taken
  from the training images the cut leaves out (never trained on), except the head class's,
  which the cut keeps whole: its 20 are training images (``build_cao2019_splits``).
  ``--config.dataset.val_per_class=0``: no validation, as the papers."""
  if name not in CIFAR_LT:
    raise ValueError(f"unknown CIFAR-LT dataset {name!r}; valid: {sorted(CIFAR_LT)}.")
  c.dataset.name = "tfds"
  c.dataset.tfds_name = name
  c.dataset.longtail = "cao2019"
  c.dataset.imbalance_ratio = 100.0
  c.dataset.val_per_class = 20
  c.dataset.n_max = 0
  c.dataset.mean, c.dataset.std = CIFAR_MEAN, CIFAR_STD
  c.data.augment = "crop_flip"
  c.data.pad = 4
  c.model.backbone = "cifar_resnet32"
  c.model.cifar_shortcut = "pad"  # The LDAM-DRW code's ResNet-32 (option A).
  return c


def cifar_lt_joint(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Cross-entropy on CIFAR-LT with the CIFAR-LT schedule of Cao et al. (NeurIPS 2019, the
  LDAM-DRW code's ``cifar_train.py``; its "ERM" row): 200 epochs, batch 128, SGD momentum
  0.9, lr 0.1, weight decay 2e-4; epoch e < 5 at 0.1 (e + 1) / 5, then 0.1, x0.01 from
  epoch 160 and again from 180 (``multistep``, set per epoch)."""
  c.stage = c.method = "joint"
  c.batch_size, c.num_epochs = 128, 200
  c.optim.lr, c.optim.momentum, c.optim.weight_decay = 0.1, 0.9, 2e-4
  c.optim.schedule, c.optim.lr_update = "multistep", "epoch_end"
  c.optim.warmup_epochs, c.optim.milestones, c.optim.step_gamma = 5, (160, 180), 0.01
  c.eval_every_epochs = 20
  return c


def cifar_lt_ldam_drw(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """LDAM-DRW (Cao et al., NeurIPS 2019, ``cifar_train.py --loss_type LDAM --train_rule
  DRW``): the schedule of ``cifar_lt_joint``, the cosine classifier (``NormedLinear``), the
  LDAM loss (max margin 0.5, s = 30) with class-balanced weights (beta 0.9999) from epoch
  160."""
  c = cifar_lt_joint(c)
  c.method = "ldam_drw"
  c.model.head = "normed_linear"
  c.loss.name, c.loss.max_margin, c.loss.scale = "ldam", 0.5, 30.0
  c.loss.drw_epoch, c.loss.beta = 160, 0.9999
  return c


#: google-research/logit_adjustment ``utils.dataset_mappings``: epochs, warm-up end and the
#: x0.1 milestones (epochs) of its CIFAR-LT step schedule.
LOGIT_ADJUSTMENT_SCHEDULES = {
  "cifar10": (1241, 20, (604, 926, 1128)),
  "cifar100": (1419, 22, (691, 1059, 1290)),
}


def cifar_lt_logit_adjusted(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The logit-adjusted loss (Menon et al., ICLR 2021; google-research/logit_adjustment,
  ``--mode=loss --tau=1.0``): tau = 1 on the training prior; its CIFAR-LT training: batch
  128, SGD with Nesterov momentum 0.9, lr 0.1 warmed up linearly per step, x0.1 at three
  milestones (``LOGIT_ADJUSTMENT_SCHEDULES``; 1,241 / 1,419 epochs), L2 1e-4 on the weights
  (weight decay 2e-4: the gradient of 1e-4 ||w||^2), inputs x / 255 - 0.5.

  What differs: the official code's network is its own Keras ResNet-32 (bottleneck blocks
  and a final BatchNorm); ltjax trains the LDAM-DRW ResNet-32 (option A) of the other
  CIFAR-LT configs, and decays the BatchNorm parameters too. Two more differences, kept (not
  yet run here to see what they change): (1) an epoch there is ``int(N / 128)`` steps
  (``main.py``'s ``batches_per_epoch``; batches of 128 with the remainder dropped: 96 / 84
  steps for N = 12,406 / 10,847, 118 / 95 images left out of each epoch), here N / 128
  (96.92 / 84.74): 120,281 steps against 119,136 (CIFAR-10-LT; 120,250 against 119,196 on
  CIFAR-100-LT), about 0.9% more, a warm-up of 1,938 steps against 1,920 (1,864 / 1,848), and
  the x0.1 decays 557, 854 and 1,040 steps later (513, 786, 957); (2) its crop pads 2 px per
  side of mid-grey (``resize_with_crop_or_pad`` to 36 on inputs in [-0.5, 0.5] pads 0, pixel
  127.5; 5 crop offsets per axis), ltjax's ``data.pad=4`` pads 4 px of black (pixel 0; 9
  offsets)."""
  epochs, warmup, milestones = LOGIT_ADJUSTMENT_SCHEDULES[name]
  c.stage, c.method = "joint", "logit_adjusted"
  c.batch_size, c.num_epochs = 128, epochs
  c.optim.lr, c.optim.momentum, c.optim.nesterov, c.optim.weight_decay = 0.1, 0.9, True, 2e-4
  c.optim.schedule, c.optim.lr_update = "multistep", "step"
  c.optim.warmup_epochs, c.optim.milestones, c.optim.step_gamma = warmup, milestones, 0.1
  c.dataset.mean, c.dataset.std = (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)
  c.loss.name, c.loss.tau = "logit_adjusted", 1.0
  c.eval_every_epochs = 100
  return c


# -------------------------------------------------------------------------- recipes
# The reference experiments' hyperparameters, field by field. The files named are those of
# facebookresearch/classifier-balancing (commit 22370c6) and zhmiao/OpenLongTailRecognition-OLTR
# (its newest configs); tests/test_configs.py pins every config under configs/ to them.


def reference_protocol(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The references' protocol (classifier-balancing and OLTR ``run_networks.py``): validate
  after every epoch, keep the model of the best overall validation accuracy (strictly
  better than every earlier epoch) and test it; the next stage starts from it."""
  c.eval.select = "best_val"
  c.eval_every_epochs = 1
  return c


def decoupling_joint(c: ml_collections.ConfigDict, sampler: str) -> ml_collections.ConfigDict:
  """classifier-balancing representation learning (``config/*/feat_*.yaml``): 90 epochs,
  batch 512, SGD momentum 0.9, lr 0.2 for backbone and classifier, weight decay 5e-4,
  cosine to 0 (``coslr: true, endlr: 0``) stepped at the start of every epoch.

  ``sampler``: ``instance`` (``sampler: null``, a shuffle), ``class_aware``
  (``feat_balance.yaml``: ClassAwareSampler, 4 per class, ``shuffle: true`` = shuffled
  within each batch), ``sqrt`` (MixedPrioritizedSampler, ``nroot: 2``), ``progressive``
  (ClassPrioritySampler, ``feat_shift.yaml``).
  """
  c.stage = c.method = "joint"
  c.sampler.name = sampler
  if sampler == "class_aware":
    c.sampler.k, c.sampler.shuffle_in_batch = 4, True
  c.num_epochs, c.batch_size = 90, 512
  c.optim.lr, c.optim.momentum, c.optim.weight_decay = 0.2, 0.9, 5e-4  # head_lr: the same.
  c.optim.schedule, c.optim.lr_update = "cosine", "epoch_start"
  return reference_protocol(c)


def decoupling_classifier(c: ml_collections.ConfigDict, stage: str) -> ml_collections.ConfigDict:
  """classifier-balancing classifier re-balancing (``config/*/cls_crt.yaml``,
  ``cls_lws.yaml``): the stage-1 backbone fixed, class-aware sampling (4 per class,
  shuffled within each batch), batch 512, lr 0.2 (the classifier's; the fixed backbone's
  is unused), momentum 0.9, weight decay 5e-4, cosine to 0 stepped at the start of every
  epoch; cRT 10 epochs, LWS 5. The reference leaves the fixed backbone's BatchNorm in train
  mode (``model.train()`` on every network each epoch), so ``update_frozen_bn`` is on;
  ``--config.update_frozen_bn=False`` is ltjax's inference-mode alternative (the backbone
  stays bit-identical to stage 1). ``init_from`` = the joint run."""
  if stage not in ("crt", "lws"):
    raise ValueError(f"decoupling classifier stage must be crt or lws, got {stage!r}.")
  c.stage = c.method = stage
  c.model.head = "lws" if stage == "lws" else "linear"
  c.sampler.name, c.sampler.k, c.sampler.shuffle_in_batch = "class_aware", 4, True
  c.num_epochs, c.batch_size = (10 if stage == "crt" else 5), 512
  c.optim.lr, c.optim.momentum, c.optim.weight_decay = 0.2, 0.9, 5e-4  # head_lr: the same.
  c.optim.schedule, c.optim.lr_update = "cosine", "epoch_start"
  c.update_frozen_bn = True
  return reference_protocol(c)


def oltr_stage1(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """OLTR stage 1 (``config/ImageNet_LT/stage_1.py``): plain joint training with instance
  sampling, 30 epochs, batch 128, SGD momentum 0.9, lr 0.1 (backbone and classifier),
  weight decay 5e-4, StepLR(10, 0.1) stepped after every epoch; no ``use_fc`` layer (the
  newest reference; its stage 2 starts ``fc_add`` fresh)."""
  c.stage = c.method = "joint"
  c.oltr.fc_add = 0
  c.sampler.name = "instance"
  c.num_epochs, c.batch_size = 30, 128
  c.optim.lr, c.optim.momentum, c.optim.weight_decay = 0.1, 0.9, 5e-4  # head_lr: the same.
  c.optim.schedule, c.optim.step_every_epochs, c.optim.step_gamma = "step", 10, 0.1
  c.optim.lr_update = "epoch_end"
  return reference_protocol(c)


def oltr_stage2(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """OLTR stage 2 (``config/ImageNet_LT/stage_2_meta_embedding.py``): modulated attention,
  the ``use_fc`` layer (512 + ReLU), the meta-embedding head and the discriminative
  centroids loss (weight 0.01); class-aware sampling, 4 per class (no in-batch shuffle), 60
  epochs, batch 128, SGD momentum 0.9, weight decay 5e-4, lrs 0.01 (feature model) / 0.1
  (classifier) / 0.01 (centroids, their own SGD 0.9 / 5e-4), StepLR(20, 0.1) stepped after
  every epoch; open-set test. ``init_from`` = the stage-1 run (its ``use_fc`` layer is
  loaded when it has one, else starts fresh)."""
  c.stage = c.method = "oltr"
  c.oltr.fc_add = OLTR_FC_ADD
  c.oltr.use_attention = True
  c.model.head = "meta_embedding"
  c.sampler.name, c.sampler.k, c.sampler.shuffle_in_batch = "class_aware", 4, False
  c.num_epochs, c.batch_size = 60, 128
  c.optim.lr, c.optim.head_lr, c.optim.momentum, c.optim.weight_decay = 0.01, 0.1, 0.9, 5e-4
  c.optim.schedule, c.optim.step_every_epochs, c.optim.step_gamma = "step", 20, 0.1
  c.optim.lr_update = "epoch_end"
  c.oltr.centroids_lr, c.oltr.centroids_momentum, c.oltr.centroids_weight_decay = 0.01, 0.9, 5e-4
  c.oltr.loss_weight = OLTR_LOSS_WEIGHT
  c.dataset.open_set = True
  return reference_protocol(c)


def load_file(path: str) -> ml_collections.ConfigDict:
  """``get_config()`` of a config file, as ``ltjax --config=path`` loads it."""
  spec = importlib.util.spec_from_file_location("ltjax_user_config", path)
  if spec is None or spec.loader is None:
    raise OSError(f"cannot load {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


#: Fields that may differ when a run resumes: they change how it is logged, checkpointed,
#: parallelised or read, not what it computes.
MAY_CHANGE_ON_RESUME = (
  "log_every_steps",
  "checkpoint_every_steps",
  "keep_checkpoints",
  "eval_every_epochs",
  "num_devices",
  "init_from",
  "data.num_threads",
  "data.prefetch",
  "data.decode_cache_mb",
  "eval.batch_size",
  "dataset.root",
  "dataset.lists_dir",
  "dataset.data_dir",
  "dataset.packed_dir",
  "model.pretrained",
  "model.pretrained_allow_pickle",
)


#: Fields ``ltjax evaluate`` may override on a run's own config (with the fields of
#: ``MAY_CHANGE_ON_RESUME``): how it is evaluated, not what was trained.
EVALUATION_FIELDS = (
  "eval.batch_size",
  "eval.many_threshold",
  "eval.few_threshold",
  "eval.open_threshold",
  "eval.select",
  # The open set is test images only (never trained on): `ltjax evaluate --open_set`.
  "dataset.open_set",
  "dataset.open_list",
)


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """The ConfigDict of a saved ``config.to_dict()`` (a run's config.json): the current
  defaults with every saved field set (lists back to tuples); fields this ltjax does not
  know are ignored, fields it added since keep their defaults."""
  config = base_config()

  def assign(node, values):
    for key, value in values.items():
      if key not in node:
        continue
      if isinstance(node[key], ml_collections.ConfigDict) and isinstance(value, dict):
        assign(node[key], value)
        continue
      if isinstance(value, list):
        value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
      try:
        node[key] = value
      except TypeError:  # e.g. an int saved for a float field: the field's own type.
        node[key] = type(node[key])(value)

  assign(config, saved)
  return config


def of_run(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in ``workdir`` was trained with (its config.json).

  Raises:
    ValueError: no config.json there (not a work directory, or a run of an ltjax from
      before config.json: pass its ``--config``).
  """
  import os

  from ltjax import files

  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(
      f"{workdir} has no config.json (it is not a work directory of ltjax train or "
      "import-torch, or a run from before config.json): pass the run's --config=FILE."
    )
  saved = files.read_json(path, "restore or delete it, and pass the run's --config=FILE")
  if not isinstance(saved, dict):
    raise ValueError(f"{path} does not hold a config; pass the run's --config=FILE.")
  return from_saved(saved)


#: Fields that name files or directories: stored resolved (absolute) in a run's config, so
#: that a run evaluated, resumed or continued from another directory reads the same files.
PATH_FIELDS = (
  "init_from",
  "dataset.root",
  "dataset.lists_dir",
  "dataset.data_dir",
  "dataset.packed_dir",
  "model.pretrained",
)

#: ``config.dataset`` fields that say where a dataset is, not what it is.
DATA_LOCATIONS = ("root", "lists_dir", "data_dir", "packed_dir")


def resolve_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with every ``PATH_FIELDS`` entry made absolute (in place, and returned):
  relative to the current directory, as the command that was given it meant it. URLs
  (``gs://...``) and empty fields are left as they are."""
  import os

  for path in PATH_FIELDS:
    *parents, leaf = path.split(".")
    node = config
    for p in parents:
      node = node[p]
    value = node[leaf]
    if isinstance(value, str) and value and "://" not in value:
      node[leaf] = os.path.abspath(os.path.expanduser(value))
  return config


def same_data(dataset_a: dict, dataset_b: dict) -> bool:
  """Whether two ``config.dataset`` blocks (as dicts) describe the same data, wherever it
  is (``DATA_LOCATIONS`` aside)."""
  flat = lambda d: {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}  # noqa: E731
  a = {k: v for k, v in flat(dataset_a).items() if k not in DATA_LOCATIONS}
  b = {k: v for k, v in flat(dataset_b).items() if k not in DATA_LOCATIONS}
  keys = set(a) & set(b)  # A field one ltjax version lacks: compared where both have it.
  return all(a[k] == b[k] for k in keys)


def fingerprint(config: ml_collections.ConfigDict) -> str:
  """SHA-256 of what the config computes: every field but ``MAY_CHANGE_ON_RESUME`` (how a
  run is logged, checkpointed, parallelised and where its files are). Caches derived from
  a run (``features/*.npz``) are keyed by it and the checkpoint step."""
  import hashlib
  import json

  def flat(tree, prefix=""):
    for key, value in sorted(tree.items()):
      name = f"{prefix}{key}"
      if isinstance(value, dict):
        yield from flat(value, f"{name}.")
      elif name not in MAY_CHANGE_ON_RESUME:
        yield name, value

  text = json.dumps(list(flat(config.to_dict())), default=str)
  return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------- checks

_INT, _NUM = "an integer", "a number"
LONGTAIL_PROFILES = ("exponential", "none", "cao2019")
CIFAR_SHORTCUTS = ("conv", "pad")
EVAL_SELECT = ("final", "best_val")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


#: field -> (kind, lowest, highest, whether the lowest is excluded); None: no bound.
_RANGES = {
  "seed": (_INT, 0, None, False),
  "num_devices": (_INT, 0, None, False),
  "batch_size": (_INT, 1, None, False),
  "num_epochs": (_NUM, 0, None, True),
  "log_every_steps": (_INT, 1, None, False),
  "eval_every_epochs": (_NUM, 0, None, False),
  "checkpoint_every_steps": (_INT, 1, None, False),
  "keep_checkpoints": (_INT, 1, None, False),
  "dataset.image_size": (_INT, 0, None, False),
  "dataset.imbalance_ratio": (_NUM, 1, None, False),
  "dataset.n_max": (_INT, 0, None, False),
  "dataset.val_per_class": (_INT, 0, None, False),
  "dataset.test_per_class": (_INT, 0, None, False),
  "dataset.num_classes": (_INT, 0, None, False),
  "data.pad": (_INT, 0, None, False),
  "data.crop_size": (_INT, 1, None, False),
  "data.jitter": (_NUM, 0, None, False),
  "data.decode_min_size": (_INT, 0, None, False),
  "data.num_threads": (_INT, 1, None, False),
  "data.prefetch": (_INT, 1, None, False),
  "data.decode_cache_mb": (_INT, 0, None, False),
  "data.mixup_alpha": (_NUM, 0, None, False),
  "data.cutmix_alpha": (_NUM, 0, None, False),
  "model.width": (_NUM, 0, None, True),
  "optim.lr": (_NUM, 0, None, False),
  "optim.head_lr": (_NUM, 0, None, False),
  "optim.momentum": (_NUM, 0, 1, False),
  "optim.weight_decay": (_NUM, 0, None, False),
  "optim.step_every_epochs": (_NUM, 0, None, True),
  "optim.step_gamma": (_NUM, 0, None, True),
  "optim.warmup_epochs": (_NUM, 0, None, False),
  "oltr.fc_add": (_INT, 0, None, False),
  "oltr.centroids_lr": (_NUM, 0, None, False),
  "oltr.centroids_momentum": (_NUM, 0, 1, False),
  "oltr.centroids_weight_decay": (_NUM, 0, None, False),
  "oltr.loss_weight": (_NUM, 0, None, False),
  "oltr.margin": (_NUM, 0, None, False),
  "oltr.repel_weight": (_NUM, 0, None, False),
  "eval.batch_size": (_INT, 1, None, False),
  "eval.many_threshold": (_NUM, 0, None, False),
  "eval.few_threshold": (_NUM, 0, None, False),
  "eval.open_threshold": (_NUM, 0, 1, False),
}


def _get(config: ml_collections.ConfigDict, path: str):
  value = config
  for key in path.split("."):
    value = value[key]
  return value


def _check_normalization(d: ml_collections.ConfigDict) -> None:
  """``dataset.mean`` / ``std``: one finite number per channel, std > 0 (a std of 0 divides
  every image by zero)."""
  as_tuple = lambda v: tuple(v) if isinstance(v, list | tuple) else (v,)
  mean, std = as_tuple(d.mean), as_tuple(d.std)
  if len(mean) != len(std) or not mean:
    raise ValueError(
      f"--config.dataset.mean {mean} and --config.dataset.std {std} must give one value per "
      "image channel each."
    )
  for name, values in (("mean", mean), ("std", std)):
    for v in values:
      ok = isinstance(v, int | float | np.number) and math.isfinite(v) and abs(v) <= _FLOAT32_MAX
      if not ok or (name == "std" and v <= 0):
        need = "finite numbers > 0" if name == "std" else "finite numbers"
        raise ValueError(f"--config.dataset.{name} must hold {need}, got {values}.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Range-checks every numeric field, before any data is read or model built.

  Raises:
    ValueError: naming the field (as its command-line flag), the value and the range.
  """
  for path, (kind, low, high, open_low) in _RANGES.items():
    value = _get(config, path)
    if value is None and path == "optim.head_lr":
      continue  # Unset: the head follows optim.lr.
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool)
    is_num = is_int or (isinstance(value, float | np.floating) and math.isfinite(value))
    if is_num and kind is _NUM and abs(float(value)) > _FLOAT32_MAX:
      raise ValueError(
        f"--config.{path}={value!r} is not finite in float32, the dtype of parameters and "
        f"optimizer state (largest: {_FLOAT32_MAX:.3g}): training would write inf."
      )
    ok = is_int if kind is _INT else is_num
    if ok and low is not None:
      ok = value > low if open_low else value >= low
    if ok and high is not None:
      ok = value <= high
    if not ok:
      bound = f"> {low}" if open_low else f">= {low}"
      if high is not None:
        bound = f"in [{low}, {high}]"
      raise ValueError(f"--config.{path} must be {kind} {bound}, got {value!r}.")
  _check_normalization(config.dataset)
  if config.model.cifar_shortcut not in CIFAR_SHORTCUTS:
    raise ValueError(
      f"--config.model.cifar_shortcut={config.model.cifar_shortcut!r}; valid: "
      f"{', '.join(CIFAR_SHORTCUTS)}."
    )
  if config.model.cifar_shortcut != "conv" and not config.model.backbone.startswith("cifar_"):
    raise ValueError(
      f"--config.model.cifar_shortcut={config.model.cifar_shortcut!r} is an option of the "
      f"cifar_resnet backbones, not of {config.model.backbone}: leave it 'conv'."
    )
  if config.model.width != 1 and not config.model.backbone.startswith("cifar_"):
    raise ValueError(
      f"--config.model.width={config.model.width!r} is an option of the cifar_resnet "
      f"backbones (a channel multiplier), not of {config.model.backbone}: leave it 1."
    )
  if config.dataset.longtail not in LONGTAIL_PROFILES:
    raise ValueError(
      f"--config.dataset.longtail={config.dataset.longtail!r}; valid: "
      f"{', '.join(LONGTAIL_PROFILES)}."
    )
  if config.eval.select not in EVAL_SELECT:
    raise ValueError(
      f"--config.eval.select={config.eval.select!r}; valid: {', '.join(EVAL_SELECT)}."
    )
  if config.eval.select == "best_val" and not config.eval_every_epochs:
    raise ValueError(
      "--config.eval.select=best_val tests the best validated model, and "
      "--config.eval_every_epochs=0 validates never: set --config.eval_every_epochs=1 (the "
      "references validate every epoch)."
    )
  if config.eval.few_threshold > config.eval.many_threshold:
    raise ValueError(
      f"--config.eval.few_threshold ({config.eval.few_threshold}) must be <= "
      f"--config.eval.many_threshold ({config.eval.many_threshold})."
    )
