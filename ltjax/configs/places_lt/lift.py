"""Places-LT, LIFT: CLIP ViT-B/16 with AdaptFormer and a text-initialised cosine head.

Reproduces shijxcs/LIFT (Shi et al., "Long-Tail Learning with Foundation Model: Heavy
Fine-Tuning Hurts", ICML 2024) scripts/run_tab1to4_main_results.sh, "LIFT on Places-LT":
`main.py -d places_lt -m clip_vit_b16 adaptformer True`, then the same with `test_only True
tte True`. OpenAI's CLIP ViT-B/16 image tower frozen; AdaptFormer in all 12 blocks
(bottleneck 2^floor(log2(365 / 24)) = 8); a cosine classifier (scale 25) on the class token
after ln_post, before CLIP's projection (768 wide), started from the CLIP text features of
"a photo of a {}."; logit-adjusted loss (tau 1); SGD over the adapters and the head only, lr
0.01, momentum 0.9, weight decay 5e-4; batch 128, 10 epochs, CosineAnnealingLR(10) stepped
after each epoch; RandomResizedCrop(224) + flip, CLIP's mean/std; mixed precision; the final
model tested with LIFT's test-time ensemble (Resize(248), FiveCrop(224), logits averaged). No
validation during training, as LIFT: the final model is tested. tests/test_configs.py pins
every value to its line of LIFT (ltjax.config.recipes.lift).

  ltjax clip-text ViT-B-16.pt --config=places_lt/lift.py --out=places_text.npz --config.dataset.root=/data/places365 --config.dataset.lists_dir=/data/Places_LT --config.dataset.class_names=places_names.txt
  ltjax train --config=places_lt/lift.py --workdir=runs/places_lift --config.model.pretrained=ViT-B-16.pt --config.model.text_features=places_text.npz --config.dataset.root=/data/places365 --config.dataset.lists_dir=/data/Places_LT --config.dataset.class_names=places_names.txt

places_names.txt: LIFT's own names, the second column of its datasets/Places_LT/classnames.txt
(`cut -d' ' -f2 classnames.txt > places_names.txt`; "apartment_building-outdoor": both read
underscores as spaces, keep the hyphens).
Weights: OpenAI's ViT-B-16.pt, the file LIFT downloads (its clip/clip.py _MODELS["ViT-B/16"]:
https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt);
model.pretrained defaults to pretrained/ViT-B-16.pt. Needs PyTorch (pip install
'ltjax[torch]') to read it and open_clip for clip-text.
LIFT's own test without the ensemble (its training run's: Resize(256), CenterCrop(224)):
--config.data.eval_transform=resize_center_crop.
Published figure: LIFT's README lists no accuracy. The Papers with Code archive records
52.2 top-1 on Places-LT for LIFT (ViT-B/16); many / medium / few were not in any text read
here (the paper's Table 2 was not readable), so none are given.
Differences from LIFT's code, none measured (no accelerator or Places here):
- bfloat16 computation with float32 parameters (model.dtype) for LIFT's fp16 autocast with a
  GradScaler (prec "amp"): 8 mantissa bits against 11, and no loss scaling;
- an epoch is exactly N = 62,500 samples in whole batches of 128: 4,883 steps against
  LIFT's 4,890 (its DataLoader keeps each epoch's last batch of 36 images);
- the crops and the shuffle draw from ltjax's own random numbers (same Pillow operations and
  distributions as torchvision's RandomResizedCrop and flip, other draws);
- ltjax reads Places_LT_val.txt as its validation split (never trained on; used only by
  `ltjax evaluate --posthoc` to choose NCM / tau-norm settings): LIFT reads no val list;
- the AdaptFormer modules and the five-crop test are ltjax's (model.peft, data.eval_transform
  five_crop), implemented to LIFT's peft_modules.py and trainer.py; a device count above one
  splits the batch of 128 (LIFT: one GPU; no BatchNorm, so only rounding differs).
Not yet run to completion by the team (no copy of the data or accelerator on the development
machine).
"""

from ltjax import config as config_lib


def get_config():
  return config_lib.lift(config_lib.places_lt(config_lib.base_config()), "clip_vit_b16")
