"""PyTorch twins of ltjax's ViT backbones, from the reference implementations (for
scripts/benchmark.py).

ltjax's ``clip_*`` / ``openclip_*`` towers restate open_clip's image tower and its ``vit_*``
the AugReg ViTs timm runs (``ltjax.models.vit``; checked against both in
tests/models/test_vit_weights.py), so the twins are those libraries' own modules, not a
rewrite: ``open_clip.create_model(<config>, pretrained=None).visual`` plus a linear head on
its projection (the config whose activation matches: ``ViT-B-16-quickgelu`` for
``clip_vit_b16``, plain ``ViT-B-16``, exact GELU, for ``openclip_vit_b16``), and
``timm.create_model("vit_base_patch16_224", num_classes=...)`` (its head on the class token
after the final LayerNorm). The tiny test backbones take ltjax's sizes through the same
builders (open_clip's vision-tower builder, timm's ``VisionTransformer``). Random weights,
no dropout (the default of both configs). open_clip and timm import torchvision, which does
not load beside a CPU-only torch: they are imported through ``ltjax.interop.torch_extras``.
"""

from __future__ import annotations

from torch import nn

from ltjax.interop import torch_extras
from ltjax.models.vit import DEFAULT_ACTIVATION, VIT_CONFIGS

#: ltjax backbone -> open_clip model config (its ``quick_gelu`` flag matching ltjax's).
OPEN_CLIP = {
  "clip_vit_b16": "ViT-B-16-quickgelu",
  "clip_vit_l14": "ViT-L-14-quickgelu",
  "openclip_vit_b16": "ViT-B-16",
  "openclip_vit_l14": "ViT-L-14",
}
#: ltjax backbone -> timm model name.
TIMM = {"vit_b16": "vit_base_patch16_224", "vit_l16": "vit_large_patch16_224"}
#: Test-sized backbones, built from ltjax's own sizes.
TINY = ("clip_vit_tiny", "vit_tiny")
BACKBONES = (*OPEN_CLIP, *TIMM, *TINY)


class ClipClassifier(nn.Module):
  """open_clip's image tower (to its projection) and a linear classifier, as ltjax's
  ``Classifier`` with a ``linear`` head on a ``clip_*`` backbone's features."""

  def __init__(self, visual: nn.Module, embed_dim: int, num_classes: int):
    super().__init__()
    self.visual = visual
    self.fc = nn.Linear(embed_dim, num_classes)

  def forward(self, x):
    return self.fc(self.visual(x))


def _quick_gelu(name: str) -> bool:
  cfg = VIT_CONFIGS[name]
  return (cfg.get("activation") or DEFAULT_ACTIVATION[cfg["layout"]]) == "quick_gelu"


def _clip(name: str, num_classes: int, image_size: int) -> nn.Module:
  open_clip = torch_extras.import_open_clip()
  cfg = VIT_CONFIGS[name]
  if name in OPEN_CLIP:
    model = open_clip.create_model(OPEN_CLIP[name], pretrained=None, force_image_size=image_size)
    visual = model.visual
    del model  # The text tower is not timed.
  else:
    from open_clip.model import _build_vision_tower  # What create_model builds it with.

    vision_cfg = {
      "layers": cfg["depth"],
      "width": cfg["width"],
      "head_width": cfg["width"] // cfg["heads"],
      "mlp_ratio": cfg["mlp_dim"] / cfg["width"],
      "patch_size": cfg["patch_size"],
      "image_size": image_size,
    }
    visual = _build_vision_tower(cfg["embed_dim"], vision_cfg, quick_gelu=_quick_gelu(name))
  return ClipClassifier(visual, cfg["embed_dim"], num_classes)


def _timm(name: str, num_classes: int, image_size: int) -> nn.Module:
  timm = torch_extras.import_timm()
  if name in TIMM:
    return timm.create_model(
      TIMM[name], pretrained=False, num_classes=num_classes, img_size=image_size
    )
  from timm.models.vision_transformer import VisionTransformer  # vit_base_patch16_224's.

  cfg = VIT_CONFIGS[name]
  return VisionTransformer(
    img_size=image_size,
    patch_size=cfg["patch_size"],
    embed_dim=cfg["width"],
    depth=cfg["depth"],
    num_heads=cfg["heads"],
    mlp_ratio=cfg["mlp_dim"] / cfg["width"],
    num_classes=num_classes,
  )


def build(name: str, num_classes: int, image_size: int) -> nn.Module:
  """The PyTorch twin of ``ltjax.models.build_model(name, "linear", num_classes)`` for
  ``image_size`` px inputs (NCHW, normalised)."""
  if name not in BACKBONES:
    raise ValueError(f"no PyTorch twin for backbone {name!r}; valid: {', '.join(BACKBONES)}.")
  if VIT_CONFIGS[name]["layout"] == "clip":
    return _clip(name, num_classes, image_size)
  return _timm(name, num_classes, image_size)
