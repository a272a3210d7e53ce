"""CIFAR-100-LT, LIFT with the ImageNet-21k ViT-B/16 (AugReg) and AdaptFormer.

Reproduces shijxcs/LIFT (Shi et al., "Long-Tail Learning with Foundation Model: Heavy
Fine-Tuning Hurts", ICML 2024) scripts/run_tab1to4_main_results.sh, "LIFT with pre-trained
ViT from ImageNet-21K": `main.py -d cifar100_ir100 -m in21k_vit_b16 adaptformer True` (and
cifar100_ir50, _ir10), tested without the ensemble (the script runs no `tte True` for these).
The ViT-B/16 frozen; AdaptFormer in all 12 blocks (bottleneck 2^floor(log2(100 / 24)) = 4); a
cosine classifier (scale 25) on the class token after the final LayerNorm (768 wide);
logit-adjusted loss (tau 1); SGD over the adapters and the head only, lr 0.01, momentum 0.9,
weight decay 5e-4; batch 128, 10 epochs, CosineAnnealingLR(10) stepped after each epoch; the
32-px images through RandomResizedCrop(224) + flip, mean/std 0.5; mixed precision; the final
model tested on the whole test set with Resize(256), CenterCrop(224). No validation during
training, as LIFT: the final model is tested. tests/test_configs.py pins every value to its
line of LIFT (ltjax.config.recipes.lift).

  ltjax train --config=cifar100_lt/lift_in21k.py --workdir=runs/cifar100_lt/lift_in21k --config.model.pretrained=B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz --config.dataset.data_dir=DIR
  ltjax train --config=cifar100_lt/lift_in21k.py --workdir=runs/cifar100_lt/lift_in21k_ir10 --config.dataset.imbalance_ratio=10 --config.dataset.data_dir=DIR

(Ratio 50: `--config.dataset.imbalance_ratio=50`.) The second command reads the default
model.pretrained, pretrained/B_16-i21k-...-res_224.npz.
The head starts as LIFT's (its in21k_vit_b16.yaml: init_head class_mean): the normalised mean
feature of each class's training images through the frozen ViT (model.head_init=class_mean;
AdaptFormer starts as the identity, as LIFT's use_tuner=False). One difference: ltjax reads
the images with the config's evaluation transform (Resize(256) + CenterCrop(224)), LIFT's
with Resize(224) + CenterCrop(224); its size is not measured.
Weights: LIFT loads timm's vit_base_patch16_224(pretrained=True) at its pinned timm==0.6.12
(requirements-with-version.txt). In timm 0.6 that name is the AugReg ViT-B/16 pretrained on
ImageNet-21k and then fine-tuned on ImageNet-1k at 224 px (timm issue #1599; the timm 0.6.12
source itself was not read here), the .npz above
(https://storage.googleapis.com/vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz),
model.pretrained's default (under pretrained/). ltjax's README names the ImageNet-21k-only
AugReg .npz for vit_b16 (B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz): the
same layout, other weights; LIFT's paper calls its model "ImageNet-21K pre-trained". ltjax's
AugReg reader is tested with random weights in that layout (its ImageNet classifier is
skipped); the fine-tuned file was not read here. Needs PyTorch (pip install 'ltjax[torch]').
Data: the TFDS `cifar100` dataset as ArrayRecord (`tfds build cifar100 --data_dir=DIR
--file_format=array_record`, once, on a machine with internet). Training set: LIFT's
(datasets/cifar100.py) is the cut of Cao et al. 2019 that ltjax's dataset.longtail=cao2019
reproduces image for image (10,847 / 12,608 / 19,573 images at ratio 100 / 50 / 10).
Published figures: LIFT's README lists no accuracy. The Papers with Code archive records
LIFT (ViT-B/16, ImageNet-21K pre-training) error rates of 10.9 / 9.8 / 8.7 on CIFAR-100-LT at
ratio 100 / 50 / 10 (accuracy 89.1 / 90.2 / 91.3); many / medium / few were not in any text
read here, so none are given.
Other differences from LIFT's code, none measured (no accelerator or CIFAR copy here):
- shot groups: LIFT's are those of the ratio-100 counts at every ratio (trainer.py: 35 many /
  35 medium / 30 few); ltjax's follow the run's own counts (many > 100, few < 20 images):
  41 / 41 / 18 at ratio 50, 69 / 31 / 0 at ratio 10 (overall accuracy is unaffected);
- ltjax keeps a validation split of 20 images per class from the images the cut leaves out
  (the head class's 20 from its training images), used only by `ltjax evaluate --posthoc`;
  the training set is LIFT's, unchanged;
- bfloat16 computation with float32 parameters (model.dtype) for LIFT's fp16 autocast with a
  GradScaler (prec "amp"): 8 mantissa bits against 11, and no loss scaling;
- an epoch is exactly N samples in whole batches of 128: 848 / 985 / 1,530 steps against
  LIFT's 850 / 990 / 1,530 at ratio 100 / 50 / 10 (its DataLoader keeps each epoch's last
  batch of 95 / 64 / 117 images);
- the crops and the shuffle draw from ltjax's own random numbers (same Pillow operations and
  distributions as torchvision's RandomResizedCrop and flip, other draws);
- the AdaptFormer modules are ltjax's (model.peft), implemented to LIFT's peft_modules.py; a
  device count above one splits the batch of 128 (LIFT: one GPU; no BatchNorm).
Not yet run to completion by the team (no CIFAR copy or accelerator on the development
machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.cifar_lt(config_lib.base_config(), "cifar100")
  return config_lib.lift(c, "vit_b16")
