"""The backbone registry: one registered dataclass per backbone, whose fields are its options.

``config.model.backbone`` names the entry; its options are read from ``config.model`` by
field name (``from_config``), as a loss's are from ``config.loss``: a backbone reads its own
options and nothing else of the config. An option of another backbone set away from its
default is refused by name (``model.width`` on a ResNet), so a value never silently does
nothing. Adding a backbone (a ViT, a CLIP image tower) is one registered class here or in
its own module (``register``), and a config; the experiment, steps and heads never ask
which it is. The module a backbone builds returns ``{"feature_map", "features"}`` (see
``ltjax.models.Classifier``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
from flax import traverse_util

from ltjax.config import components, declared
from ltjax.config.presets import IMAGENET_MEAN, IMAGENET_STD
from ltjax.models import peft as peft_lib
from ltjax.models import torch_weights, vit_weights
from ltjax.models.resnet import RESNET_CONFIGS, CifarResNet, ResNet
from ltjax.models.vit import DEFAULT_ACTIVATION, VIT_CONFIGS, VisionTransformer

#: ``(mean, std)`` per channel, of pixels in [0, 1].
Normalization = tuple[tuple[float, ...], tuple[float, ...]]
#: What OpenAI's CLIP was trained on (open_clip's OPENAI_DATASET_MEAN / _STD; its own LAION
#: and DataComp weights too, but for ViT-L-14 laion2b_s32b_b82k: 0.5, as AugReg).
CLIP_NORMALIZATION: Normalization = (
  (0.48145466, 0.4578275, 0.40821073),
  (0.26862954, 0.26130258, 0.27577711),
)
#: What the AugReg ViTs were trained on: [-1, 1] (timm's IMAGENET_INCEPTION_MEAN / _STD).
AUGREG_NORMALIZATION: Normalization = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
#: torchvision's ImageNet ResNets.
IMAGENET_NORMALIZATION: Normalization = (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
#: ``model.pretrained`` for a ResNet.
RESNET_FILE = "a PyTorch ResNet state dict (torchvision / reference layout)"


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A backbone and its options (the dataclass fields, defaults as in ``config.model``)."""

  name: ClassVar[str]
  #: A family class registered under several names (a depth or size each): a regex the
  #: names fullmatch, which ``ltjax.config.declared`` reads (the help runs without JAX, so
  #: without the registry) to tell which family a ``config.model.backbone`` is
  #: (``tests/test_config_help.py`` holds every registered name to its family's).
  names: ClassVar[str] = ""
  #: The weight file ``model.pretrained`` gives it, for messages ("a PyTorch ResNet state
  #: dict"); "" = none: the option is refused before any work.
  pretrained_file: ClassVar[str] = ""
  #: ``(mean, std)`` per channel of the pixels in [0, 1] that its published weights were
  #: trained on; ``model.pretrained`` warns when ``config.dataset.mean/std`` differ (and
  #: changes nothing: a run's results follow its config). None: no published weights.
  pretrained_normalization: ClassVar[Normalization | None] = None
  #: For a CLIP image tower: whether CLIP's towers run QuickGELU (OpenAI's weights) or GELU
  #: (OpenCLIP's own), which ``ltjax clip-text`` builds the text tower with. None: no CLIP.
  clip_quick_gelu: ClassVar[bool | None] = None
  #: Its ``features`` are the global average of its ``feature_map`` (the ResNets): what
  #: OLTR's neck, which pools the map itself, needs to keep the features the same.
  pools_feature_map: ClassVar[bool] = True

  def module(self, dtype: Any) -> nn.Module:
    """The unbound Flax module, computing in ``dtype`` (parameters float32)."""
    raise NotImplementedError

  def for_classes(self, num_classes: int) -> Backbone:
    """The backbone with the options that depend on the class count filled in (LIFT's
    adapter width); ``models.build_model`` calls it."""
    del num_classes
    return self

  def frozen_patterns(self) -> tuple[str, ...]:
    """Regexes over ``backbone/...`` parameter paths (``optim.freeze``'s form) that its
    fine-tuning method keeps frozen (``model.peft``); () when all of it trains."""
    return ()

  def load_pretrained(
    self, path: str, params: Mapping, batch_stats: Mapping, allow_pickle: bool = False
  ) -> tuple[dict, dict, list[str]]:
    """``(params, batch_stats, missing)``: the backbone's variables (host arrays) with the
    file's tensors, and the names of the model's tensors the file lacks (left as they were).

    Raises:
      ImportError: a package the file needs is not installed.
      ValueError: a file that does not fit, all its problems named.
    """
    del params, batch_stats, allow_pickle
    raise ValueError(f"model.pretrained={path}: backbone {self.name!r} reads no weight file.")


#: name -> the registered class.
BACKBONES: components.Registry = components.Registry("backbone", "model.backbone")


#: Adds ``cls`` to ``BACKBONES`` under ``cls.name`` (a decorator).
register = BACKBONES.register
#: The class registered as ``name``; a ValueError listing the valid names otherwise.
get = BACKBONES.lookup


def _refuse_foreign_options(name: str, model: Mapping) -> None:
  """ValueError for an option of other backbones set away from its default."""
  found = components.foreign_option(BACKBONES, name, model)
  if found is None:
    return
  field, value, default, owners = found
  families = sorted({_family(cls.name) for cls in owners})
  meaning = _meanings(owners[0]).get(field, "").split(":")[0]  # Its first words.
  what = f" ({meaning})" if meaning else ""
  raise components.UnreadOption(
    f"--config.model.{field}={value!r} is an option of the {', '.join(families)} "
    f"backbones{what}, not of {name}: leave it {default!r}.",
    f"model.{field}",
    default,
  )


def _meanings(cls: type) -> dict[str, str]:
  """``{option: meaning}`` of the ``Attributes:`` sections of ``cls`` and its bases."""
  out: dict[str, str] = {}
  for klass in reversed(cls.__mro__):
    out |= declared.attributes(vars(klass).get("__doc__"))
  return {k: v.replace("``", "").rstrip(".") for k, v in out.items()}


def _family(name: str) -> str:
  """'cifar_resnet' for cifar_resnet32, 'clip_vit' for clip_vit_b16 and clip_vit_tiny, 'vit'
  for vit_b16; the
  name itself for a backbone without digits."""
  if "_vit_" in name:
    return name[: name.index("_vit_") + len("_vit")]
  if name.startswith("vit_"):
    return "vit"
  return name.rstrip("0123456789") or name


def from_config(model: Mapping) -> Backbone:
  """The backbone of a ``config.model`` block: ``model["backbone"]`` with its options.

  Raises:
    ValueError: an unknown backbone (listing the valid ones), or another backbone's option
      set (naming the option and its owners).
  """
  cls = get(model["backbone"])
  _refuse_foreign_options(cls.name, model)
  return components.build(cls, model)


# ----------------------------------------------------------------- the ResNet families
def _load_torch_resnet(backbone: Backbone, path, params, batch_stats, allow_pickle):
  vit_weights.refuse_vit_file(path, backbone.name, RESNET_FILE)
  return torch_weights.load_pretrained_backbone(
    path, params, batch_stats, allow_pickle, describe=vit_weights.guess_from_tensors
  )


@dataclasses.dataclass(frozen=True)
class TorchvisionResNet(Backbone):
  """The ImageNet ResNets and ResNeXts (torchvision's layout and the references'); no
  options: the depth is the name."""

  names = r"resne(t|xt)\d+(_\d+x\d+d)?"
  pretrained_file = RESNET_FILE
  pretrained_normalization = IMAGENET_NORMALIZATION

  def load_pretrained(self, path, params, batch_stats, allow_pickle=False):
    """``ltjax.models.torch_weights.load_pretrained_backbone`` (torchvision's names)."""
    return _load_torch_resnet(self, path, params, batch_stats, allow_pickle)

  def module(self, dtype):
    cls, fixed = RESNET_CONFIGS[self.name]
    assert cls is ResNet
    return cls(**fixed, dtype=dtype)


CIFAR_SHORTCUTS = ("conv", "pad")


@dataclasses.dataclass(frozen=True)
class CifarResNetBackbone(Backbone):
  """He et al.'s CIFAR ResNets (6n+2 layers, 16/32/64 channels times ``width``).

  Attributes:
    width: a channel multiplier: the stages have 16, 32 and 64 channels times it.
    cifar_shortcut: the down-sampling shortcut: where the shape changes, ``conv`` (1x1 conv
      + BN, He et al.'s option B) or ``pad`` (strided identity, zero-padded channels,
      option A: the network of the LDAM-DRW and most CIFAR-LT code).
  """

  names = r"cifar_resnet\d+"
  pretrained_file = RESNET_FILE
  width: float = 1
  cifar_shortcut: str = "conv"

  def __post_init__(self):
    if self.cifar_shortcut not in CIFAR_SHORTCUTS:
      raise ValueError(
        f"--config.model.cifar_shortcut={self.cifar_shortcut!r}; valid: "
        f"{', '.join(CIFAR_SHORTCUTS)}."
      )

  def load_pretrained(self, path, params, batch_stats, allow_pickle=False):
    """A PyTorch state dict in the reference layout (no published ImageNet weights: no
    ``pretrained_normalization``)."""
    return _load_torch_resnet(self, path, params, batch_stats, allow_pickle)

  def module(self, dtype):
    cls, fixed = RESNET_CONFIGS[self.name]
    assert cls is CifarResNet
    extra = {"width": self.width} if self.width != 1 else {}
    if self.cifar_shortcut != "conv":
      extra["shortcut"] = self.cifar_shortcut
    return cls(**fixed, dtype=dtype, **extra)


def _register_resnets() -> None:
  for name, (cls, _) in RESNET_CONFIGS.items():
    base = CifarResNetBackbone if cls is CifarResNet else TorchvisionResNet
    entry = type(base.__name__, (base,), {"name": name, "__doc__": base.__doc__})
    register(dataclasses.dataclass(frozen=True)(entry))


_register_resnets()


# --------------------------------------------------------------- Vision Transformers
@dataclasses.dataclass(frozen=True)
class ViT(Backbone):
  """A Vision Transformer (``ltjax.models.vit``): CLIP's image tower (``clip_*``,
  ``openclip_*``) or an AugReg ImageNet-21k ViT; the size is the name, the input size sets
  the position embeddings (a file of another grid is resampled). Its options are the
  parameter-efficient fine-tuning method (``peft``, ``ltjax.models.peft``) and that
  method's (``adapter_dim``, ``vpt_len``; their meanings are the methods').

  Attributes:
    peft: parameter-efficient fine-tuning: what of the backbone trains
      (``ltjax.models.peft.PEFT_METHODS``): ``''`` = everything; ``full`` = the transformer
      blocks (LIFT's full_tuning); ``linear`` = nothing (the head alone); ``adaptformer``
      (LIFT's default), ``adapter``, ``lora``, ``bitfit``, ``ln``, ``ssf``, ``vpt_shallow``,
      ``vpt_deep`` = that method's parameters, the rest frozen.
    adapter_dim: the PEFT bottleneck width.
    vpt_len: the VPT prompt length.
  """

  names = r"vit_\w+"
  pools_feature_map = False  # Its features are the class token's (ln_post, proj).
  peft: str = ""
  adapter_dim: int = 0
  vpt_len: int = 10

  def tuning(self) -> peft_lib.Peft:
    """The fine-tuning method with its options (refusing another method's)."""
    return peft_lib.build(
      {"peft": self.peft, "adapter_dim": self.adapter_dim, "vpt_len": self.vpt_len}
    )

  def __post_init__(self):
    self.tuning()  # Refuses an unknown method or another method's option.

  def for_classes(self, num_classes):
    tuning = self.tuning().resolved(num_classes, VIT_CONFIGS[self.name]["depth"])
    return dataclasses.replace(self, adapter_dim=getattr(tuning, "adapter_dim", self.adapter_dim))

  def frozen_patterns(self):
    pattern = self.tuning().frozen_pattern()
    return () if pattern is None else (pattern,)

  def _module_tuning(self):
    tuning = self.tuning()
    if not tuning.name:
      return None
    if getattr(tuning, "adapter_dim", None) == 0:
      raise ValueError(
        "model.adapter_dim=0 (LIFT's rule) needs the class count: build the model with "
        "ltjax.models.build_model (or Backbone.for_classes)."
      )
    return tuning

  def module(self, dtype):
    return VisionTransformer(**VIT_CONFIGS[self.name], tuning=self._module_tuning(), dtype=dtype)

  def load_pretrained(self, path, params, batch_stats, allow_pickle=False):
    """``ltjax.models.vit_weights``: a CLIP file or an AugReg ``.npz``, every tensor of the
    model read from it (no BatchNorm statistics, nothing missing); the fine-tuning
    method's own modules keep their initialisation."""
    del batch_stats
    flat = traverse_util.flatten_dict(dict(params), sep="/")
    added = {k: v for k, v in flat.items() if re.search(peft_lib.ADDED_MODULES, k)}
    plain = traverse_util.unflatten_dict({k: v for k, v in flat.items() if k not in added}, sep="/")
    loaded = vit_weights.load_vit(path, plain, self.name, allow_pickle)
    merged = traverse_util.flatten_dict(dict(loaded), sep="/") | added
    return traverse_util.unflatten_dict(merged, sep="/"), {}, []


#: What ``model.pretrained`` reads into each ViT layout, and the normalisation it expects.
_VIT_FILES = {
  "clip": (
    "a CLIP image tower: OpenAI's TorchScript archive (ViT-B-16.pt), an OpenCLIP state dict "
    "(.pt, .bin) or open_clip_model.safetensors",
    CLIP_NORMALIZATION,
  ),
  "augreg": (
    "an AugReg ViT .npz (google-research/vision_transformer's, timm's *.augreg_in21k)",
    AUGREG_NORMALIZATION,
  ),
}


@dataclasses.dataclass(frozen=True)
class ClipViT(ViT):
  """CLIP's image tower (``clip_*``, ``openclip_*``): its features are the class token
  projected into the joint image-text space (``clip_projection``, zero-shot CLIP's and the
  text features' space) or the class token before the projection (LIFT's heads).

  Attributes:
    clip_projection: the CLIP towers' features: the class token projected into CLIP's
      image-text space (True; zero-shot's) or before the projection (False; where LIFT's
      heads sit).
  """

  names = r"(open)?clip_vit_\w+"
  clip_projection: bool = True

  def module(self, dtype):
    return VisionTransformer(
      **VIT_CONFIGS[self.name],
      project=self.clip_projection,
      tuning=self._module_tuning(),
      dtype=dtype,
    )


def _register_vits() -> None:
  for name, cfg in VIT_CONFIGS.items():
    file, normalization = _VIT_FILES[cfg["layout"]]
    attrs = {"name": name, "pretrained_file": file, "pretrained_normalization": normalization}
    if cfg["layout"] == "clip":
      activation = cfg.get("activation") or DEFAULT_ACTIVATION["clip"]
      attrs["clip_quick_gelu"] = activation == "quick_gelu"
    base = ClipViT if cfg["layout"] == "clip" else ViT
    register(dataclasses.dataclass(frozen=True)(type(base.__name__, (base,), attrs)))


_register_vits()
