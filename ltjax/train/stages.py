"""Training stages: one object per recipe, which the loop runs without asking which it is.

A stage owns what differs between the recipes of the two papers:

* the model between backbone and head: its neck (``neck``), checked against the config
  before any work (``check``, and ``check_start`` for what a fresh run loads);
* what trains: the parameters it freezes (``freeze``), how a frozen backbone runs
  (``apply_kwargs``: no backward pass, BatchNorm in inference mode);
* the arrays it keeps of its own in the train state (``TrainState.extra``): their initial
  values (``init_extra``), their optimizer groups (``extra_groups``) and what its head takes
  of them (``model_inputs``). OLTR's class centroids are the one case in the papers; the
  generic step, init, optimizer and model only pass them on;
* the loss its train step minimises (``make_loss``): the classification loss of
  ``config.loss`` (``ltjax.losses.LOSSES``), given the training class counts and the epoch,
  plus what the stage adds (OLTR's centroids term, on its own arrays);
* how a fresh run starts (``start``): what it loads from ``config.init_from``
  (``copies``, ``subtrees_to_load``) and what it computes before the first step (OLTR's
  centroids).

What every stage shares is elsewhere and called, not copied: the SGD groups (backbone, head,
and the stage's arrays; ``ltjax.train.optim.make_optimizer``), the one train step
(``ltjax.train.steps.make_train_step``), the experiment's assembly
(``ltjax.train.experiment``), checkpoints and the loop (``ltjax.train.loop``). Adding a stage
is one subclass here, an entry in ``STAGES`` and a config (``config.stage``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ltjax import losses, models, sharding
from ltjax.evaluate import posthoc
from ltjax.models import heads, text_features, torch_weights
from ltjax.train import frozen as frozen_lib
from ltjax.train import init_from as init_lib

log = logging.getLogger(__name__)


class Stage:
  """What every stage shares; a subclass says what its recipe changes (class attributes and
  the methods it overrides). Defaults: everything trains from a fresh start with the
  backbone's own pooling and the classification loss of ``config.loss``."""

  name: ClassVar[str]
  #: Regexes over parameter paths ("backbone/layer1_0/conv1/kernel") that never update, on
  #: top of ``optim.freeze``.
  freeze: ClassVar[tuple[str, ...]] = ()
  #: (path in the earlier run, path in this model): the subtrees a fresh run copies from
  #: ``init_from`` (``subtrees_to_load`` may add or refuse some, given the earlier run).
  copies: ClassVar[tuple[tuple[str, str], ...]] = ()
  #: The backbone is frozen: the step computes no backward pass through it, and runs its
  #: BatchNorm in inference mode unless ``config.update_frozen_bn``.
  frozen_backbone: ClassVar[bool] = False
  #: mixup / CutMix may mix its batches (``data.mixup_alpha``, ``data.cutmix_alpha``).
  mixes_batches: ClassVar[bool] = True
  #: Without ``init_from``, ``model.pretrained`` may give the backbone ``copies`` would
  #: load (cRT on a foundation model's features: nothing else comes from a stage 1).
  pretrained_replaces_init_from: ClassVar[bool] = False

  def copies_of(self, config: ml_collections.ConfigDict) -> tuple[tuple[str, str], ...]:
    """The subtrees this run copies from ``init_from``: ``copies``, or none when
    ``model.pretrained`` gives the backbone instead (``pretrained_replaces_init_from``)."""
    if self.pretrained_replaces_init_from and config.model.pretrained and not config.init_from:
      return ()
    return self.copies

  def keeps_pretrained_backbone(self, config: ml_collections.ConfigDict) -> bool:
    """The backbone is ``model.pretrained``'s as read: frozen, and not from ``init_from``
    (what zero-shot CLIP needs of the features)."""
    frozen = self.frozen_backbone or config.model.get("peft") == "linear"  # Head only.
    return bool(frozen and config.model.pretrained and not self.copies_of(config))

  def check(self, config: ml_collections.ConfigDict) -> None:
    """Raises ValueError for a model config this stage cannot build (before any work)."""
    neck = self.neck(config)
    backbone = models.backbones.from_config(config.model)  # Refuses others' options.
    if neck is not None and not backbone.pools_feature_map:
      raise ValueError(
        f"OLTR's neck (modulated attention, oltr.fc_add) pools the backbone's last feature "
        f"map, which is what a ResNet's features are; {config.model.backbone!r}'s features "
        "are its class token, so OLTR would train on other features than the backbone "
        "gives: OLTR runs on the ResNets (set --config.oltr.fc_add=0 for joint training)."
      )
    models.head_options(config.model)  # Refuses another head's options.
    if config.model.pretrained and not backbone.pretrained_file:
      raise ValueError(
        f"model.pretrained: backbone {config.model.backbone!r} reads no weight file (the "
        "ResNets and ViTs do): unset --config.model.pretrained."
      )
    if config.model.pretrained:
      _warn_normalization(config, backbone)
    losses.from_config(config).check(config)
    mixing = config.data.mixup_alpha > 0 or config.data.cutmix_alpha > 0
    if mixing and not self.mixes_batches:
      raise ValueError(
        f"stage {self.name!r} cannot train on mixed batches (data.mixup_alpha / "
        "data.cutmix_alpha): set both to 0."
      )
    self._check_head_init(config)
    copies = self.copies_of(config)
    if config.model.pretrained and any(dst.startswith("backbone") for _, dst in copies):
      if self.pretrained_replaces_init_from:
        raise ValueError(
          f"stage {self.name!r} takes its backbone from init_from or from model.pretrained, "
          f"not both: unset --config.init_from or --config.model.pretrained."
        )
      raise ValueError(
        f"model.pretrained starts a backbone from ImageNet weights, but stage {self.name!r} "
        "loads its backbone from init_from: unset --config.model.pretrained."
      )

  def check_start(self, config: ml_collections.ConfigDict) -> None:
    """Raises ValueError if a fresh run could not ``start`` (no ``init_from``, no
    ``model.pretrained`` file or no PyTorch to read it)."""
    if self.copies_of(config):
      init_lib.resolve_init_from(config.init_from)  # A clear message when unset or missing.
    if config.model.text_features:
      text_features.load(config.model.text_features)  # Readable, before any work.
    if config.model.pretrained:
      if not os.path.isfile(config.model.pretrained):
        backbone = models.backbones.get(config.model.backbone)
        raise ValueError(
          f"model.pretrained={config.model.pretrained} does not exist; give the path of "
          f"{backbone.pretrained_file or 'a weight file'} (see the config's docstring or "
          "README's 'Pretrained weights' for where to get it)."
        )
      try:
        torch_weights.import_torch()
      except ImportError as e:
        raise ValueError(f"model.pretrained: {e}") from e

  def neck(self, config: ml_collections.ConfigDict) -> dict | None:
    """``ltjax.models.oltr.OLTRNeck`` arguments, or None for the backbone's own pooling.

    Joint training has the reference's ``use_fc`` layer (``oltr.fc_add``) when OLTR stage 1
    asks for it: stage 2 can then load it.
    """
    if config.oltr.fc_add:
      return {"use_attention": False, "fc_add": config.oltr.fc_add}
    return None

  def apply_kwargs(self, config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Keyword arguments of the model's training forward (``Classifier.__call__``)."""
    if not self.frozen_backbone:
      return {}
    return {"freeze_backbone": True, "backbone_train": bool(config.update_frozen_bn)}

  def init_extra(
    self, config: ml_collections.ConfigDict, num_classes: int, feature_dim: Callable[[], int]
  ) -> dict[str, jax.Array] | None:
    """The stage's own arrays in a fresh train state (``TrainState.extra``), or None.

    Called inside the state's init (traced: return ``jnp`` arrays); ``feature_dim()`` is the
    width of the features the head receives. ``start`` may set their values before the
    first step."""
    del config, num_classes, feature_dim
    return None

  def extra_groups(
    self, config: ml_collections.ConfigDict
  ) -> dict[str, tuple[float, float, float]]:
    """``{name: (learning rate, momentum, weight decay)}``: the SGD group of each of the
    stage's arrays (the same schedule shape as the parameters')."""
    del config
    return {}

  def model_inputs(self, extra: dict | None) -> dict[str, Any]:
    """Keyword arguments of the model's head taken from the stage's arrays (``extra``)."""
    del extra
    return {}

  def make_loss(self, config: ml_collections.ConfigDict, class_counts, steps_per_epoch: float):
    """The train step's loss: ``loss_fn(logits, aux, labels, extra, step) -> (loss, extra
    metrics)``, the classification loss of ``config.loss`` given the training class counts
    and the step's epoch (``ltjax.losses.LossInputs``); ``extra`` is the stage's arrays."""
    classify = losses.from_config(config)
    counts = jnp.asarray(class_counts, jnp.float32)

    def loss_fn(logits, aux, labels, extra, step):
      del aux, extra
      inputs = losses.LossInputs(counts, step / steps_per_epoch)
      return classify(logits, labels, inputs), {}

    return loss_fn

  def subtrees_to_load(
    self, config: ml_collections.ConfigDict, earlier: dict
  ) -> tuple[tuple[str, str], ...]:
    """The (source, destination) subtrees to copy from the earlier run's parameters."""
    del config, earlier
    return self.copies

  def check_loaded_head(self, config: ml_collections.ConfigDict, meta: dict) -> None:
    """Raises ValueError when this stage's head cannot take the classifier it loads from the
    earlier run (``meta``: its checkpoint metadata)."""
    del config, meta

  def start(self, exp, state):
    """The state a fresh run starts from (not called on resume): the pretrained backbone
    (``model.pretrained``), then the subtrees ``subtrees_to_load`` names, copied from
    ``config.init_from``."""
    if exp.config.model.pretrained:
      state = load_pretrained(exp, state)
    if self.copies_of(exp.config):
      state = load_earlier_stage(exp, state, self)
    if exp.config.model.head_init == "text_features":
      state = init_head_from_text(exp, state)
    elif exp.config.model.head_init == "class_mean":
      state = init_head_from_class_means(exp, state)
    return state

  #: Heads whose classifier is one (D, K) kernel ``head/fc/kernel`` (and a bias, zeroed)
  #: that text features or class means can start.
  TEXT_INIT_HEADS: ClassVar[tuple[str, ...]] = ("linear", "cosine", "normed_linear")
  #: ``model.head_init`` values: the head's own initialisation, CLIP's text features of the
  #: class names, the normalised class means of the training features.
  HEAD_INITS: ClassVar[tuple[str, ...]] = ("", "text_features", "class_mean")

  def _check_head_init(self, config: ml_collections.ConfigDict) -> None:
    init = config.model.head_init
    if not init:
      return
    if init not in self.HEAD_INITS:
      valid = ", ".join(repr(i) for i in self.HEAD_INITS)
      raise ValueError(f"--config.model.head_init={init!r}; valid: {valid}.")
    if init == "text_features" and not config.model.text_features:
      raise ValueError(
        "model.head_init='text_features' needs --config.model.text_features=FILE "
        "('ltjax clip-text' writes it)."
      )
    if config.model.head not in self.TEXT_INIT_HEADS:
      raise ValueError(
        f"model.head_init={init!r} starts a {'/'.join(self.TEXT_INIT_HEADS)} head, "
        f"not model.head={config.model.head!r}."
      )
    if any(dst.startswith("head") for _, dst in self.copies_of(config)):
      raise ValueError(
        f"stage {self.name!r} loads its classifier from init_from, so model.head_init={init!r} "
        "would not start it: unset --config.model.head_init."
      )


class Joint(Stage):
  """Joint training (representation learning; Kang et al. Sec. 3, OLTR stage 1): backbone and
  linear classifier trained together from a fresh start (``model.pretrained`` may start the
  backbone from ImageNet weights)."""

  name = "joint"


class ClassifierRetraining(Stage):
  """cRT (Kang et al. Sec. 4): the stage-1 backbone frozen, a re-initialised linear
  classifier trained (the references' class-aware sampling lives in the configs). The
  backbone comes from a stage-1 run (``init_from``) or, without one, from
  ``model.pretrained``: cRT on a foundation model's features."""

  name = "crt"
  freeze = ("^backbone/",)
  copies = (("backbone", "backbone"),)
  frozen_backbone = True
  pretrained_replaces_init_from = True

  def neck(self, config: ml_collections.ConfigDict) -> dict | None:
    if config.oltr.fc_add:
      raise ValueError(
        f"oltr.fc_add (the reference's use_fc layer) is for OLTR stage 1 (stage joint) and "
        f"stage 2 (stage oltr), not stage {self.name!r}; set --config.oltr.fc_add=0."
      )
    return None

  def subtrees_to_load(self, config, earlier):
    """The stage-1 backbone (and classifier: LWS); a stage 1 with a neck (OLTR's attention
    or use_fc layer) is refused: this stage's model has none, so its features would not be
    the ones the run was trained with."""
    neck = sorted(earlier.get("neck", {}))
    if neck:
      raise ValueError(
        f"init_from={config.init_from} is a model with a neck ({', '.join(neck)}: OLTR's "
        f"attention or use_fc layer), which stage {self.name!r} does not build, so its "
        "features would silently change: start cRT / LWS from a joint run without "
        "oltr.fc_add (an OLTR stage 1 has one: train a plain joint run for them)."
      )
    return self.copies


class LearnableWeightScaling(ClassifierRetraining):
  """LWS (Kang et al. Sec. 4): backbone and classifier of stage 1 frozen, one scale per class
  learnt (``model.head=lws``: logits = (Wx + b) * f)."""

  name = "lws"
  freeze = ("^backbone/", "^head/fc/")
  copies = (("backbone", "backbone"), ("head/fc", "head/fc"))
  pretrained_replaces_init_from = False  # Its classifier comes from the stage-1 run.
  #: The stage-1 head -> the LWS head that re-scales it.
  LWS_HEADS: ClassVar[dict[str, str]] = {"linear": "lws", "cosine": "lws_cosine"}

  def check_loaded_head(self, config, meta):
    earlier = ((meta.get("config") or {}).get("model") or {}).get("head")
    want = self.LWS_HEADS.get(earlier)
    if want is not None and config.model.head != want:
      raise ValueError(
        f"init_from={config.init_from} has a {earlier} classifier: LWS re-scales it with "
        f"--config.model.head={want} (not {config.model.head!r})."
      )


class OLTR(Stage):
  """OLTR stage 2 (Liu et al. Sec. 3.1-3.3): modulated attention and the meta-embedding head
  on the stage-1 backbone, the centroids in the state, cross-entropy plus the discriminative
  centroids loss. The hallucinator starts from the stage-1 classifier; attention, selector
  and cosine classifier start fresh."""

  name = "oltr"
  copies = (("backbone", "backbone"), ("head/fc", "head/hallucinator"))
  # The centroids loss pulls each feature to its label's centroid: a mixed image has two.
  mixes_batches = False

  def check(self, config: ml_collections.ConfigDict) -> None:
    if config.model.head != "meta_embedding":
      raise ValueError(f"stage oltr needs model.head='meta_embedding', got {config.model.head!r}.")
    super().check(config)

  def neck(self, config: ml_collections.ConfigDict) -> dict | None:
    return {"use_attention": config.oltr.use_attention, "fc_add": config.oltr.fc_add}

  def init_extra(self, config, num_classes, feature_dim):
    """The class centroids (K, D), D the width of the features the head receives: zeros
    until ``start`` sets them to the class means."""
    del config
    return {"centroids": jnp.zeros((num_classes, feature_dim()), jnp.float32)}

  def extra_groups(self, config):
    """The centroids' own SGD group (the reference's ``optim_params`` of its centroids)."""
    r = config.oltr
    return {"centroids": (r.centroids_lr, r.centroids_momentum, r.centroids_weight_decay)}

  def model_inputs(self, extra):
    """The meta-embedding head reads the centroids (its visual memory)."""
    return {"centroids": extra["centroids"]}

  def make_loss(self, config, class_counts, steps_per_epoch):
    """The classification loss (``config.loss``; the reference's is cross-entropy) +
    ``oltr.loss_weight`` x the discriminative centroids loss, whose attract term gives the
    centroids the reference centre-loss update (see ``ltjax.losses.disc_centroids_loss``),
    which ``loss_weight`` does not scale."""
    classify = super().make_loss(config, class_counts, steps_per_epoch)
    r = config.oltr

    def loss_fn(logits, aux, labels, extra, step):
      ce, _ = classify(logits, aux, labels, extra, step)
      centroid_loss = losses.disc_centroids_loss(
        aux["features"], labels, extra["centroids"], margin=r.margin, repel_weight=r.repel_weight
      )
      return ce + r.loss_weight * centroid_loss, {"ce": ce, "centroid_loss": centroid_loss}

    return loss_fn

  def subtrees_to_load(self, config, earlier):
    """Stage 1's backbone and classifier, and its ``use_fc`` layer (``neck/fc_add``) when
    both stages have one. With ``oltr.fc_add`` but a stage 1 without the layer (the current
    reference's ImageNet-LT stage 1), it starts fresh, as the reference's stage 2 does."""
    earlier_fc = earlier.get("neck", {}).get("fc_add")
    if not config.oltr.fc_add:
      if earlier_fc is not None:
        width = np.shape(earlier_fc["kernel"])[-1]
        raise ValueError(
          f"init_from={config.init_from} has a use_fc layer (fc_add, {width} units) that "
          f"oltr.fc_add=0 would drop: set --config.oltr.fc_add={width}."
        )
      return self.copies
    if earlier_fc is not None and np.shape(earlier_fc["kernel"])[-1] != config.oltr.fc_add:
      width = np.shape(earlier_fc["kernel"])[-1]
      raise ValueError(
        f"init_from={config.init_from} has a use_fc layer (fc_add) of {width} units, this "
        f"stage oltr.fc_add={config.oltr.fc_add}: set --config.oltr.fc_add={width} to load it."
      )
    classifier = earlier.get("head", {}).get("fc", {}).get("kernel")
    if earlier_fc is None and classifier is not None:
      # The hallucinator starts as stage 1's classifier, so it takes features as wide as that
      # classifier did; a fresh use_fc layer must output that many.
      width = np.shape(classifier)[0]
      if width != config.oltr.fc_add:
        raise ValueError(
          f"init_from={config.init_from}'s classifier (head/fc, which the hallucinator starts "
          f"from) takes {width}-wide features (its backbone's, no use_fc layer), but this "
          f"stage's neck outputs oltr.fc_add={config.oltr.fc_add} units: set "
          f"--config.oltr.fc_add=0 (no use_fc layer, as in that run) or "
          f"--config.oltr.fc_add={width} (a fresh one of that width)."
        )
    if earlier_fc is None:
      log.info(
        "init_from=%s has no fc_add layer: oltr.fc_add=%d starts fresh (as the reference "
        "stage 2 over a stage 1 without use_fc)",
        config.init_from,
        config.oltr.fc_add,
      )
      return self.copies
    return (*self.copies, ("neck/fc_add", "neck/fc_add"))

  def start(self, exp, state):
    """Loads stage 1, then sets the centroids to the class means of the stage-2 model's
    features over the un-sampled training set."""
    return init_centroids(exp, super().start(exp, state))


STAGES: dict[str, Stage] = {
  stage.name: stage for stage in (Joint(), ClassifierRetraining(), LearnableWeightScaling(), OLTR())
}


def get_stage(name: str) -> Stage:
  """The stage registered as ``name``; a ValueError listing the valid names otherwise."""
  if name not in STAGES:
    raise ValueError(f"unknown stage {name!r}; valid: {', '.join(STAGES)}.")
  return STAGES[name]


def load_earlier_stage(exp, state, stage: Stage):
  """``state`` with the subtrees ``stage.subtrees_to_load`` names (and the backbone's
  BatchNorm statistics) copied from the latest checkpoint of ``config.init_from``."""
  config = exp.config
  params, batch_stats, meta = init_lib.load_variables(config.init_from)
  record = meta.get("frozen_weights")
  if record:  # A parameter-efficient run: its frozen parameters are in its weight file.
    frozen_lib.check_file(record, record["pretrained"], f"init_from={config.init_from}")
    full = jax.device_get(load_pretrained(exp, state, record["pretrained"]).params)
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


def _warn_normalization(config: ml_collections.ConfigDict, backbone: models.Backbone) -> None:
  """A warning when ``config.dataset.mean/std`` are not what the backbone's published
  weights were trained on: features of other inputs than theirs. The config is left as it
  is (a run's results follow its config alone); the warning names the flags to set."""
  expected = backbone.pretrained_normalization
  if expected is None:
    return
  have = (tuple(config.dataset.mean), tuple(config.dataset.std))
  same = all(
    len(a) == len(b) and np.allclose(a, b, rtol=0, atol=1e-6)
    for a, b in zip(have, expected, strict=True)
  )
  if same:
    return
  flags = " ".join(
    f"--config.dataset.{name}={','.join(repr(float(v)) for v in values)}"
    for name, values in zip(("mean", "std"), expected, strict=True)
  )
  log.warning(
    "model.pretrained: backbone %s's published weights were trained on pixels normalised "
    "with mean %s, std %s; this run normalises with dataset.mean=%s, dataset.std=%s. For "
    "the inputs they expect, set %s",
    config.model.backbone,
    expected[0],
    expected[1],
    have[0],
    have[1],
    flags,
  )


def load_pretrained(exp, state, path: str | None = None):
  """``state`` with its backbone (and BatchNorm statistics) from ``path`` (default
  ``model.pretrained``), read by the backbone (``Backbone.load_pretrained``); the model's
  tensors the file lacks keep their initialisation and are logged."""
  config = exp.config
  path = path or config.model.pretrained
  params, stats = jax.device_get(state.params), jax.device_get(state.batch_stats)
  backbone, backbone_stats, missing = models.backbones.from_config(config.model).load_pretrained(
    path,
    params["backbone"],
    stats.get("backbone", {}),
    allow_pickle=config.model.pretrained_allow_pickle,
  )
  log.info("backbone loaded from %s", path)
  if missing:
    log.warning(
      "model.pretrained=%s lacks %d tensor(s) of the backbone, left at their initialisation: %s",
      path,
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
  train = posthoc.extract(exp, state, exp.splits.train)
  means, _ = heads.class_means(train["features"], train["labels"], exp.splits.num_classes, "un")
  means = np.asarray(means, np.float64)
  norms = np.linalg.norm(means, axis=1, keepdims=True)
  kernel = (means / np.maximum(norms, 1e-12)).T.astype(np.float32)  # F.normalize's eps.
  log.info("head initialised from the class means of %d training features", len(train["labels"]))
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


def init_centroids(exp, state):
  """OLTR: centroids = class means, over the un-sampled training set, of the features of the
  stage-2 model as it is now (stage-1 weights loaded, new layers fresh)."""
  train = posthoc.extract(exp, state, exp.splits.train)
  means, _ = heads.class_means(train["features"], train["labels"], exp.splits.num_classes, "un")
  centroids = jax.device_put(np.asarray(means, np.float32), sharding.replicated(exp.mesh))
  log.info("centroids initialised from %d training features", len(train["labels"]))
  return state.replace(extra={**state.extra, "centroids": centroids})
