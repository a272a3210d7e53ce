"""Parameter-efficient fine-tuning of the Vision Transformers (``model.peft``): which of a
ViT's parameters train, and the small modules some methods add to it.

LIFT (Shi et al., "Long-Tail Learning with Foundation Model: Heavy Fine-Tuning Hurts",
ICML 2024) shows that fine-tuning all of a foundation model hurts the tail classes and that
a lightweight module trained with a logit-adjusted loss beside a text-initialised cosine
head does not; its Table 6 compares the methods registered here. Each is a registered
dataclass whose fields are its options, read from ``config.model`` by name (``build``);
another method's option set away from its default is refused by name. The definitions
follow LIFT's ``models/peft_modules.py`` (the modules and their initialisation) and
``models/peft_vit.py`` (where each sits in a block, which parameters train):

* ``adaptformer`` (Chen et al., NeurIPS 2022; LIFT's default): beside each block's MLP, a
  bottleneck ``scale * up(relu(down(LN(x))))`` of the block's input to the MLP, added to the
  MLP's output; ``scale`` a learnt scalar starting at 1, ``up`` starting at zero.
* ``adapter`` (Houlsby et al., 2019): the same bottleneck (no scale) after the MLP, on its
  output, added to it.
* ``lora`` (Hu et al., ICLR 2022): ``x A B / r`` added to the attention's queries and
  values, ``x`` the block's normalised input, ``B`` starting at zero.
* ``bitfit`` (Ben Zaken et al., 2022): every bias of the blocks (LayerNorm's included).
* ``ln``: the blocks' LayerNorms (scale and bias).
* ``ssf`` (Lian et al., NeurIPS 2022): a learnt per-channel scale and shift after the
  attention's q/k/v and output projections, the MLP's two layers and both LayerNorms of
  each block (LIFT's ``ssf_attn``, ``ssf_mlp`` and ``ssf_ln`` together).
* ``vpt_shallow`` / ``vpt_deep`` (Jia et al., ECCV 2022): ``vpt_len`` learnt tokens appended
  to the sequence before the first block (shallow, kept through every block), or replaced
  by fresh ones before every block (deep).
* ``full``: the blocks (LIFT's ``full_tuning``: patch embedding, class and position
  embeddings, ``ln_pre``, ``ln_post`` and ``proj`` stay as loaded), and ``linear``: none
  of the backbone (the head alone).

In every method the head trains; ``model.peft=""`` (the default) trains the whole backbone
as any other. The frozen parameters get no gradient and no optimizer state
(``ltjax.train.optim``), and a run's checkpoints hold only what trains when the frozen
weights can be read again from ``model.pretrained`` (``ltjax.train.frozen``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import ClassVar

from ltjax.config import components


@dataclasses.dataclass(frozen=True)
class Peft:
  """A fine-tuning method: which backbone parameters train (``trains``, a regex over their
  paths below ``backbone/``, e.g. ``resblocks_3/adaptformer/up_proj/kernel``) and, through
  its name, which modules ``ltjax.models.vit`` adds."""

  name: ClassVar[str]
  #: Regex over the backbone's parameter paths that train; None: all of them.
  trains: ClassVar[str | None] = ""

  def frozen_pattern(self) -> str | None:
    """The regex over ``backbone/...`` paths (``optim.freeze``'s form) of the parameters it
    keeps frozen, or None when the whole backbone trains."""
    if self.trains is None:
      return None
    if not self.trains:
      return "^backbone/"
    return f"^backbone/(?!{self.trains.removeprefix('^')})"

  def resolved(self, num_classes: int, depth: int) -> Peft:
    """The method with the options that depend on the model filled in."""
    del num_classes, depth
    return self


#: The parameter paths (below ``backbone/``) of the modules the methods add: no weight file
#: has them, so they keep their initialisation when ``model.pretrained`` is read.
ADDED_MODULES = r"^vpt_\d+$|(^|/)(adaptformer|adapter|lora_[qv]|ssf_\w+)/"

#: name -> the registered class (``model.peft``).
PEFT_METHODS: components.Registry = components.Registry("fine-tuning method", "model.peft")
#: Adds ``cls`` to ``PEFT_METHODS`` under ``cls.name`` (a decorator).
register = PEFT_METHODS.register


@register
@dataclasses.dataclass(frozen=True)
class Everything(Peft):
  """The whole backbone trains (ltjax's default; no module added)."""

  name = ""
  trains = None


@register
@dataclasses.dataclass(frozen=True)
class Full(Peft):
  """LIFT's ``full_tuning``: the transformer blocks train (``peft_vit.py`` tunes
  ``blocks[start:end]``); the embeddings, ``ln_pre``, ``ln_post`` and ``proj`` do not."""

  name = "full"
  trains = r"^resblocks_\d+/"


@register
@dataclasses.dataclass(frozen=True)
class Linear(Peft):
  """Nothing of the backbone trains: the head alone on frozen features."""

  name = "linear"
  trains = ""


def adapter_dim_rule(num_classes: int, depth: int) -> int:
  """LIFT's default bottleneck width (``peft_vit.py``): ``2 ** max(0, int(log2(K / (2 L))))``
  for K classes and L blocks: 32 for ImageNet-LT on a ViT-B (1000 / 24)."""
  return 2 ** max(0, int(math.log2(num_classes / (depth * 2))))


@dataclasses.dataclass(frozen=True)
class _Bottleneck(Peft):
  """A method with a bottleneck width.

  Attributes:
    adapter_dim: the bottleneck width; 0 = LIFT's rule ``2^max(0, floor(log2(K / (2 x
      depth))))`` for K classes (``adapter_dim_rule``).
  """

  adapter_dim: int = 0

  def __post_init__(self):
    if int(self.adapter_dim) < 0 or int(self.adapter_dim) != self.adapter_dim:
      raise ValueError(
        f"--config.model.adapter_dim={self.adapter_dim!r}: a positive width, or 0 for LIFT's "
        "rule from the class count."
      )

  def resolved(self, num_classes: int, depth: int) -> Peft:
    if self.adapter_dim:
      return self
    return dataclasses.replace(self, adapter_dim=adapter_dim_rule(num_classes, depth))


@register
@dataclasses.dataclass(frozen=True)
class AdaptFormer(_Bottleneck):
  """AdaptFormer beside each block's MLP (LIFT's default)."""

  name = "adaptformer"
  trains = r"^resblocks_\d+/adaptformer/"


@register
@dataclasses.dataclass(frozen=True)
class Adapter(_Bottleneck):
  """A sequential bottleneck adapter after each block's MLP."""

  name = "adapter"
  trains = r"^resblocks_\d+/adapter/"


@register
@dataclasses.dataclass(frozen=True)
class LoRA(_Bottleneck):
  """LoRA on each block's queries and values, rank ``adapter_dim``."""

  name = "lora"
  trains = r"^resblocks_\d+/attn/lora_[qv]/"


@register
@dataclasses.dataclass(frozen=True)
class BitFit(Peft):
  """Every bias of the blocks (LIFT's ``bias_tuning``: the parameters of ``blocks`` whose
  name ends in ``bias``, LayerNorm's included)."""

  name = "bitfit"
  trains = r"^resblocks_\d+/(.*/)?bias$"


@register
@dataclasses.dataclass(frozen=True)
class LayerNormTuning(Peft):
  """The blocks' LayerNorms (LIFT's ``ln_tuning``)."""

  name = "ln"
  trains = r"^resblocks_\d+/ln_[12]/"


@register
@dataclasses.dataclass(frozen=True)
class SSF(Peft):
  """Scale and shift after the blocks' projections and LayerNorms."""

  name = "ssf"
  trains = r"^resblocks_\d+/(attn/)?ssf_"


@dataclasses.dataclass(frozen=True)
class _Prompts(Peft):
  """Visual prompt tuning: learnt tokens prepended to the sequence.

  Attributes:
    vpt_len: prompt tokens per layer (LIFT: 10).
  """

  trains = r"^vpt_\d+$"
  vpt_len: int = 10
  deep: ClassVar[bool] = False

  def __post_init__(self):
    if int(self.vpt_len) < 1 or int(self.vpt_len) != self.vpt_len:
      raise ValueError(f"--config.model.vpt_len={self.vpt_len!r}: at least 1 prompt token.")


@register
@dataclasses.dataclass(frozen=True)
class VPTShallow(_Prompts):
  """Prompts before the first block only (LIFT's ``vpt_shallow``)."""

  name = "vpt_shallow"


@register
@dataclasses.dataclass(frozen=True)
class VPTDeep(_Prompts):
  """Fresh prompts before every block (LIFT's ``vpt_deep``)."""

  name = "vpt_deep"
  deep = True


def build(model: Mapping) -> Peft:
  """The method of a ``config.model`` block (``peft`` and its options).

  Raises:
    ValueError: an unknown method (listing the valid ones) or another method's option set
      away from its default (naming it).
  """
  cls = PEFT_METHODS.lookup(model.get("peft", ""))
  components.refuse_foreign_option(PEFT_METHODS, cls.name, model)
  return components.build(cls, model)


def trains(method: Peft, path: str) -> bool:
  """Whether the backbone parameter at ``path`` (below ``backbone/``) trains."""
  if method.trains is None:
    return True
  return bool(method.trains) and re.search(method.trains, path) is not None
