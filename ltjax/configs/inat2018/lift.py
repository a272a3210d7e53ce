"""iNaturalist 2018, LIFT: CLIP ViT-B/16 with AdaptFormer and a text-initialised cosine head,
20 epochs.

Reproduces shijxcs/LIFT (Shi et al., "Long-Tail Learning with Foundation Model: Heavy
Fine-Tuning Hurts", ICML 2024) scripts/run_tab1to4_main_results.sh, "LIFT on iNaturalist
2018": `main.py -d inat2018 -m clip_vit_b16 adaptformer True num_epochs 20`, then the same
with `test_only True tte True`. OpenAI's CLIP ViT-B/16 image tower frozen; AdaptFormer in all
12 blocks (bottleneck 2^floor(log2(8142 / 24)) = 256); a cosine classifier (scale 25) on the
class token after ln_post, before CLIP's projection (768 wide), started from the CLIP text
features of "a photo of a {}."; logit-adjusted loss (tau 1); SGD over the adapters and the
head only, lr 0.01, momentum 0.9, weight decay 5e-4; batch 128, 20 epochs,
CosineAnnealingLR(20) stepped after each epoch; RandomResizedCrop(224) + flip, CLIP's
mean/std (not iNaturalist's); mixed precision; the final model tested on the val list with
LIFT's test-time ensemble (Resize(248), FiveCrop(224), logits averaged). No validation
during training, as LIFT: the final model is tested. tests/test_configs.py pins every value
to its line of LIFT (ltjax.config.recipes.lift).

  ltjax clip-text ViT-B-16.pt --config=inat2018/lift.py --out=inat_text.npz --config.dataset.root=/data/inat2018 --config.dataset.lists_dir=/data/iNat_lists --config.dataset.class_names=inat_names.txt
  ltjax train --config=inat2018/lift.py --workdir=runs/inat_lift --config.model.pretrained=ViT-B-16.pt --config.model.text_features=inat_text.npz --config.dataset.root=/data/inat2018 --config.dataset.lists_dir=/data/iNat_lists --config.dataset.class_names=inat_names.txt

inat_names.txt: the species names in the lists' class-id order, from iNaturalist 2018's
categories.json (LIFT's datasets/iNaturalist18/categories.json, "name" field, the list index
being the id): `python -c "import json; print(*[c['name'] for c in json.load(open('categories.json'))], sep=chr(10))" > inat_names.txt`.
LIFT renumbers the classes by sorted name (datasets/inat2018.py); ltjax keeps the lists'
ids. A permutation of the class ids, the same classes and images; per-class results are in
another order.
Weights: OpenAI's ViT-B-16.pt, the file LIFT downloads (its clip/clip.py _MODELS["ViT-B/16"]:
https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt);
model.pretrained defaults to pretrained/ViT-B-16.pt. Needs PyTorch (pip install
'ltjax[torch]') to read it and open_clip for clip-text.
LIFT's own test without the ensemble (its training run's: Resize(256), CenterCrop(224)):
--config.data.eval_transform=resize_center_crop.
Published figure: LIFT's README lists no accuracy, and no iNaturalist 2018 figure of LIFT
(overall or per shot group) was in any text read here (the paper's Table 3 was not
readable; the Papers with Code record of it was cut off), so none is given.
Differences from LIFT's code, none measured (no accelerator or iNaturalist here):
- bfloat16 computation with float32 parameters (model.dtype) for LIFT's fp16 autocast with a
  GradScaler (prec "amp"): 8 mantissa bits against 11, and no loss scaling;
- an epoch is exactly N = 437,513 samples in whole batches of 128: 68,362 steps against
  LIFT's 68,380 (its DataLoader keeps each epoch's last batch of 9 images);
- the crops and the shuffle draw from ltjax's own random numbers (same Pillow operations and
  distributions as torchvision's RandomResizedCrop and flip, other draws);
- ltjax's validation split is the val list, which is also the test split (as the
  references; used only by `ltjax evaluate --posthoc` to choose NCM / tau-norm settings, so
  those rows select on test); LIFT has no validation;
- the AdaptFormer modules and the five-crop test are ltjax's (model.peft, data.eval_transform
  five_crop), implemented to LIFT's peft_modules.py and trainer.py; a device count above one
  splits the batch of 128 (LIFT: one GPU; no BatchNorm, so only rounding differs).
Not yet run to completion by the team (no copy of the data or accelerator on the development
machine).
"""

from ltjax import config as config_lib


def get_config():
  c = config_lib.lift(config_lib.inat2018(config_lib.base_config()), "clip_vit_b16")
  c.num_epochs = 20  # scripts/run_tab1to4_main_results.sh: num_epochs 20.
  return c
