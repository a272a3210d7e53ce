"""``ltjax import-torch`` (a reference PyTorch checkpoint as a finished ltjax run) and
``ltjax clip-text`` (CLIP text features of a dataset's class names), apart from the other
commands because they alone need PyTorch (imported inside them)."""

from __future__ import annotations

from absl import app

from ltjax.cli.flags import ALLOW_PICKLE, CONFIG, OUT, PROMPT, WORKDIR, require


def cmd_import_torch(argv) -> None:
  """Writes a reference PyTorch checkpoint (classifier-balancing / OLTR
  final_model_checkpoint.pth) as a finished run of the config in --workdir."""
  paths = argv[1:]
  if len(paths) != 1:
    raise app.UsageError(f"import-torch takes one checkpoint file, got {paths or 'none'}.")
  require(CONFIG, "config")
  require(WORKDIR, "workdir")
  try:
    from ltjax.interop import torch_import

    summary = torch_import.import_checkpoint(
      paths[0], CONFIG.value, WORKDIR.value, allow_pickle=ALLOW_PICKLE.value
    )
  except ImportError as e:
    raise ValueError(str(e)) from e
  print(
    f"imported {paths[0]}: {summary['tensors']} tensors ({summary['parameters']:,} values) "
    f"into {summary['workdir']} as a finished '{summary['stage']}' run (step {summary['step']})."
    f"\nevaluate it with: ltjax evaluate --config=... --workdir={summary['workdir']}"
  )


def cmd_clip_text(argv) -> None:
  """Writes the CLIP text features of the config's class names (--config: its dataset's, in
  class order) by a CLIP checkpoint's text tower to --out, for model.text_features."""
  paths = argv[1:]
  if len(paths) != 1:
    raise app.UsageError(f"clip-text takes one CLIP checkpoint file, got {paths or 'none'}.")
  require(CONFIG, "config")
  require(OUT, "out")
  from ltjax.data import datasets
  from ltjax.models import backbones, text_features

  config = CONFIG.value
  backbone = backbones.from_config(config.model)
  quick_gelu = backbone.clip_quick_gelu
  if quick_gelu is None:
    raise ValueError(
      f"model.backbone={config.model.backbone!r} is not a CLIP image tower, so the config "
      "does not say which CLIP model the text features are for: use a clip_* backbone."
    )
  splits = datasets.build_splits(config.dataset, config.seed, config.data)
  if splits.class_names is None:
    imagenet = (
      " (ImageNet-LT: CLIP's names of the 1000 classes, in order: python -c \"import "
      'open_clip; print(*open_clip.IMAGENET_CLASSNAMES, sep=chr(10))" > imagenet_names.txt)'
      if config.dataset.name == "imagenet_lt"
      else ""
    )
    raise ValueError(
      f"dataset {config.dataset.name!r} has no class names here; give them with "
      f"--config.dataset.class_names=FILE (one name a line, in class-id order){imagenet}."
    )
  try:
    from ltjax.interop import clip_text

    tf = clip_text.compute(
      paths[0], splits.class_names, quick_gelu, PROMPT.value, allow_pickle=ALLOW_PICKLE.value
    )
  except ImportError as e:
    raise ValueError(str(e)) from e
  text_features.save(OUT.value, tf)
  width = "" if tf.projection is None else f", image width {tf.projection.shape[0]}"
  print(
    f"wrote the text features of {len(tf.class_names)} classes ({tf.features.shape[1]}-d"
    f"{width}; prompt {tf.prompt!r}) to {OUT.value}.\nuse them with "
    f"--config.model.text_features={OUT.value} (and --config.model.head_init=text_features)."
  )
