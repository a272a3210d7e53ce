"""What a fresh run loads before its first step (``Stage.start``): the backbone of
``model.pretrained``, the subtrees of an earlier stage (``init_from``), checked to have this
run's classes and tower, and the head's start (``model.head_init``)."""

from __future__ import annotations

import logging

import jax
import numpy as np

from ltjax.evaluate import runner
from ltjax.models import text_features
from ltjax.train import frozen as frozen_lib
from ltjax.train import init_from as init_lib

log = logging.getLogger(__name__)


def load_earlier_stage(exp, state, stage):
  """``state`` with the subtrees ``stage.subtrees_to_load`` names (and the backbone's
  BatchNorm statistics) copied from the latest checkpoint of ``config.init_from``."""
  config = exp.config
  params, batch_stats, meta = init_lib.load_variables(config.init_from)
  record = meta.get("frozen_weights")
  if record:  # A parameter-efficient run: its frozen parameters are in its weight file.
    frozen_lib.check_file(record, record["pretrained"], f"init_from={config.init_from}")
    source = f"{record['pretrained']} (the weight file of init_from={config.init_from})"
    full = jax.device_get(load_pretrained(exp, state, record["pretrained"], source).params)
    params = frozen_lib.complete(params, full, record)
  load = stage.subtrees_to_load(config, params)
  _check_class_set(exp, meta, heads_loaded=any(dst.startswith("head") for _, dst in load))
  if any(dst.startswith("backbone") for _, dst in load):
    _check_same_tower(exp, meta)
  stage.check_loaded_head(config, meta)
  source = f"init_from={config.init_from}"
  new_params = jax.device_get(state.params)
  new_stats = jax.device_get(state.batch_stats)
  for src, dst in load:
    new_params = init_lib.graft(new_params, params, src, source, dst)
    if src == "backbone" and batch_stats:
      new_stats = init_lib.graft(new_stats, batch_stats, src, source, dst)
  log.info(
    "loaded %s from %s (stage %s)",
    ", ".join(f"{a}->{b}" for a, b in load),
    config.init_from,
    meta.get("stage", "?"),
  )
  return jax.device_put(state.replace(params=new_params, batch_stats=new_stats), exp.state_sharding)


#: ``config.model`` fields that make a loaded backbone compute what it computed in the run
#: it comes from: its fine-tuning modules and where its features are taken.
TOWER_FIELDS = ("peft", "adapter_dim", "vpt_len", "clip_projection")


def _check_same_tower(exp, meta: dict) -> None:
  """A backbone loaded from an earlier run has its modules and its features: a LIFT run's
  adapters (``model.peft``) and the features its head was trained on (``clip_projection``)
  must be this run's too, or the flags to set are named."""
  earlier = (meta.get("config") or {}).get("model") or {}
  now = exp.config.model
  diffs = [
    f"--config.model.{k}={earlier[k]!r}"
    for k in TOWER_FIELDS
    if k in earlier and k in now and earlier[k] != now[k]
  ]
  if diffs:
    raise ValueError(
      f"init_from={exp.config.init_from} trained its backbone with other modules or features "
      f"than this run builds: set {' '.join(diffs)} (as that run)."
    )


def class_set(dataset: dict, num_classes) -> dict:
  """What makes two runs' classes the same: the dataset, its class count and the classes
  held out as open set (and, for TFDS, which dataset)."""
  keys = ["name", "open_classes"] + (["tfds_name"] if dataset.get("name") == "tfds" else [])
  out = {k: dataset.get(k) for k in keys}
  out["open_classes"] = sorted(out.get("open_classes") or ())
  return out | {"num_classes": num_classes}


def _describe(classes: dict) -> str:
  extra = f" ({classes['tfds_name']})" if classes.get("tfds_name") else ""
  held = f", open classes {classes['open_classes']}" if classes["open_classes"] else ""
  return f"{classes['name']}{extra} with {classes['num_classes']} classes{held}"


def _check_class_set(exp, meta: dict, heads_loaded: bool) -> None:
  """The earlier run must have the classes of this one: refused where its classifier is
  loaded (it would score other classes), a warning where only the backbone is."""
  earlier_config = meta.get("config") or {}
  if "dataset" not in earlier_config or "num_classes" not in meta:
    return  # An imported or older run without the record: nothing to compare.
  earlier = class_set(earlier_config["dataset"], meta["num_classes"])
  now = class_set(exp.config.dataset.to_dict(), exp.splits.num_classes)
  if earlier == now:
    return
  what = (
    f"init_from={exp.config.init_from} was trained on {_describe(earlier)}; this run is "
    f"{_describe(now)}"
  )
  if heads_loaded:
    raise ValueError(
      f"{what}: stage {exp.config.stage!r} loads its classifier, which would score other "
      "classes. Start from a run of the same dataset and classes."
    )
  log.warning("%s: the backbone's features were learned on other classes.", what)


def load_pretrained(exp, state, path: str | None = None, source: str | None = None):
  """``state`` with its backbone (and BatchNorm statistics) from ``path`` (default
  ``model.pretrained``), read by the backbone (``Backbone.load_pretrained``); the model's
  tensors the file lacks keep their initialisation and are logged. ``source`` says in the
  log where the file comes from (default ``model.pretrained=PATH``)."""
  config = exp.config
  path = path or config.model.pretrained
  source = source or f"model.pretrained={path}"
  params, stats = jax.device_get(state.params), jax.device_get(state.batch_stats)
  backbone, backbone_stats, missing = exp.backbone.load_pretrained(
    path,
    params["backbone"],
    stats.get("backbone", {}),
    allow_pickle=config.model.pretrained_allow_pickle,
  )
  log.info("backbone loaded from %s", source)
  if missing:
    log.warning(
      "%s lacks %d tensor(s) of the backbone, left at their initialisation: %s",
      source,
      len(missing),
      ", ".join(missing),
    )
  params = {**params, "backbone": backbone}
  if backbone_stats:
    stats = {**stats, "backbone": backbone_stats}
  return jax.device_put(state.replace(params=params, batch_stats=stats), exp.state_sharding)


def init_head_from_text(exp, state):
  """``state`` with its classifier from the text features of the class names
  (``model.head_init='text_features'``; LIFT's ``init_head_text_feat``): the kernel from
  ``text_features.head_kernel``, the bias (if any) zero. Refused for text features of other
  classes than the dataset's."""
  config = exp.config
  tf = text_features.load(config.model.text_features)
  text_features.check_classes(
    tf, exp.splits.class_names, f"model.text_features={config.model.text_features}"
  )
  width = state.params["head"]["fc"]["kernel"].shape[0]
  state = _with_head_kernel(exp, state, text_features.head_kernel(tf, width))
  how = "" if width == tf.features.shape[1] else ", mapped back through CLIP's projection"
  log.info(
    "head initialised from the text features of %d class names (%s, prompt %r%s)",
    len(tf.class_names),
    config.model.text_features,
    tf.prompt,
    how,
  )
  return state


def init_head_from_class_means(exp, state):
  """``state`` with its classifier from the class means of the training features, each
  normalised to unit length, the bias (if any) zero (``model.head_init='class_mean'``;
  LIFT's ``init_head_class_mean``, its start for the ImageNet-21k ViT). The features are the
  model's as it starts (the pretrained tower; AdaptFormer, adapter and LoRA start as the
  identity, as LIFT's ``use_tuner=False``), over the un-sampled training set with the
  evaluation transform."""
  means, n = runner.training_class_means(exp, state)
  means = means.astype(np.float64)
  norms = np.linalg.norm(means, axis=1, keepdims=True)
  kernel = (means / np.maximum(norms, 1e-12)).T.astype(np.float32)  # F.normalize's eps.
  log.info("head initialised from the class means of %d training features", n)
  return _with_head_kernel(exp, state, kernel)


def _with_head_kernel(exp, state, kernel: np.ndarray):
  """``state`` with the classifier's (D, K) kernel ``head/fc/kernel`` set to ``kernel`` and
  its bias (if any) zero: the start ``model.head_init`` gives."""
  params = jax.device_get(state.params)
  fc = dict(params["head"]["fc"])
  fc["kernel"] = kernel
  if "bias" in fc:
    fc["bias"] = np.zeros_like(fc["bias"])
  params = {**params, "head": {**params["head"], "fc": fc}}
  return jax.device_put(state.replace(params=params), exp.state_sharding)
