"""What each field of the base config means, but the registered components' own options:
the one place its meaning is written.

A registered component's option (a loss's, sampler's, optimizer's, schedule's, evaluator's,
augmentation's, evaluation transform's, head's, backbone's or fine-tuning method's) and a
field of a block one class owns (OLTR's) mean what that class's docstring says of them (its
``Attributes:`` section, read by ``ltjax.config.declared``); every other field means what
this table says: the run's skeleton, the dataset's fields and the fields that choose.
``ltjax train --config=FILE --help`` prints these beside the fields the config's components
read (``ltjax.config.help``); ``tests/test_config_help.py`` fails when a field of
:func:`ltjax.config.base_config` has no meaning in either place or in both, or an entry
names no field. Kept apart from the schema so that the schema reads as the list of fields
and their defaults, and a meaning is written once, not in a comment and a help table that
drift apart.

The entries follow ``base_config``'s order, which is the order ``--help`` lists them in.
"""

from __future__ import annotations

#: ``"block.field"`` (or ``"field"`` for the run's own) -> what it means.
FIELD_DOCS: dict[str, str] = {
  # ------------------------------------------------------------------------------- run
  "stage": "Which training recipe; see ltjax.train.stages.STAGES.",
  "method": "Name of this model's entry in results.json.",
  "seed": "Seed of everything random: the data's cut and order, augmentation, initialisation.",
  "num_devices": "Devices to train on; 0 = every device of every process.",
  "init_from": "Work (or checkpoints) directory of the stage-1 run (cRT, LWS, OLTR stage 2).",
  "batch_size": "Global batch size, over all devices and processes.",
  "num_epochs": "Training epochs (passes of the sampler over the training set).",
  "log_every_steps": "Steps between training-metric log lines (metrics.jsonl, TensorBoard).",
  "eval_every_epochs": (
    "Validation accuracy during training every this many epochs; 0 = only at the end."
  ),
  "checkpoint_every_steps": "Steps between checkpoints (one is also written at the end).",
  "keep_checkpoints": "How many of the latest checkpoints are kept.",
  # --------------------------------------------------------------------------- dataset
  "dataset.name": "Which dataset; see ltjax.data.datasets.DATASETS.",
  "dataset.tfds_name": (
    "TFDS name (optionally ':version'). With name 'tfds': the dataset to cut a long tail from "
    "(cifar10, ...). With a split-list dataset: read the train/val/test lists' images from this "
    "prepared TFDS dataset instead of root (imagenet_lt: imagenet2012, or TFDS's own "
    "imagenet_lt; places_lt: places365_small; inat2018: i_naturalist2018), matching list "
    "entries to TFDS records by file name; the lists are still read from lists_dir."
  ),
  "dataset.data_dir": "TFDS data directory of tfds_name; '' = the TFDS default.",
  "dataset.train_split": "TFDS split the training images (and the validation pool) come from.",
  "dataset.test_split": "TFDS split of the test images.",
  "dataset.image_size": "TFDS images: side they are resized to when read; 0 = as stored.",
  "dataset.imbalance_ratio": "n_max / n_min of the exponential train profile.",
  "dataset.n_max": "Head-class size; 0 = as many as the pool allows.",
  "dataset.val_per_class": (
    "Balanced validation images per class, carved from the training pool (never from test); "
    "0 = no validation split."
  ),
  "dataset.test_per_class": (
    "Balanced test images per class; only for datasets without a test split (digits)."
  ),
  "dataset.open_classes": "Class ids held out of training; their test images become -1.",
  "dataset.root": "Split-list datasets: the image directory the list paths are relative to.",
  "dataset.lists_dir": (
    "Split-list datasets: where ImageNet_LT_train.txt etc. are (default root)."
  ),
  "dataset.open_set": (
    "Split-list datasets: append the open-set list (label -1) to test. Its images are in no "
    "TFDS dataset: with tfds_name they are still read from root (or packed_dir)."
  ),
  "dataset.packed_dir": (
    "Split-list datasets: read every split from the ArrayRecord shards that `ltjax prepare` "
    "wrote to this directory instead of the image files under root (then not needed). With "
    "tfds_name set, only the open split is read from here."
  ),
  "dataset.mean": "Per-channel mean of the pixel values in [0, 1], subtracted from every image.",
  "dataset.std": "Per-channel standard deviation of the pixel values in [0, 1], divided out.",
  "dataset.allow_train_duplicates": (
    "A record listed twice in the train split is refused (as one in two splits always is); "
    "True keeps such repeats (oversampling by repetition, on purpose)."
  ),
  "dataset.train_list": (
    "Your own data, name 'lists': the training list of 'path label' lines (paths relative to "
    "root, or absolute). The training split's own imbalance is kept; without a val list (or "
    "val/ folder) val_per_class images per class are carved from train by seed."
  ),
  "dataset.val_list": "Your own data, name 'lists': the validation list (optional).",
  "dataset.test_list": "Your own data, name 'lists': the test list.",
  "dataset.open_list": "Optional open-set images (label -1), read with open_set=True.",
  "dataset.num_classes": "0 = from the data (largest label + 1; the folders); else checked.",
  "dataset.class_names": (
    "Optional file of class names, one a line in class-id order (an image folder: default "
    "its folders' names; the reference lists name none: CLIP's text features need it)."
  ),
  "dataset.longtail": (
    "How the training split of 'digits' and 'tfds' is cut: 'exponential' (n_j = n_max * "
    "imbalance_ratio^(-j/(K-1)), images drawn by seed), 'none' (a dataset's own class "
    "distribution, as it is) or 'cao2019' (TFDS CIFAR-10/100 only: the published CIFAR-LT "
    "training set of Cao et al. 2019, image for image; see "
    "ltjax.data.datasets.build_cao2019_splits for its validation rule)."
  ),
  # ------------------------------------------------------------------------------ data
  "data.augment": (
    "Training augmentation; see ltjax.data.pp.augment.AUGMENTATIONS. 'imagenet_device': the "
    "random numbers of 'imagenet', but the resize, flip and jitter run in the train step "
    "(ltjax.data.pp.device_ops)."
  ),
  "data.eval_transform": (
    "Evaluation transform (ltjax.data.pp.augment.EVAL_TRANSFORMS): 'none' (the stored "
    "images); 'resize_center_crop' (shorter side to crop_size * 256 / 224, central crop_size "
    "crop); 'five_crop' (LIFT's test-time ensemble: shorter side to crop_size + tte_expand, "
    "four corner and the central crop_size crops, the logits averaged over the five)."
  ),
  "data.decode_min_size": (
    "Training images only: JPEG decoding may downscale by powers of two while the shorter "
    "side stays >= this (libjpeg's scaled decoding, as PIL's draft mode): ~1.2x faster "
    "decoding of images whose shorter side is >= 2x this (BENCHMARKS.md, 'JPEG decoder "
    "choice'), slightly other pixels than the references' full decode. 0 = full resolution, "
    "as the references; evaluation always decodes in full."
  ),
  "data.skip_corrupt": "Replace unreadable images by another of the class (logged).",
  "data.decode_cache_mb": (
    "Decoded train and val images kept in memory, up to this many MB (0: none): a dataset of "
    "small images is decoded once, not every epoch (the same pixels; BENCHMARKS.md, issue 35)."
  ),
  "data.num_threads": "grain reader threads.",
  "data.prefetch": "Batches read ahead (at least data.num_threads are).",
  "data.mixup_alpha": (
    "mixup (Zhang et al., ICLR 2018) in the train step, on device: lambda ~ Beta(alpha, alpha) "
    "per batch, the batch mixed with a permutation of itself, the loss lambda L(y) + "
    "(1 - lambda) L(y'). 0 = off; with cutmix_alpha > 0 too, each batch one of the two with "
    "probability 0.5. Not with OLTR stage 2 (its centroids loss)."
  ),
  "data.cutmix_alpha": (
    "CutMix (Yun et al., ICCV 2019), as mixup_alpha: lambda ~ Beta(alpha, alpha) per batch. "
    "0 = off. Not with OLTR stage 2 (its centroids loss)."
  ),
  # --------------------------------------------------------------------------- sampler
  "sampler.name": "Which sampler; see ltjax.data.samplers.SAMPLERS.",
  # ------------------------------------------------------------------------------ loss
  "loss.name": (
    "The classification loss every stage trains with (OLTR adds its centroids term): "
    "softmax | logit_adjusted | focal | class_balanced | ldam; see ltjax.losses.LOSSES."
  ),
  # ----------------------------------------------------------------------------- model
  "model.backbone": "Which backbone; see ltjax.models.BACKBONES.",
  "model.head": "Which classifier head; see ltjax.models.head_registry.HEADS.",
  "model.head_init": (
    "'' = the head's own initialisation; 'text_features' = the classifier starts from the "
    "CLIP text features of the class names in model.text_features (LIFT's init_head=text_feat); "
    "'class_mean' = from the normalised class means of the training features (LIFT's "
    "init_head=class_mean)."
  ),
  "model.text_features": (
    "CLIP text features of the class names ('ltjax clip-text' writes them): what "
    "model.head_init='text_features' starts from and the zero-shot row scores with."
  ),
  "model.dtype": "Computation dtype; parameters stay float32.",
  "model.pretrained": (
    "The weight file a fresh run's backbone starts from, as the backbone reads it: for a "
    "ResNet a PyTorch state dict (torchvision / reference layout, e.g. torchvision's ImageNet "
    "resnet152 or OLTR's caffe_resnet152.pth; its classifier fc.* skipped); for clip_* / "
    "openclip_* a CLIP image tower (OpenAI's ViT-B-16.pt, an OpenCLIP state dict or "
    "open_clip_model.safetensors; the text tower skipped); for vit_* an AugReg .npz (its "
    "classifier skipped). Set dataset.mean/std to what the weights expect (a warning says "
    "it); README 'Pretrained weights'. '' = random initialisation."
  ),
  "model.pretrained_allow_pickle": (
    "Also unpickle Python objects other than tensors in model.pretrained (can run code: only "
    "for files you trust; the same opt-in as `ltjax import-torch --allow_pickle`)."
  ),
  # ----------------------------------------------------------------------------- optim
  "optim.name": "The optimizer: sgd (PyTorch's SGD, every reference recipe) | adamw; see "
  "ltjax.train.optim.OPTIMIZERS.",
  "optim.schedule": (
    "Learning-rate schedule: cosine | step | multistep | constant; see ltjax.train.optim.SCHEDULES."
  ),
  # ------------------------------------------------------------------------------ eval
  "eval.batch_size": "Global batch size of evaluation (validation, test, features).",
  "eval.many_threshold": "Many-shot classes: n_j > this many training images (papers: 100).",
  "eval.few_threshold": "Few-shot classes: n_j < this many training images (papers: 20).",
  "eval.open_threshold": "Open set: predict 'unknown' below this max probability.",
  "eval.select": (
    "Which model is tested: 'final' (the last step) or 'best_val' (the validation with the "
    "best overall accuracy, every eval_every_epochs; kept apart in <workdir>/best/)."
  ),
  "eval.evaluators": (
    "What a results row holds, in its order: registered evaluators of "
    "ltjax.evaluate.evaluators ('closed_set': shot-group accuracies, 'top5', 'calibration': "
    "ECE and NLL, 'open_set': F-measures and AUROC on open-set images)."
  ),
  "eval.posthoc": (
    "The post-hoc methods `ltjax evaluate --posthoc` runs, in this order (registered in "
    "ltjax.evaluate.posthoc_methods: 'ncm', 'tau_norm', 'logit_adjustment', 'zero_shot'); "
    "empty: every registered one."
  ),
}
