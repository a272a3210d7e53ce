"""Dataset presets: what a dataset is, set on a config in one call.

A config file for ImageNet-LT, Places-LT, iNaturalist 2018, CIFAR-LT or your own images
starts from :func:`ltjax.config.base_config` and calls one of these: each sets the
``dataset`` block (and the augmentation, normalisation and backbone that dataset is trained
with) and nothing of the training recipe (``ltjax.config.recipes``). Kept apart from the
schema so that adding a dataset's preset is one function here.
"""

from __future__ import annotations

import ml_collections

# Mean/std of the pixel values in [0, 1], per channel.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# classifier-balancing data/dataloader.py RGB_statistics['iNaturalist18'].
INAT_MEAN, INAT_STD = (0.466, 0.471, 0.380), (0.195, 0.194, 0.192)
# The CIFAR-LT code's (LDAM-DRW cifar_train.py, and most CIFAR code since).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
DIGITS_MEAN, DIGITS_STD = (0.305,), (0.376,)  # Measured on sklearn digits scaled to [0, 1].


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
