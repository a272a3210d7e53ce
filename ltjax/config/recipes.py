"""Stage recipes: the published training protocols, hyperparameter for hyperparameter.

A config file calls a dataset preset (``ltjax.config.presets``) and one of these: each sets
the stage, sampler, loss, optimiser and schedule of a reference experiment (Decoupling,
OLTR, LDAM-DRW, logit adjustment) and names the reference file it follows. Kept apart from
the presets so that a recipe reads as the paper's protocol, whatever the dataset;
``tests/test_configs.py`` pins every shipped config to them.
"""

from __future__ import annotations

import ml_collections

from ltjax.config.schema import OLTR_FC_ADD, OLTR_LOSS_WEIGHT

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


# ------------------------------------------------------------------------- CIFAR-LT


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


# ----------------------------------------------------------------------------- LIFT

#: LIFT's foundation models (shijxcs/LIFT ``configs/model/clip_vit_b16.yaml`` and
#: ``in21k_vit_b16.yaml``) as ltjax backbones, with the file each reads by default and the
#: normalisation LIFT's ``trainer.py`` ``build_data_loader`` gives it.
LIFT_BACKBONES = {
  # OpenAI's ViT-B/16 (LIFT: clip._MODELS["ViT-B/16"]; its head on ln_post(class token)).
  "clip_vit_b16": (
    "pretrained/ViT-B-16.pt",
    ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
  ),
  # timm 0.6.12's vit_base_patch16_224(pretrained=True): the AugReg ImageNet-21k ViT-B/16
  # fine-tuned on ImageNet-1k at 224 px, whose .npz this is.
  "vit_b16": (
    "pretrained/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"
    "--imagenet2012-steps_20k-lr_0.01-res_224.npz",
    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
  ),
}


def lift(c: ml_collections.ConfigDict, backbone: str = "clip_vit_b16") -> ml_collections.ConfigDict:
  """LIFT (Shi et al., "Long-Tail Learning with Foundation Model: Heavy Fine-Tuning Hurts",
  ICML 2024; shijxcs/LIFT ``main.py -m clip_vit_b16 adaptformer True``): a pretrained ViT-B/16
  frozen but for AdaptFormer modules in every block (bottleneck 2^max(0, floor(log2(K / 24))))
  and a cosine classifier (scale 25) on its class token before CLIP's projection, started
  from the CLIP text features of the class names ("a photo of a {}."); the logit-adjusted
  loss (tau 1); SGD over the adapters and the head only (lr 0.01, momentum 0.9, weight decay
  5e-4), batch 128, 10 epochs, CosineAnnealingLR(T_max = the epochs) stepped after each
  epoch; RandomResizedCrop(224) + flip (no colour jitter); mixed precision (bfloat16 here,
  LIFT's fp16 autocast); the
  final model tested with LIFT's test-time ensemble (five 224 crops of the image resized to
  248, logits averaged). No validation during training, as LIFT.

  ``backbone``: ``clip_vit_b16`` (LIFT's ``clip_vit_b16``) or ``vit_b16`` (its
  ``in21k_vit_b16``: mean/std 0.5, no text features, and no test-time ensemble, as its
  main-results script runs it). Sets the dataset's normalisation and replaces the preset's
  backbone; ``model.pretrained`` defaults to the file LIFT loads (``LIFT_BACKBONES``).
  ``tests/test_configs.py`` pins every value to the line of LIFT it comes from.
  """
  if backbone not in LIFT_BACKBONES:
    raise ValueError(f"LIFT's backbones are {sorted(LIFT_BACKBONES)}, got {backbone!r}.")
  clip = backbone.startswith("clip_")
  weights, (mean, std) = LIFT_BACKBONES[backbone]
  c.stage, c.method = "joint", "lift"
  c.model.backbone, c.model.pretrained = backbone, weights
  c.model.cifar_shortcut = "conv"  # A CIFAR preset's ResNet option, back to its default.
  if clip:
    c.model.clip_projection = False
  c.dataset.mean, c.dataset.std = mean, std
  c.model.peft, c.model.adapter_dim = "adaptformer", 0
  c.model.head, c.model.head_scale = "cosine", 25.0
  c.model.head_init = "text_features" if clip else "class_mean"
  c.model.dtype = "bfloat16"
  c.loss.name, c.loss.tau = "logit_adjusted", 1.0
  c.sampler.name = "instance"
  c.batch_size, c.num_epochs = 128, 10
  c.optim.name, c.optim.lr, c.optim.head_lr = "sgd", 0.01, None
  c.optim.momentum, c.optim.weight_decay, c.optim.nesterov = 0.9, 5e-4, False
  c.optim.schedule, c.optim.lr_update, c.optim.warmup_epochs = "cosine", "epoch_end", 0.0
  c.optim.freeze = ()
  c.data.augment, c.data.jitter, c.data.crop_size = "imagenet", 0.0, 224
  c.data.decode_min_size = 0
  c.data.eval_transform = "five_crop" if clip else "resize_center_crop"
  c.data.tte_expand = 24
  c.eval.select, c.eval_every_epochs = "final", 0
  c.eval.many_threshold, c.eval.few_threshold = 100, 20
  return c
