"""Your own data: LIFT (Shi et al., ICML 2024) on a CLIP ViT-B/16, as configs/imagenet_lt/
lift.py runs it (ltjax.config.recipes.lift: AdaptFormer in every block, the rest of the tower
frozen; a cosine head at scale 25 on the class token before CLIP's projection, started from
the text features of the class names; logit-adjusted loss; SGD lr 0.01 over the adapters
and the head, batch 128, 10 epochs, the cosine stepped after each epoch; bfloat16; the
final model tested with the five-crop ensemble). The data fields as in custom/joint.py
(an image-folder tree; 5 validation images per class carved from train when there is no
val split: only `ltjax evaluate --posthoc` reads them). Another fine-tuning method:
--config.model.peft (full, linear, adapter, lora, bitfit, ln, ssf, vpt_shallow, vpt_deep;
README "LIFT").

  ltjax clip-text ViT-B-16.pt --config=custom/lift.py --out=runs/mine/text.npz --config.dataset.root=DIR
  ltjax train --config=custom/lift.py --workdir=runs/mine/lift --config.model.pretrained=ViT-B-16.pt --config.model.text_features=runs/mine/text.npz --config.dataset.root=DIR

Not a reproduction of a published figure: LIFT's recipe on data of your own.
"""

from ltjax import config as config_lib


def get_config():
  return config_lib.lift(config_lib.custom_data(config_lib.base_config()), "clip_vit_b16")
