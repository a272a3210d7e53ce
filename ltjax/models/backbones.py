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
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn

from ltjax.config import components
from ltjax.models.resnet import RESNET_CONFIGS, CifarResNet, ResNet
from ltjax.models.vit import VIT_CONFIGS, VisionTransformer


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A backbone and its options (the dataclass fields, defaults as in ``config.model``)."""

  name: ClassVar[str]
  #: The option's meaning, for messages (``{field: "a channel multiplier"}``).
  option_help: ClassVar[dict[str, str]] = {}
  #: ``model.pretrained`` can load a PyTorch ResNet state dict into it
  #: (``ltjax.models.torch_weights``: torchvision's names and layouts).
  loads_torch_resnet: ClassVar[bool] = False

  def module(self, dtype: Any) -> nn.Module:
    """The unbound Flax module, computing in ``dtype`` (parameters float32)."""
    raise NotImplementedError


#: name -> the registered class.
BACKBONES: dict[str, type[Backbone]] = {}


def register(cls: type[Backbone]) -> type[Backbone]:
  """Adds ``cls`` to ``BACKBONES`` under ``cls.name`` (a decorator)."""
  BACKBONES[cls.name] = cls
  return cls


def get(name: str) -> type[Backbone]:
  """The class registered as ``name``; ValueError listing the valid names."""
  if name not in BACKBONES:
    raise ValueError(f"Unknown backbone {name!r}; valid backbones: {sorted(BACKBONES)}.")
  return BACKBONES[name]


def _refuse_foreign_options(name: str, model: Mapping) -> None:
  """ValueError for an option of other backbones set away from its default."""
  found = components.foreign_option(BACKBONES, name, model)
  if found is None:
    return
  field, value, default, owners = found
  families = sorted({_family(cls.name) for cls in owners})
  meaning = owners[0].option_help.get(field)
  what = f" ({meaning})" if meaning else ""
  raise ValueError(
    f"--config.model.{field}={value!r} is an option of the {', '.join(families)} "
    f"backbones{what}, not of {name}: leave it {default!r}."
  )


def _family(name: str) -> str:
  """'cifar_resnet' for cifar_resnet32; the name itself for a backbone without digits."""
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
@dataclasses.dataclass(frozen=True)
class TorchvisionResNet(Backbone):
  """The ImageNet ResNets and ResNeXts (torchvision's layout and the references'); no
  options: the depth is the name."""

  loads_torch_resnet = True

  def module(self, dtype):
    cls, fixed = RESNET_CONFIGS[self.name]
    assert cls is ResNet
    return cls(**fixed, dtype=dtype)


CIFAR_SHORTCUTS = ("conv", "pad")


@dataclasses.dataclass(frozen=True)
class CifarResNetBackbone(Backbone):
  """He et al.'s CIFAR ResNets (6n+2 layers, 16/32/64 channels times ``width``); the
  shortcut of a down-sampling block a 1x1 conv (``conv``) or LDAM-DRW's option A (``pad``)."""

  option_help = {"width": "a channel multiplier", "cifar_shortcut": "the down-sampling shortcut"}
  loads_torch_resnet = True
  width: float = 1
  cifar_shortcut: str = "conv"

  def __post_init__(self):
    if self.cifar_shortcut not in CIFAR_SHORTCUTS:
      raise ValueError(
        f"--config.model.cifar_shortcut={self.cifar_shortcut!r}; valid: "
        f"{', '.join(CIFAR_SHORTCUTS)}."
      )

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
  """A Vision Transformer (``ltjax.models.vit``): CLIP's image tower (``clip_*``) or an
  AugReg ImageNet-21k ViT; no options: the size is the name, the input size sets the
  position embeddings."""

  def module(self, dtype):
    return VisionTransformer(**VIT_CONFIGS[self.name], dtype=dtype)


def _register_vits() -> None:
  for name in VIT_CONFIGS:
    register(dataclasses.dataclass(frozen=True)(type("ViT", (ViT,), {"name": name})))


_register_vits()
