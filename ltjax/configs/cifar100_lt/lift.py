"""CIFAR-100-LT, LIFT: CLIP ViT-B/16 with AdaptFormer and a text-initialised cosine head.

Reproduces shijxcs/LIFT (Shi et al., "Long-Tail Learning with Foundation Model: Heavy
Fine-Tuning Hurts", ICML 2024) scripts/run_tab1to4_main_results.sh, "LIFT on CIFAR-100-LT":
`main.py -d cifar100_ir100 -m clip_vit_b16 adaptformer True` (and cifar100_ir50, _ir10),
then the same with `test_only True tte True`. OpenAI's CLIP ViT-B/16 image tower frozen;
AdaptFormer in all 12 blocks (bottleneck 2^floor(log2(100 / 24)) = 4); a cosine classifier
(scale 25) on the class token after ln_post, before CLIP's projection (768 wide), started
from the CLIP text features of "a photo of a {}."; logit-adjusted loss (tau 1); SGD over the
adapters and the head only, lr 0.01, momentum 0.9, weight decay 5e-4; batch 128, 10 epochs,
CosineAnnealingLR(10) stepped after each epoch; the 32-px images through RandomResizedCrop(224)
+ flip, CLIP's mean/std; mixed precision; the final model tested on the whole test set with
LIFT's test-time ensemble (Resize(248), FiveCrop(224), logits averaged). No validation during
training, as LIFT: the final model is tested. tests/test_configs.py pins every value to its
line of LIFT (ltjax.config.recipes.lift).

  ltjax clip-text ViT-B-16.pt --config=cifar100_lt/lift.py --out=cifar100_text.npz --config.dataset.data_dir=DIR --config.dataset.class_names=cifar100_names.txt
  ltjax train --config=cifar100_lt/lift.py --workdir=runs/cifar100_lt/lift --config.model.pretrained=ViT-B-16.pt --config.model.text_features=cifar100_text.npz --config.dataset.data_dir=DIR --config.dataset.class_names=cifar100_names.txt
  ltjax train --config=cifar100_lt/lift.py --workdir=runs/cifar100_lt/lift_ir50 --config.dataset.imbalance_ratio=50 --config.model.pretrained=ViT-B-16.pt --config.model.text_features=cifar100_text.npz --config.dataset.data_dir=DIR --config.dataset.class_names=cifar100_names.txt
  ltjax train --config=cifar100_lt/lift.py --workdir=runs/cifar100_lt/lift_ir10 --config.dataset.imbalance_ratio=10 --config.model.pretrained=ViT-B-16.pt --config.model.text_features=cifar100_text.npz --config.dataset.data_dir=DIR --config.dataset.class_names=cifar100_names.txt

cifar100_names.txt: CIFAR-100's 100 fine-label names one a line in label order, TFDS's own
(`python -c "import tensorflow_datasets as tfds; print(*tfds.builder('cifar100',
data_dir='DIR').info.features['label'].names, sep=chr(10))"`), the names and order of
torchvision's `classes` that LIFT prompts with ("aquarium_fish" is written "aquarium fish", as
LIFT does). The names leave the cut as it is; the splits' digests include them, so give the
same file to every command of a run.
Data: the TFDS `cifar100` dataset as ArrayRecord (`tfds build cifar100 --data_dir=DIR
--file_format=array_record`, once, on a machine with internet). Imbalance ratio 100 by
default; `--config.dataset.imbalance_ratio=50` or 10 for LIFT's cifar100_ir50 / _ir10.
Training set: LIFT's (datasets/cifar100.py: NumPy seeded 0, class c keeps
int(500 * (1 / ratio)^(c / 99)) of its images, shuffled in CIFAR's file order) is the cut of
Cao et al. 2019 that ltjax's dataset.longtail=cao2019 reproduces image for image: the same
10,847 / 12,608 / 19,573 images at ratio 100 / 50 / 10.
Weights: OpenAI's ViT-B-16.pt, the file LIFT downloads (its clip/clip.py _MODELS["ViT-B/16"]:
https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt);
model.pretrained defaults to pretrained/ViT-B-16.pt. Needs PyTorch (pip install
'ltjax[torch]') to read it and open_clip for clip-text.
LIFT's own test without the ensemble (its training run's: Resize(256), CenterCrop(224)):
--config.data.eval_transform=resize_center_crop.
Published figures: LIFT's README lists no accuracy. The Papers with Code archive records
LIFT (ViT-B/16, CLIP) error rates of 18.3 / 16.9 / 15.1 on CIFAR-100-LT at ratio 100 / 50 /
10 (accuracy 81.7 / 83.1 / 84.9); many / medium / few were not in any text read here (the
paper's Table 4 was not readable), so none are given.
Differences from LIFT's code, none measured (no accelerator or CIFAR copy here):
- shot groups: LIFT's are those of the ratio-100 counts at every ratio (trainer.py: 35 many /
  35 medium / 30 few); ltjax's follow the run's own counts (many > 100, few < 20 images):
  41 / 41 / 18 at ratio 50, 69 / 31 / 0 at ratio 10, so only ratio 100's many / medium / few
  compare (overall accuracy is unaffected);
- ltjax keeps a validation split of 20 images per class from the images the cut leaves out
  (the head class's 20 from its training images; README, CIFAR-10-LT), used only by `ltjax
  evaluate --posthoc`; the training set is LIFT's, unchanged;
- bfloat16 computation with float32 parameters (model.dtype) for LIFT's fp16 autocast with a
  GradScaler (prec "amp"): 8 mantissa bits against 11, and no loss scaling;
- an epoch is exactly N samples in whole batches of 128: 848 / 985 / 1,530 steps against
  LIFT's 850 / 990 / 1,530 at ratio 100 / 50 / 10 (its DataLoader keeps each epoch's last
  batch of 95 / 64 / 117 images);
- the crops and the shuffle draw from ltjax's own random numbers (same Pillow operations and
  distributions as torchvision's RandomResizedCrop and flip, other draws);
- the AdaptFormer modules and the five-crop test are ltjax's (model.peft, data.eval_transform
  five_crop), implemented to LIFT's peft_modules.py and trainer.py; a device count above one
  splits the batch of 128 (LIFT: one GPU; no BatchNorm, so only rounding differs).
Not yet run to completion by the team (no CIFAR copy or accelerator on the development
machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.cifar_lt(config_lib.base_config(), "cifar100")
  return config_lib.lift(c, "clip_vit_b16")
