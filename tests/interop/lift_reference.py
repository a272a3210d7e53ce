"""A PyTorch restatement of LIFT's parameter-efficient ViT and its training recipe (Shi et
al., "Long-Tail Learning with Foundation Model: Heavy Fine-Tuning Hurts", ICML 2024; the
code at github.com/shijxcs/LIFT), written for the tests from what that code computes (not
copied from it), so that ltjax's ``model.peft`` methods can be checked against it:

* the two towers LIFT tunes, holding their parameters under the names LIFT's
  ``Peft_ViT`` reads: OpenAI CLIP's ``VisionTransformer`` (``ClipTower``) and timm's AugReg
  ``VisionTransformer`` (``AugRegTower``); their own forwards are not used, as LIFT's are
  not;
* the tuner modules of ``models/peft_modules.py`` (``VPT``, ``Adapter``, ``AdaptFormer``,
  ``LoRA``, ``SSF``) with their initialisation, and ``ViTTuner``, which places them per
  block as ``models/peft_vit.py``'s ``ViT_Tuner`` does (every block: LIFT's ``partial`` unset);
* ``PeftViT``: ``Peft_ViT.forward``, the blocks computed by hand with the tuner's modules
  where LIFT puts them, and the class token through ``ln_post`` (no projection);
* ``CosineClassifier`` (``models/classifiers.py``), ``logit_adjusted_loss``
  (``utils/losses.py``'s ``LogitAdjustedLoss``) and ``sgd`` (``trainer.py``'s
  ``build_optimizer``: one SGD over the tuner's and the head's parameters, the rest without
  gradient).

``named_tensors`` pairs ltjax's parameter paths (``ltjax.models.vit``, ``head/fc/kernel``)
with these modules' tensors; ``load_ltjax`` copies ltjax's values in (every tensor on both
sides accounted for) and ``to_ltjax`` reads them back in ltjax's layouts.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------ the towers


class QuickGELU(nn.Module):
  """OpenAI CLIP's activation, ``x * sigmoid(1.702 x)``."""

  def forward(self, x):
    return x * torch.sigmoid(1.702 * x)


class ClipBlock(nn.Module):
  """The parameters of OpenAI's ``ResidualAttentionBlock``: ``ln_1``, ``attn``
  (``nn.MultiheadAttention``: ``in_proj_weight`` / ``in_proj_bias``, ``out_proj``), ``ln_2``
  and ``mlp`` = ``c_fc``, the activation, ``c_proj``."""

  def __init__(self, width: int, heads: int, mlp_dim: int, act: nn.Module):
    super().__init__()
    self.ln_1 = nn.LayerNorm(width, eps=1e-5)
    self.attn = nn.MultiheadAttention(width, heads)
    self.ln_2 = nn.LayerNorm(width, eps=1e-5)
    self.mlp = nn.Sequential(
      OrderedDict(
        [("c_fc", nn.Linear(width, mlp_dim)), ("gelu", act), ("c_proj", nn.Linear(mlp_dim, width))]
      )
    )


class ClipTower(nn.Module):
  """OpenAI CLIP's image ``VisionTransformer``: a bias-free patch convolution ``conv1``,
  ``class_embedding``, ``positional_embedding``, ``ln_pre``, ``transformer.resblocks``,
  ``ln_post``, ``proj`` (QuickGELU, LayerNorm epsilon 1e-5)."""

  layout = "clip"

  def __init__(self, patch_size, width, depth, heads, mlp_dim, embed_dim, grid, gelu=False):
    super().__init__()
    self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
    self.class_embedding = nn.Parameter(torch.zeros(width))
    self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
    self.ln_pre = nn.LayerNorm(width, eps=1e-5)
    act = nn.GELU() if gelu else QuickGELU()
    self.transformer = nn.Module()
    self.transformer.resblocks = nn.ModuleList(
      ClipBlock(width, heads, mlp_dim, act) for _ in range(depth)
    )
    self.ln_post = nn.LayerNorm(width, eps=1e-5)
    self.proj = nn.Parameter(torch.zeros(width, embed_dim))


class TimmAttention(nn.Module):
  def __init__(self, width: int, heads: int):
    super().__init__()
    self.num_heads = heads
    self.qkv = nn.Linear(width, 3 * width)
    self.proj = nn.Linear(width, width)


class TimmMlp(nn.Module):
  def __init__(self, width: int, mlp_dim: int):
    super().__init__()
    self.fc1 = nn.Linear(width, mlp_dim)
    self.act = nn.GELU()
    self.fc2 = nn.Linear(mlp_dim, width)


class TimmBlock(nn.Module):
  def __init__(self, width: int, heads: int, mlp_dim: int):
    super().__init__()
    self.norm1 = nn.LayerNorm(width, eps=1e-6)
    self.attn = TimmAttention(width, heads)
    self.norm2 = nn.LayerNorm(width, eps=1e-6)
    self.mlp = TimmMlp(width, mlp_dim)


class AugRegTower(nn.Module):
  """timm's AugReg ``VisionTransformer``: ``patch_embed.proj`` (with bias), ``cls_token``
  (1, 1, D), ``pos_embed`` (1, N + 1, D), ``norm_pre`` the identity, ``blocks`` (``norm1``,
  ``attn.qkv`` / ``attn.proj``, ``norm2``, ``mlp.fc1`` / ``act`` (exact GELU) / ``fc2``),
  ``norm`` (LayerNorm epsilon 1e-6)."""

  layout = "augreg"

  def __init__(self, patch_size, width, depth, heads, mlp_dim, grid):
    super().__init__()
    self.patch_embed = nn.Module()
    self.patch_embed.proj = nn.Conv2d(3, width, patch_size, patch_size, bias=True)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
    self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, width))
    self.norm_pre = nn.Identity()
    self.blocks = nn.ModuleList(TimmBlock(width, heads, mlp_dim) for _ in range(depth))
    self.norm = nn.LayerNorm(width, eps=1e-6)


def tower(config: dict, grid: int) -> nn.Module:
  """The tower of an ltjax ``VIT_CONFIGS`` entry, for ``grid x grid`` patches."""
  size = {k: config[k] for k in ("patch_size", "width", "depth", "heads", "mlp_dim")}
  if config["layout"] == "clip":
    return ClipTower(
      **size, embed_dim=config["embed_dim"], grid=grid, gelu=config.get("activation") == "gelu"
    )
  return AugRegTower(**size, grid=grid)


def _block_parts(tower: nn.Module, i: int) -> dict:
  """What ``Peft_ViT.forward`` reads of block ``i``, by the tower's names."""
  if isinstance(tower, ClipTower):
    b = tower.transformer.resblocks[i]
    return dict(
      ln_1=b.ln_1,
      ln_2=b.ln_2,
      in_w=b.attn.in_proj_weight,
      in_b=b.attn.in_proj_bias,
      out_w=b.attn.out_proj.weight,
      out_b=b.attn.out_proj.bias,
      fc1=b.mlp[0],
      act=b.mlp[1],
      fc2=b.mlp[2],
      heads=b.attn.num_heads,
    )
  b = tower.blocks[i]
  return dict(
    ln_1=b.norm1,
    ln_2=b.norm2,
    in_w=b.attn.qkv.weight,
    in_b=b.attn.qkv.bias,
    out_w=b.attn.proj.weight,
    out_b=b.attn.proj.bias,
    fc1=b.mlp.fc1,
    act=b.mlp.act,
    fc2=b.mlp.fc2,
    heads=b.attn.num_heads,
  )


def _blocks(tower: nn.Module) -> nn.ModuleList:
  return tower.transformer.resblocks if isinstance(tower, ClipTower) else tower.blocks


# ----------------------------------------------------------------------- the tuner modules


class VPT(nn.Module):
  """``vpt_len`` prompt tokens appended after the first ``seq_len`` tokens (the earlier
  prompts dropped), drawn uniform in ``+-sqrt(6 / (3 p^2 + D))``."""

  def __init__(self, vpt_len: int, seq_len: int, patch_size: int, emb_dim: int):
    super().__init__()
    self.seq_len = seq_len
    self.prompt = nn.Parameter(torch.empty(vpt_len, emb_dim))
    bound = math.sqrt(6.0 / float(3 * patch_size * patch_size + emb_dim))
    nn.init.uniform_(self.prompt, -bound, bound)

  def forward(self, x):  # (B, N, D)
    x = x[:, : self.seq_len, :]
    return torch.cat([x, self.prompt.expand(x.shape[0], -1, -1)], dim=1)


class Adapter(nn.Module):
  """``up(relu(down(LN(x))))``: PyTorch's LayerNorm, ``down`` ``kaiming_normal_(a=sqrt 5)``,
  ``up`` and both biases zero."""

  def __init__(self, in_dim: int, bottle_dim: int):
    super().__init__()
    self.ln = nn.LayerNorm(in_dim)
    self.down_proj = nn.Linear(in_dim, bottle_dim)
    self.up_proj = nn.Linear(bottle_dim, in_dim)
    nn.init.kaiming_normal_(self.down_proj.weight, a=math.sqrt(5))
    nn.init.zeros_(self.up_proj.weight)
    nn.init.zeros_(self.down_proj.bias)
    nn.init.zeros_(self.up_proj.bias)

  def forward(self, x):
    return self.up_proj(F.relu(self.down_proj(self.ln(x))))


class AdaptFormer(Adapter):
  """The adapter's bottleneck times a learnt scalar ``scale`` starting at 1."""

  def __init__(self, in_dim: int, bottle_dim: int):
    super().__init__(in_dim, bottle_dim)
    self.scale = nn.Parameter(torch.ones(1))

  def forward(self, x):
    return super().forward(x) * self.scale


class LoRA(nn.Module):
  """``(x A B) / r``: ``A`` (D, r) ``kaiming_uniform_(a=sqrt 5)``, ``B`` (r, D) zero."""

  def __init__(self, in_dim: int, bottle_dim: int):
    super().__init__()
    self.lora_A = nn.Parameter(torch.zeros(in_dim, bottle_dim))
    self.lora_B = nn.Parameter(torch.zeros(bottle_dim, in_dim))
    self.scaling = 1.0 / bottle_dim
    nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

  def forward(self, x):
    return self.scaling * (x @ self.lora_A @ self.lora_B)


class SSF(nn.Module):
  """``x * scale + shift`` per channel, scale N(1, 0.02), shift N(0, 0.02)."""

  def __init__(self, dim: int):
    super().__init__()
    self.scale = nn.Parameter(torch.empty(dim))
    self.shift = nn.Parameter(torch.empty(dim))
    nn.init.normal_(self.scale, mean=1.0, std=0.02)
    nn.init.normal_(self.shift, std=0.02)

  def forward(self, x):
    return x * self.scale + self.shift


#: ltjax's ``model.peft`` -> LIFT's config flags (``configs/model/*_peft.yaml``); ltjax's
#: ``ssf`` is LIFT's three SSF flags together.
LIFT_FLAGS = {
  "": (),
  "linear": (),
  "full": ("full_tuning",),
  "bitfit": ("bias_tuning",),
  "ln": ("ln_tuning",),
  "adaptformer": ("adaptformer",),
  "adapter": ("adapter",),
  "lora": ("lora",),
  "ssf": ("ssf_attn", "ssf_mlp", "ssf_ln"),
  "vpt_shallow": ("vpt_shallow",),
  "vpt_deep": ("vpt_deep",),
}


class ViTTuner(nn.Module):
  """``ViT_Tuner``: every parameter it holds trains. The lists hold a module per block (or
  None), as LIFT's; full, bias and LayerNorm tuning hold the tower's own parameters."""

  def __init__(
    self,
    method: str,
    tower: nn.Module,
    num_classes: int,
    adapter_dim: int | None = None,
    vpt_len: int | None = None,
  ):
    super().__init__()
    flags = set(LIFT_FLAGS[method])
    blocks = _blocks(tower)
    n = len(blocks)
    parts = _block_parts(tower, 0)
    emb_dim = parts["ln_1"].weight.shape[0]
    attn_in, mlp_in = parts["in_b"].shape[0], parts["fc1"].bias.shape[0]
    if isinstance(tower, ClipTower):
      seq_len, patch = tower.positional_embedding.shape[0], tower.conv1.kernel_size[0]
    else:
      seq_len, patch = tower.pos_embed.shape[1], tower.patch_embed.proj.kernel_size[0]
    if adapter_dim is None:  # LIFT's rule.
      adapter_dim = 2 ** max(0, int(math.log2(num_classes / (n * 2))))
    if vpt_len is None:
      vpt_len = 10

    def each(make):
      return nn.ModuleList(make() for _ in range(n))

    none = lambda: nn.ModuleList([None] * n)  # noqa: E731
    self.block_tuned = blocks if "full_tuning" in flags else None
    self.bias_tuned = (
      nn.ParameterList(p for name, p in blocks.named_parameters() if name.endswith("bias"))
      if "bias_tuning" in flags
      else None
    )
    self.ln_tuned = (
      nn.ModuleList(m for m in blocks.modules() if isinstance(m, nn.LayerNorm))
      if "ln_tuning" in flags
      else None
    )
    vpt = lambda: VPT(vpt_len, seq_len, patch, emb_dim)  # noqa: E731
    if "vpt_shallow" in flags:
      self.vpt_list = nn.ModuleList([vpt(), *[None] * (n - 1)])
    else:
      self.vpt_list = each(vpt) if "vpt_deep" in flags else none()
    adapter = lambda: Adapter(emb_dim, adapter_dim)  # noqa: E731
    self.adapter_list = each(adapter) if "adapter" in flags else none()
    adaptformer = lambda: AdaptFormer(emb_dim, adapter_dim)  # noqa: E731
    self.adaptformer_list = each(adaptformer) if "adaptformer" in flags else none()
    lora = lambda: nn.ModuleDict({"q": LoRA(emb_dim, adapter_dim), "v": LoRA(emb_dim, adapter_dim)})  # noqa: E731
    self.lora_list = each(lora) if "lora" in flags else none()
    ssf_attn = lambda: nn.ModuleDict({"attn_in": SSF(attn_in), "attn_out": SSF(emb_dim)})  # noqa: E731
    self.ssf_attn_list = each(ssf_attn) if "ssf_attn" in flags else none()
    ssf_mlp = lambda: nn.ModuleDict({"mlp_in": SSF(mlp_in), "mlp_out": SSF(emb_dim)})  # noqa: E731
    self.ssf_mlp_list = each(ssf_mlp) if "ssf_mlp" in flags else none()
    ssf_ln = lambda: nn.ModuleDict({"ln_1": SSF(emb_dim), "ln_2": SSF(emb_dim)})  # noqa: E731
    self.ssf_ln_list = each(ssf_ln) if "ssf_ln" in flags else none()


class PeftViT(nn.Module):
  """``Peft_ViT``: the tower's forward with the tuner's modules (``tuner=None``: none)."""

  def __init__(self, tower: nn.Module):
    super().__init__()
    self.tower = tower
    if isinstance(tower, ClipTower):
      self.patch_embedding = tower.conv1
      self.class_embedding = tower.class_embedding
      self.positional_embedding = tower.positional_embedding
      self.ln_pre = tower.ln_pre
      self.ln_post = tower.ln_post
    else:
      self.patch_embedding = tower.patch_embed.proj
      self.class_embedding = tower.cls_token
      self.positional_embedding = tower.pos_embed
      self.ln_pre = tower.norm_pre
      self.ln_post = tower.norm

  def forward(self, x, tuner: ViTTuner | None = None, head: nn.Module | None = None):
    x = x.to(self.patch_embedding.weight.dtype)
    x = self.patch_embedding(x)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (B, N, D)
    cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
    x = self.ln_pre(x)
    bsz, emb_dim = x.shape[0], x.shape[2]
    for i in range(len(_blocks(self.tower))):
      p = _block_parts(self.tower, i)
      lists = ("vpt", "adapter", "adaptformer", "lora", "ssf_attn", "ssf_mlp", "ssf_ln")
      modules = [None if tuner is None else getattr(tuner, f"{n}_list")[i] for n in lists]
      vpt, adapter, adaptformer, lora, ssf_attn, ssf_mlp, ssf_ln = modules
      if vpt is not None:
        x = vpt(x)
      seq_len = x.shape[1]
      x = x.permute(1, 0, 2)  # (N, B, D)
      heads = p["heads"]
      head_dim = emb_dim // heads
      # Attention.
      identity = x
      x = p["ln_1"](x)
      if ssf_ln is not None:
        x = ssf_ln["ln_1"](x)
      q, k, v = F.linear(x, p["in_w"], p["in_b"]).chunk(3, dim=-1)
      if lora is not None:
        q = q + lora["q"](x)
        v = v + lora["v"](x)
      if ssf_attn is not None:
        q, k, v = ssf_attn["attn_in"](torch.cat([q, k, v], dim=-1)).chunk(3, dim=-1)
      q, k, v = (
        t.contiguous().view(seq_len, bsz * heads, head_dim).transpose(0, 1) for t in (q, k, v)
      )
      x = F.scaled_dot_product_attention(q, k, v)
      x = x.transpose(0, 1).contiguous().view(-1, emb_dim)
      x = F.linear(x, p["out_w"], p["out_b"])
      if ssf_attn is not None:
        x = ssf_attn["attn_out"](x)
      x = x.view(seq_len, bsz, emb_dim) + identity
      # MLP.
      identity = x
      x = p["ln_2"](x)
      if ssf_ln is not None:
        x = ssf_ln["ln_2"](x)
      x = p["fc1"](x)
      if ssf_mlp is not None:
        x = ssf_mlp["mlp_in"](x)
      x = p["fc2"](p["act"](x))
      if ssf_mlp is not None:
        x = ssf_mlp["mlp_out"](x)
      if adapter is not None:
        x = x + adapter(x)
      if adaptformer is not None:
        x = x + adaptformer(identity)
      x = (x + identity).permute(1, 0, 2)  # (B, N, D)
    x = self.ln_post(x[:, 0, :])
    return x if head is None else head(x)


# --------------------------------------------------------------------- head, loss, optimizer


class CosineClassifier(nn.Module):
  """``scale * <x / ||x||, w_k / ||w_k||>``, ``weight`` (K, D) uniform(-1, 1) with unit
  rows (LIFT's trainer then replaces it: text features, class means, a linear probe)."""

  def __init__(self, feat_dim: int, num_classes: int, scale: float = 30.0):
    super().__init__()
    weight = torch.empty(num_classes, feat_dim).uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5)
    self.weight = nn.Parameter(weight)
    self.scale = scale

  def forward(self, x):
    return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1)) * self.scale


def logit_adjusted_loss(logits, target, cls_num_list, tau: float = 1.0):
  """``LogitAdjustedLoss``: cross-entropy of ``logits + tau log(n_k / N)``."""
  counts = torch.as_tensor(cls_num_list, dtype=logits.dtype)
  log_prior = torch.log(counts / counts.sum())
  return F.cross_entropy(logits + tau * log_prior.unsqueeze(0), target)


def sgd(model: nn.Module, tuner: ViTTuner, head: nn.Module, lr, momentum, weight_decay):
  """``build_optimizer``: every parameter of ``model`` without gradient, then the tuner's
  and the head's with, and one SGD over those two groups."""
  for p in model.parameters():
    p.requires_grad_(False)
  for p in [*tuner.parameters(), *head.parameters()]:
    p.requires_grad_(True)
  return torch.optim.SGD(
    [{"params": tuner.parameters()}, {"params": head.parameters()}],
    lr=lr,
    weight_decay=weight_decay,
    momentum=momentum,
  )


# ------------------------------------------------------------------ ltjax names <-> modules

_LN = {"scale": "weight", "bias": "bias"}
_DENSE = {"kernel": "weight", "bias": "bias"}


def named_tensors(tower: nn.Module, tuner: ViTTuner | None, head: nn.Module | None) -> dict:
  """ltjax parameter path (``backbone/...``, ``head/fc/kernel``) -> (the torch tensor, its
  layout: ``"same"``, ``"dense"`` (a transposed matrix), ``"conv"`` (OIHW vs HWIO),
  ``"flat"`` (timm's leading 1s))."""
  out = {}

  def ln(prefix, module):
    for k, v in _LN.items():
      out[f"{prefix}/{k}"] = (getattr(module, v), "same")

  def dense(prefix, module):
    for k, v in _DENSE.items():
      out[f"{prefix}/{k}"] = (getattr(module, v), "dense" if k == "kernel" else "same")

  b = "backbone"
  if isinstance(tower, ClipTower):
    out[f"{b}/conv1/kernel"] = (tower.conv1.weight, "conv")
    out[f"{b}/class_embedding"] = (tower.class_embedding, "same")
    out[f"{b}/positional_embedding"] = (tower.positional_embedding, "same")
    out[f"{b}/proj"] = (tower.proj, "same")
    ln(f"{b}/ln_pre", tower.ln_pre)
  else:
    out[f"{b}/conv1/kernel"] = (tower.patch_embed.proj.weight, "conv")
    out[f"{b}/conv1/bias"] = (tower.patch_embed.proj.bias, "same")
    out[f"{b}/class_embedding"] = (tower.cls_token, "flat")
    out[f"{b}/positional_embedding"] = (tower.pos_embed, "flat")
  ln(f"{b}/ln_post", tower.ln_post if isinstance(tower, ClipTower) else tower.norm)
  for i in range(len(_blocks(tower))):
    p, r = _block_parts(tower, i), f"{b}/resblocks_{i}"
    ln(f"{r}/ln_1", p["ln_1"])
    ln(f"{r}/ln_2", p["ln_2"])
    out[f"{r}/attn/in_proj/kernel"] = (p["in_w"], "dense")
    out[f"{r}/attn/in_proj/bias"] = (p["in_b"], "same")
    out[f"{r}/attn/out_proj/kernel"] = (p["out_w"], "dense")
    out[f"{r}/attn/out_proj/bias"] = (p["out_b"], "same")
    dense(f"{r}/c_fc", p["fc1"])
    dense(f"{r}/c_proj", p["fc2"])
    if tuner is None:
      continue
    for name in ("adapter", "adaptformer"):
      module = getattr(tuner, f"{name}_list")[i]
      if module is not None:
        ln(f"{r}/{name}/ln", module.ln)
        dense(f"{r}/{name}/down_proj", module.down_proj)
        dense(f"{r}/{name}/up_proj", module.up_proj)
        if name == "adaptformer":
          out[f"{r}/{name}/scale"] = (module.scale, "same")
    if tuner.lora_list[i] is not None:
      for which in ("q", "v"):
        for t in ("lora_A", "lora_B"):
          out[f"{r}/attn/lora_{which}/{t}"] = (getattr(tuner.lora_list[i][which], t), "same")
    ssf = {
      "attn/ssf_attn_in": (tuner.ssf_attn_list[i], "attn_in"),
      "attn/ssf_attn_out": (tuner.ssf_attn_list[i], "attn_out"),
      "ssf_mlp_in": (tuner.ssf_mlp_list[i], "mlp_in"),
      "ssf_mlp_out": (tuner.ssf_mlp_list[i], "mlp_out"),
      "ssf_ln_1": (tuner.ssf_ln_list[i], "ln_1"),
      "ssf_ln_2": (tuner.ssf_ln_list[i], "ln_2"),
    }
    for path, (group, key) in ssf.items():
      if group is not None:
        out[f"{r}/{path}/scale"] = (group[key].scale, "same")
        out[f"{r}/{path}/shift"] = (group[key].shift, "same")
    if tuner.vpt_list[i] is not None:
      out[f"{b}/vpt_{i}"] = (tuner.vpt_list[i].prompt, "same")
  if head is not None:
    out["head/fc/kernel"] = (head.weight, "dense")
  return out


def _to_torch_layout(value: np.ndarray, layout: str, shape) -> np.ndarray:
  if layout == "dense":
    value = value.T
  elif layout == "conv":
    value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
  return np.ascontiguousarray(value).reshape(shape)


def _to_ltjax_layout(value: np.ndarray, layout: str, shape) -> np.ndarray:
  if layout == "dense":
    return value.T.copy()
  if layout == "conv":
    return value.transpose(2, 3, 1, 0).copy()
  return value.reshape(shape).copy()


def load_ltjax(named: dict, flat: dict) -> None:
  """Copies ltjax's ``flat`` parameters (path -> array, the paths of ``named_tensors``)
  into the torch tensors (in their dtype); every tensor on both sides accounted for."""
  missing, extra = set(named) - set(flat), set(flat) - set(named)
  assert not missing and not extra, (sorted(missing), sorted(extra))
  with torch.no_grad():
    for key, (tensor, layout) in named.items():
      value = _to_torch_layout(np.asarray(flat[key], np.float64), layout, tensor.shape)
      tensor.copy_(torch.from_numpy(value).to(tensor.dtype))


def to_ltjax(named: dict, shapes: dict) -> dict:
  """The torch tensors as ltjax's ``path -> float64 array`` (``shapes``: ltjax's shapes)."""
  return {
    key: _to_ltjax_layout(tensor.detach().double().numpy(), layout, shapes[key])
    for key, (tensor, layout) in named.items()
  }


def is_tuner_path(path: str) -> bool:
  """Whether an ltjax ``backbone/...`` path is one of the tuner modules' (LIFT's
  ``ViT_Tuner`` of the module methods)."""
  return re.search(r"/(adaptformer|adapter|lora_[qv]|ssf_\w+)/|/vpt_\d+$", path) is not None
