"""Every config that stands for a reference experiment, pinned to that experiment's values.

One row per reference file, read off the references' newest configs and training code:
facebookresearch/classifier-balancing (CB, commit 22370c6: config/*/*.yaml, run_networks.py,
data/dataloader.py) and zhmiao/OpenLongTailRecognition-OLTR (OLTR, newest config/*/stage_*.py,
run_networks.py). A reader can check each value against the file named in its row; an edit
of a config (or of the recipes in ltjax/config/recipes.py) that drifts from it fails here.

What the columns mean, in the references' terms:
* lr / head_lr: the feat_model / classifier optim_params lr (head_lr None: the same as lr;
  a fixed network's lr is unused and not pinned);
* lr_update: where run_networks.py calls scheduler.step(): CB before each epoch's batches
  ("epoch_start"), OLTR after them ("epoch_end"); schedule: CB's coslr (cosine, endlr 0),
  OLTR's StepLR (step_every_epochs = step_size, step_gamma = gamma);
* sampler: CB/OLTR ``sampler: null`` = "instance"; ClassAwareSampler(num_samples_cls=4) =
  "class_aware", k 4; MixedPrioritizedSampler(nroot 2) = "sqrt"; ClassPrioritySampler =
  "progressive"; shuffle_in_batch = the CB yaml's ``shuffle: true``;
* update_frozen_bn: the fixed feat_model's BatchNorm in train mode (run_networks.py calls
  model.train() on every network each epoch);
* freeze: CB ``fix: true`` = the whole backbone; OLTR Places stage 2 ``fix: True`` spares
  modulatedatt and fc (ltjax: the backbone only, the neck trains);
* mean/std, jitter: data/dataloader.py (iNaturalist18: its own statistics, no ColorJitter);
* eval.select / eval_every_epochs: run_networks.py validates after every epoch, keeps the
  weights of the best ``eval_acc_mic_top1`` (strictly greater) and tests them (and saves them
  as final_model_checkpoint.pth, which the next stage loads);
* pretrained: OLTR Places ``caffe: True`` (./logs/caffe_resnet152.pth); CB Places stage 1 is
  not in the repository (see configs/places_lt/joint.py for its sources).

The CIFAR-LT rows (the comparison set), read off two more codebases:
* LDAM (Cao et al., NeurIPS 2019, Table 2; kaidic/LDAM-DRW): ``cifar_train.py`` (batch 128, lr
  0.1, momentum 0.9, weight decay 2e-4, 200 epochs; ``adjust_learning_rate``: epoch e < 5 at
  lr (e + 1) / 5, x0.01 after epoch 160 and x0.0001 after 180 = multistep gamma 0.01 at
  (160, 180), set per epoch; ``--train_rule DRW``: ``betas = [0, 0.9999]``, ``idx = epoch //
  160``; ``LDAMLoss(max_m=0.5, s=30)``; ``transform_train``: RandomCrop(32, padding=4), flip,
  Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))), ``models/resnet_cifar.py``
  (resnet32, option-A shortcuts, ``NormedLinear`` when ``use_norm``), ``imbalance_cifar.py``
  (``imb_type='exp'``, ``imb_factor=0.01``, ``rand_number=0``: the cao2019 cut);
* LA (Menon et al., ICLR 2021, Table 2 and the code's README; google-research/
  logit_adjustment): ``main.py`` (batch 128, SGD lr 0.1, momentum 0.9, ``nesterov=True``,
  ``--mode=loss --tau=1.0``), ``utils.py`` (``dataset_mappings``: 1,241 / 1,419 epochs, warm-up
  to epoch 20 / 22 per step, x0.1 at (604, 926, 1128) / (691, 1059, 1290); ``_process_image``:
  x / 255 - 0.5), ``models.py`` (L2 1e-4 = weight decay 2e-4). Its network and cut are its
  own; ltjax keeps the LDAM-DRW ResNet-32 and cut (configs/cifar10_lt/logit_adjusted.py).

The LIFT rows (Shi et al., ICML 2024; shijxcs/LIFT), each value commented with the
``path@commit:line`` of LIFT it comes from (the commit each file was read at): the recipe is
``scripts/run_tab1to4_main_results.sh`` (``main.py -d DATA -m clip_vit_b16 adaptformer True``,
tested again with ``test_only True tte True``; ``-m in21k_vit_b16 adaptformer True`` without
the ensemble), whose model configs set what ``utils/config.py`` does not, and ``trainer.py``
(the data pipeline, optimizer, schedule, loss and test). What a config cannot pin: LIFT's
the images ``init_head: class_mean`` reads (in21k: LIFT's Resize(224) + CenterCrop(224),
ltjax's evaluation transform), fp16
autocast (ltjax: bfloat16), the ratio-100 shot groups LIFT keeps for every CIFAR ratio.
"""

import ast
import glob
import os

import pytest
from helpers import load_config

from ltjax import config as config_lib
from ltjax.cli import COMMANDS

REPO = os.path.dirname(os.path.dirname(__file__))
IMAGENET = (config_lib.IMAGENET_MEAN, config_lib.IMAGENET_STD)
INAT = ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192))

# Shared by the CB rows (coslr: true, endlr: 0.0; momentum 0.9; ImageNet-size pipeline).
CB = {
  "optim.schedule": "cosine",
  "optim.lr_update": "epoch_start",
  "optim.momentum": 0.9,
  "data.augment": "imagenet",
  "data.crop_size": 224,
  "data.eval_transform": "resize_center_crop",
  "data.decode_min_size": 0,
  "eval.select": "best_val",  # run_networks.py: the best val epoch is tested.
  "eval_every_epochs": 1,  # run_networks.py: validation after every epoch.
}
CB_JOINT = {**CB, "stage": "joint", "num_epochs": 90, "batch_size": 512, "optim.lr": 0.2}
CB_JOINT |= {"optim.head_lr": None, "optim.freeze": (), "model.pretrained": ""}
CB_CLS = {**CB, "sampler.name": "class_aware", "sampler.k": 4, "sampler.shuffle_in_batch": True}
CB_CLS |= {"update_frozen_bn": True, "optim.head_lr": None, "optim.freeze": ()}
# Shared by the OLTR rows (StepLR stepped after each epoch; momentum 0.9, weight decay 5e-4).
OLTR = {
  "optim.schedule": "step",
  "optim.lr_update": "epoch_end",
  "optim.step_gamma": 0.1,
  "optim.momentum": 0.9,
  "optim.weight_decay": 5e-4,
  "batch_size": 128,
  "data.augment": "imagenet",
  "data.jitter": 0.4,
  "dataset.mean": IMAGENET[0],
  "dataset.std": IMAGENET[1],
  "eval.select": "best_val",
  "eval_every_epochs": 1,
}
OLTR_STAGE2 = {**OLTR, "stage": "oltr", "model.head": "meta_embedding", "oltr.fc_add": 512}
OLTR_STAGE2 |= {"oltr.use_attention": True, "oltr.loss_weight": 0.01, "dataset.open_set": True}
OLTR_STAGE2 |= {"sampler.name": "class_aware", "sampler.k": 4, "sampler.shuffle_in_batch": False}
OLTR_STAGE2 |= {"oltr.centroids_lr": 0.01, "oltr.centroids_momentum": 0.9}
OLTR_STAGE2 |= {"oltr.centroids_weight_decay": 5e-4, "oltr.margin": 10.0}

# Shared by the CIFAR-LT rows: the cao2019 cut at imbalance 100, the LDAM-DRW ResNet-32 and
# pipeline (LA's mean/std replaced in its rows).
CIFAR = {
  "dataset.name": "tfds",
  "dataset.longtail": "cao2019",
  "dataset.imbalance_ratio": 100.0,
  "dataset.n_max": 0,
  "dataset.mean": (0.4914, 0.4822, 0.4465),
  "dataset.std": (0.2023, 0.1994, 0.2010),
  "data.augment": "crop_flip",
  "data.pad": 4,
  "data.mixup_alpha": 0.0,
  "data.cutmix_alpha": 0.0,
  "model.backbone": "cifar_resnet32",
  "model.cifar_shortcut": "pad",
  "sampler.name": "instance",
  "stage": "joint",
  "batch_size": 128,
  "optim.lr": 0.1,
  "optim.momentum": 0.9,
  "optim.weight_decay": 2e-4,
  "optim.head_lr": None,
  "optim.freeze": (),
}
LDAM_ERM = {**CIFAR, "num_epochs": 200, "optim.nesterov": False, "optim.schedule": "multistep"}
LDAM_ERM |= {"optim.lr_update": "epoch_end", "optim.warmup_epochs": 5}
LDAM_ERM |= {"optim.milestones": (160, 180), "optim.step_gamma": 0.01}
LDAM_ERM |= {"model.head": "linear", "loss.name": "softmax"}
LDAM_DRW = {**LDAM_ERM, "model.head": "normed_linear", "loss.name": "ldam"}
LDAM_DRW |= {"loss.max_margin": 0.5, "loss.scale": 30.0, "loss.drw_epoch": 160, "loss.beta": 0.9999}
LA = {**CIFAR, "optim.nesterov": True, "optim.schedule": "multistep", "optim.lr_update": "step"}
LA |= {"optim.step_gamma": 0.1, "dataset.mean": (0.5,) * 3, "dataset.std": (1.0,) * 3}
LA |= {"model.head": "linear", "loss.name": "logit_adjusted", "loss.tau": 1.0}
LA10 = {**LA, "num_epochs": 1241, "optim.warmup_epochs": 20, "optim.milestones": (604, 926, 1128)}
LA100 = {**LA, "num_epochs": 1419, "optim.warmup_epochs": 22}
LA100 |= {"optim.milestones": (691, 1059, 1290)}

# LIFT (shijxcs/LIFT): shared by every row. Files and the commit each was read at:
# utils/config.py@038a379, configs/model/clip_vit_b16.yaml@1643432,
# configs/model/clip_vit_b16_peft.yaml@ce15c60, configs/model/in21k_vit_b16.yaml@038a379,
# scripts/run_tab1to4_main_results.sh@038a379, trainer.py@1643432, models/models.py@ce15c60,
# models/classifiers.py@ce15c60, models/peft_vit.py@1643432, utils/losses.py@ce15c60,
# datasets/cifar100.py@ce15c60, datasets/lt_data.py@ce15c60, clip/clip.py@ce15c60,
# requirements-with-version.txt@ce15c60.
LIFT = {
  # trainer.py@1643432:439-541: one training run (train()), then test() of its final model.
  "stage": "joint",
  # scripts/run_tab1to4_main_results.sh@038a379:2 `adaptformer True` (clip_vit_b16_peft.yaml
  # @ce15c60:27 adaptformer: True); models/peft_vit.py@1643432:70 use_adaptformer;
  # peft_vit.py@1643432:83-84 partial None: all blocks.
  "model.peft": "adaptformer",
  # utils/config.py@038a379:48 adapter_dim None -> models/peft_vit.py@1643432:95
  # 2 ** max(0, int(log2(num_classes / (n_layers * 2)))): ltjax's 0.
  "model.adapter_dim": 0,
  # configs/model/clip_vit_b16.yaml@1643432:20 classifier "CosineClassifier" (utils/config.py
  # @038a379:29); models/classifiers.py@ce15c60:39-41 normalize x and w, * scale.
  "model.head": "cosine",
  # utils/config.py@038a379:30 scale = 25 (models/models.py@ce15c60:59 passes **cfg, which
  # overrides CosineClassifier's scale=30 default, classifiers.py@ce15c60:34).
  "model.head_scale": 25.0,
  # clip_vit_b16.yaml@1643432:11 prec "amp" (trainer.py@1643432:453 autocast(), :282
  # GradScaler(), :47-49 CLIP's weights in float32): ltjax's mixed precision is bfloat16.
  "model.dtype": "bfloat16",
  # clip_vit_b16.yaml@1643432:2 resolution 224 (utils/config.py@038a379:10).
  "data.crop_size": 224,
  # trainer.py@1643432:102-107 RandomResizedCrop(resolution), RandomHorizontalFlip(), no
  # ColorJitter.
  "data.augment": "imagenet",
  "data.jitter": 0.0,
  # datasets/lt_data.py@ce15c60:38 Image.open(f).convert('RGB'): the full decode.
  "data.decode_min_size": 0,
  # clip_vit_b16.yaml@1643432:24 expand 24 (utils/config.py@038a379:56); trainer.py
  # @1643432:119 Resize(resolution + expand).
  "data.tte_expand": 24,
  # clip_vit_b16.yaml@1643432:19 loss_type "LA"; trainer.py@1643432:300-301
  # LogitAdjustedLoss(cls_num_list); utils/losses.py@ce15c60:85 tau=1.0, :93 logit + tau log pi.
  "loss.name": "logit_adjusted",
  "loss.tau": 1.0,
  # clip_vit_b16.yaml@1643432:14 batch_size 128 (:15 micro_batch_size 128: no accumulation).
  "batch_size": 128,
  # clip_vit_b16.yaml@1643432:13 num_epochs 10 (iNaturalist: 20, its row).
  "num_epochs": 10,
  # trainer.py@1643432:278-280 torch.optim.SGD([tuner, head], lr=cfg.lr,
  # weight_decay=cfg.weight_decay, momentum=cfg.momentum): one lr for both groups, no
  # Nesterov; clip_vit_b16.yaml@1643432:16-18 lr 0.01, weight_decay 5e-4, momentum 0.9.
  "optim.name": "sgd",
  "optim.lr": 0.01,
  "optim.head_lr": None,
  "optim.momentum": 0.9,
  "optim.weight_decay": 5e-4,
  "optim.nesterov": False,
  # trainer.py@1643432:281 CosineAnnealingLR(self.optim, cfg.num_epochs), :526
  # self.sched.step() after each epoch's batches; no warm-up.
  "optim.schedule": "cosine",
  "optim.lr_update": "epoch_end",
  "optim.warmup_epochs": 0.0,
  # trainer.py@1643432:257-265 every model parameter frozen, then the tuner's and the head's
  # trained (what model.peft does); nothing else frozen.
  "optim.freeze": (),
  # trainer.py@1643432:175-177 DataLoader(train_dataset, batch_size=micro_batch_size,
  # shuffle=True).
  "sampler.name": "instance",
  # trainer.py@1643432:541 self.test() of the final model; no validation anywhere.
  "eval.select": "final",
  "eval_every_epochs": 0,
  # trainer.py@1643432:162-164 many > 100, medium 20..100, few < 20 training images.
  "eval.many_threshold": 100,
  "eval.few_threshold": 20,
}
LIFT_CLIP = {
  **LIFT,
  # clip_vit_b16.yaml@1643432:1 backbone "CLIP-ViT-B/16"; trainer.py@1643432:33-34
  # clip._download(clip._MODELS[...]); clip/clip.py@ce15c60:36 ViT-B-16.pt.
  "model.backbone": "clip_vit_b16",
  "model.pretrained": "pretrained/ViT-B-16.pt",
  # trainer.py@1643432:349-351 the text features mapped back through the image tower's proj:
  # the head sits before CLIP's projection (models/models.py@ce15c60:57 feat_dim =
  # image_encoder.out_dim, ln_post's width).
  "model.clip_projection": False,
  # clip_vit_b16.yaml@1643432:22 init_head "text_feat"; trainer.py@1643432:236-237,
  # :344 "a photo of a {}." (utils/config.py@038a379:54 prompt "default"), :306 "_" -> " ".
  "model.head_init": "text_features",
  # trainer.py@1643432:93-95 CLIP's mean / std.
  "dataset.mean": (0.48145466, 0.4578275, 0.40821073),
  "dataset.std": (0.26862954, 0.26130258, 0.27577711),
  # scripts/run_tab1to4_main_results.sh@038a379:3 `test_only True tte True`;
  # utils/config.py@038a379:57 tte_mode "fivecrop"; trainer.py@1643432:117-123 Resize(224 +
  # 24), FiveCrop(224); :571-573 the crops' logits averaged.
  "data.eval_transform": "five_crop",
}
LIFT_IN21K = {
  **LIFT,
  # in21k_vit_b16.yaml@038a379:1 backbone "IN21K-ViT-B/16"; trainer.py@1643432:56
  # vit_base_patch16_224(pretrained=True) at requirements-with-version.txt@ce15c60:8
  # timm==0.6.12: AugReg ImageNet-21k, fine-tuned on ImageNet-1k at 224 px.
  "model.backbone": "vit_b16",
  "model.pretrained": (
    "pretrained/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"
    "--imagenet2012-steps_20k-lr_0.01-res_224.npz"
  ),
  # in21k_vit_b16.yaml@038a379:22 init_head "class_mean" (trainer.py@1643432:238-239: the
  # normalised class means of the frozen features, init_head_class_mean).
  "model.head_init": "class_mean",
  # trainer.py@1643432:96-98 mean / std 0.5 for a backbone that is not CLIP.
  "dataset.mean": (0.5, 0.5, 0.5),
  "dataset.std": (0.5, 0.5, 0.5),
  # scripts/run_tab1to4_main_results.sh@038a379:22-24 no tte run; in21k_vit_b16.yaml
  # @038a379:23 tte False; trainer.py@1643432:141-146 Resize(224 * 8 // 7), CenterCrop(224).
  "data.eval_transform": "resize_center_crop",
}
# The CIFAR-100-LT rows: configs/data/cifar100_ir100.yaml@ce15c60:1 CIFAR100_IR100;
# datasets/cifar100.py@ce15c60:76 imb_factor=0.01 (ratio 100; :71 0.02, :66 0.1), :14
# np.random.seed(0), :24-27 int(500 * imb_factor ** (c / 99)), :41 shuffled: the cao2019 cut.
LIFT_CIFAR = {"dataset.name": "tfds", "dataset.tfds_name": "cifar100"}
LIFT_CIFAR |= {"dataset.longtail": "cao2019", "dataset.imbalance_ratio": 100.0}
LIFT_CIFAR |= {"model.cifar_shortcut": "conv"}  # The CIFAR preset's ResNet option, unset.

REFERENCE = [
  ("cifar10_lt/joint.py", "LDAM cifar_train.py", {**LDAM_ERM, "dataset.tfds_name": "cifar10"}),
  ("cifar100_lt/joint.py", "LDAM cifar_train.py", {**LDAM_ERM, "dataset.tfds_name": "cifar100"}),
  (
    "cifar10_lt/ldam_drw.py",
    "LDAM cifar_train.py --loss_type LDAM --train_rule DRW",
    {**LDAM_DRW, "dataset.tfds_name": "cifar10"},
  ),
  (
    "cifar100_lt/ldam_drw.py",
    "LDAM cifar_train.py --loss_type LDAM --train_rule DRW",
    {**LDAM_DRW, "dataset.tfds_name": "cifar100"},
  ),
  (
    "cifar10_lt/logit_adjusted.py",
    "LA main.py --mode=loss",
    {**LA10, "dataset.tfds_name": "cifar10"},
  ),
  (
    "cifar100_lt/logit_adjusted.py",
    "LA main.py --mode=loss",
    {**LA100, "dataset.tfds_name": "cifar100"},
  ),
  (
    "imagenet_lt/joint_instance.py",
    "CB config/ImageNet_LT/feat_uniform.yaml",
    {**CB_JOINT, "model.backbone": "resnext50_32x4d", "sampler.name": "instance"}
    | {"optim.weight_decay": 5e-4, "dataset.mean": IMAGENET[0], "data.jitter": 0.4},
  ),
  (
    "imagenet_lt/joint_class_balanced.py",
    "CB config/ImageNet_LT/feat_balance.yaml",
    {**CB_JOINT, "model.backbone": "resnext50_32x4d", "sampler.name": "class_aware"}
    | {"sampler.k": 4, "sampler.shuffle_in_batch": True, "optim.weight_decay": 5e-4},
  ),
  (
    "imagenet_lt/joint_sqrt.py",
    "CB config/ImageNet_LT/feat_squareroot.yaml",
    {**CB_JOINT, "model.backbone": "resnext50_32x4d", "sampler.name": "sqrt"}
    | {"optim.weight_decay": 5e-4},
  ),
  (
    "imagenet_lt/joint_progressive.py",
    "CB config/ImageNet_LT/feat_shift.yaml",
    {**CB_JOINT, "model.backbone": "resnext50_32x4d", "sampler.name": "progressive"}
    | {"optim.weight_decay": 5e-4},
  ),
  (
    "imagenet_lt/crt.py",
    "CB config/ImageNet_LT/cls_crt.yaml",
    {**CB_CLS, "stage": "crt", "model.head": "linear", "model.backbone": "resnext50_32x4d"}
    | {"num_epochs": 10, "batch_size": 512, "optim.lr": 0.2, "optim.weight_decay": 5e-4}
    | {"dataset.mean": IMAGENET[0], "dataset.std": IMAGENET[1], "data.jitter": 0.4},
  ),
  (
    "imagenet_lt/lws.py",
    "CB config/ImageNet_LT/cls_lws.yaml",
    {**CB_CLS, "stage": "lws", "model.head": "lws", "model.backbone": "resnext50_32x4d"}
    | {"num_epochs": 5, "batch_size": 512, "optim.lr": 0.2, "optim.weight_decay": 5e-4},
  ),
  (
    "places_lt/crt.py",
    "CB config/Places_LT/cls_crt.yaml",
    {**CB_CLS, "stage": "crt", "model.head": "linear", "model.backbone": "resnet152"}
    | {"num_epochs": 10, "batch_size": 256, "optim.lr": 0.1, "optim.weight_decay": 5e-4}
    | {"dataset.mean": IMAGENET[0], "data.jitter": 0.4},
  ),
  (
    "places_lt/lws.py",
    "CB config/Places_LT/cls_lws.yaml",
    {**CB_CLS, "stage": "lws", "model.head": "lws", "model.backbone": "resnet152"}
    | {"num_epochs": 5, "batch_size": 256, "optim.lr": 0.1, "optim.weight_decay": 5e-4},
  ),
  (
    "inat2018/joint.py",
    "CB config/iNaturalist18/feat_unifrom.yaml",
    {**CB_JOINT, "model.backbone": "resnet50", "sampler.name": "instance"}
    | {"optim.weight_decay": 1e-4, "dataset.mean": INAT[0], "dataset.std": INAT[1]}
    | {"data.jitter": 0.0},
  ),
  (
    "inat2018/crt.py",
    "CB config/iNaturalist18/cls_crt.yaml",
    {**CB_CLS, "stage": "crt", "model.head": "linear", "model.backbone": "resnet50"}
    | {"num_epochs": 30, "batch_size": 512, "optim.lr": 0.2, "optim.weight_decay": 1e-4}
    | {"dataset.mean": INAT[0], "dataset.std": INAT[1], "data.jitter": 0.0},
  ),
  (
    "inat2018/lws.py",
    "CB config/iNaturalist18/cls_lws.yaml",
    {**CB_CLS, "stage": "lws", "model.head": "lws", "model.backbone": "resnet50"}
    | {"num_epochs": 5, "batch_size": 512, "optim.lr": 0.2, "optim.weight_decay": 1e-4}
    | {"dataset.mean": INAT[0], "data.jitter": 0.0},
  ),
  (
    "imagenet_lt/oltr_stage1.py",
    "OLTR config/ImageNet_LT/stage_1.py",
    {**OLTR, "stage": "joint", "model.backbone": "resnet10", "sampler.name": "instance"}
    | {"num_epochs": 30, "optim.lr": 0.1, "optim.head_lr": None, "optim.step_every_epochs": 10}
    | {"oltr.fc_add": 0, "optim.freeze": (), "model.pretrained": ""},
  ),
  (
    "imagenet_lt/oltr_stage2.py",
    "OLTR config/ImageNet_LT/stage_2_meta_embedding.py",
    {**OLTR_STAGE2, "model.backbone": "resnet10", "num_epochs": 60, "optim.lr": 0.01}
    | {"optim.head_lr": 0.1, "optim.step_every_epochs": 20, "optim.freeze": ()},
  ),
  (
    "places_lt/oltr_stage1.py",
    "OLTR config/Places_LT/stage_1.py",
    {**OLTR, "stage": "joint", "model.backbone": "resnet152", "sampler.name": "instance"}
    | {"num_epochs": 30, "optim.lr": 0.001, "optim.head_lr": 0.1, "optim.step_every_epochs": 10}
    | {
      "oltr.fc_add": 512,
      "optim.freeze": (),
      "model.pretrained": "pretrained/caffe_resnet152.pth",
    },
  ),
  (
    "places_lt/oltr_stage2.py",
    "OLTR config/Places_LT/stage_2_meta_embedding.py",
    {**OLTR_STAGE2, "model.backbone": "resnet152", "num_epochs": 30, "optim.lr": 1e-4}
    | {"optim.head_lr": 0.01, "optim.step_every_epochs": 10, "optim.freeze": ("^backbone/",)},
  ),
  (
    "imagenet_lt/lift.py",
    "LIFT scripts/run_tab1to4_main_results.sh",
    # configs/data/imagenet_lt.yaml@ce15c60:1 ImageNet_LT (datasets/imagenet_lt.py@ce15c60:7-8
    # ImageNet_LT_train.txt / _test.txt).
    {**LIFT_CLIP, "dataset.name": "imagenet_lt"},
  ),
  (
    "places_lt/lift.py",
    "LIFT scripts/run_tab1to4_main_results.sh",
    # configs/data/places_lt.yaml@ce15c60:1 Places_LT (datasets/places_lt.py@ce15c60:7-8).
    {**LIFT_CLIP, "dataset.name": "places_lt"},
  ),
  (
    "inat2018/lift.py",
    "LIFT scripts/run_tab1to4_main_results.sh",
    # configs/data/inat2018.yaml@ce15c60:1 iNaturalist2018 (datasets/inat2018.py@ce15c60:9-10
    # iNaturalist18_train.txt / _val.txt, tested on val; :44-45 its classes renumbered by
    # sorted name, a permutation); scripts/run_tab1to4_main_results.sh@038a379:10
    # num_epochs 20; CLIP's mean / std (trainer.py@1643432:93-95), not iNaturalist's.
    {**LIFT_CLIP, "dataset.name": "inat2018", "num_epochs": 20},
  ),
  (
    "cifar100_lt/lift.py",
    "LIFT scripts/run_tab1to4_main_results.sh",
    # scripts/run_tab1to4_main_results.sh@038a379:14, :17 (ratios 50, 10: :15-16, :18-19).
    {**LIFT_CLIP, **LIFT_CIFAR},
  ),
  (
    "cifar100_lt/lift_in21k.py",
    "LIFT scripts/run_tab1to4_main_results.sh",
    # scripts/run_tab1to4_main_results.sh@038a379:22 (ratios 50, 10: :23-24).
    {**LIFT_IN21K, **LIFT_CIFAR},
  ),
]


def field(config, path):
  value = config
  for key in path.split("."):
    value = value[key]
  return tuple(value) if isinstance(value, list | tuple) else value


@pytest.mark.parametrize("name, reference, values", REFERENCE, ids=[r[0] for r in REFERENCE])
def test_config_reproduces_its_reference(name, reference, values):
  config = load_config(os.path.join(REPO, "configs", name))
  drift = {
    key: (field(config, key), want)
    for key, want in values.items()
    if field(config, key) != (tuple(want) if isinstance(want, list) else want)
  }
  assert not drift, (
    f"configs/{name} differs from {reference}: {{field: (config, reference)}} {drift}"
  )
  with open(os.path.join(REPO, "configs", name)) as f:
    text = f.read()
  assert reference.split(" ", 1)[1] in text, f"configs/{name}'s docstring must name {reference}"


def test_places_joint_follows_the_decoupling_paper_and_its_authors():
  """No reference file: the Decoupling paper's defaults (SGD 0.9, batch 512, cosine 0.2 ->
  0), an ImageNet-pretrained ResNet-152, and the authors' answers in classifier-balancing
  issues #2/#4 (only layer4 and the classifier train; 30 epochs; cosine)."""
  config = load_config(os.path.join(REPO, "configs", "places_lt", "joint.py"))
  want = {**CB_JOINT, "model.backbone": "resnet152", "sampler.name": "instance"}
  want |= {"num_epochs": 30, "optim.weight_decay": 5e-4, "data.jitter": 0.4}
  want |= {"model.pretrained": "pretrained/caffe_resnet152.pth"}
  want["optim.freeze"] = ("^backbone/(conv1|bn1|layer[123]_)",)
  drift = {k: (field(config, k), v) for k, v in want.items() if field(config, k) != v}
  assert not drift, drift


CONFIGS = sorted(
  os.path.relpath(p, REPO)
  for p in glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True)
  if os.path.basename(p) != "run.py"  # ltjax evaluate's reader of a run's config.json.
)


def config_file(name):
  """A --config value as the command line resolves it: a path, or a packaged name."""
  path = os.path.join(REPO, name)
  return path if os.path.exists(path) else os.path.join(REPO, "configs", name)


@pytest.mark.parametrize("path", CONFIGS)
def test_docstring_commands_paste_into_a_shell(path):
  """Each command is one line (no continuation that a shell would drop) naming an existing
  config, a real command and real config fields."""

  with open(os.path.join(REPO, path)) as f:
    doc = ast.get_docstring(ast.parse(f.read()))
  commands = [line.strip() for line in doc.splitlines() if line.startswith("  ltjax ")]
  assert commands, f"{path}: no command in its docstring"
  assert "\\\\" not in doc, f"{path}: a line continuation in its docstring"
  short = path.removeprefix("configs/")
  runs = any(f"--config={path}" in c or f"--config={short}" in c for c in commands)
  assert runs, f"{path}: no command runs it"
  for command in commands:
    words = command.split()
    assert words[1] in COMMANDS, command
    for word in words[2:]:
      if word.startswith("--config="):
        config = load_config(config_file(word.split("=", 1)[1]))
      elif word.startswith("--config."):
        key = word[len("--config.") :].split("=", 1)[0]
        assert field(config, key) is not None or key.endswith("head_lr"), (command, key)


@pytest.mark.parametrize("path", CONFIGS)
def test_docstring_says_which_model_the_config_tests(path):
  """A docstring that says the final model is tested belongs to a config that tests it: the
  reference configs select on validation (eval.select=best_val) as the references do."""
  with open(os.path.join(REPO, path)) as f:
    doc = " ".join(ast.get_docstring(ast.parse(f.read())).split())
  select = load_config(config_file(path)).eval.select
  if "final model is tested" in doc:
    assert select == "final", f"{path}: its docstring says the final model is tested"
