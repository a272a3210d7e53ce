"""The Vision Transformer backbones against PyTorch restatements of the two layouts they load
weights from: OpenAI CLIP's ``VisionTransformer`` (open_clip's is the same) and timm's AugReg
``VisionTransformer``, with the same random weights, in float32."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from helpers import first_step, tiny_config  # noqa: E402

from ltjax import models  # noqa: E402
from ltjax.models.vit import VIT_CONFIGS, VisionTransformer  # noqa: E402

TOL = 2e-5


class QuickGELU(torch.nn.Module):
  def forward(self, x):
    return x * torch.sigmoid(1.702 * x)


class TorchBlock(torch.nn.Module):
  """OpenAI's ``ResidualAttentionBlock`` (timm's ``Block`` is the same computation)."""

  def __init__(self, width, heads, mlp_dim, eps, act):
    super().__init__()
    self.ln_1 = torch.nn.LayerNorm(width, eps=eps)
    self.attn = torch.nn.MultiheadAttention(width, heads)
    self.ln_2 = torch.nn.LayerNorm(width, eps=eps)
    self.c_fc = torch.nn.Linear(width, mlp_dim)
    self.act = act
    self.c_proj = torch.nn.Linear(mlp_dim, width)

  def forward(self, x):  # (N, B, W): sequence first, as OpenAI's.
    y = self.ln_1(x)
    x = x + self.attn(y, y, y, need_weights=False)[0]
    return x + self.c_proj(self.act(self.c_fc(self.ln_2(x))))


class TorchViT(torch.nn.Module):
  """CLIP's image tower (``clip``) or an AugReg ViT (``augreg``), as their code computes."""

  def __init__(
    self, patch_size, width, depth, heads, mlp_dim, layout, embed_dim=0, grid=2, gelu=None
  ):
    super().__init__()
    clip = layout == "clip"
    gelu = not clip if gelu is None else gelu  # OpenAI's QuickGELU; AugReg's, OpenCLIP's GELU.
    eps = 1e-5 if clip else 1e-6
    self.clip = clip
    self.conv1 = torch.nn.Conv2d(3, width, patch_size, patch_size, bias=not clip)
    self.class_embedding = torch.nn.Parameter(torch.randn(width) * width**-0.5)
    self.positional_embedding = torch.nn.Parameter(torch.randn(grid * grid + 1, width) * 0.1)
    self.ln_pre = torch.nn.LayerNorm(width, eps=eps) if clip else None
    act = torch.nn.GELU() if gelu else QuickGELU()
    self.resblocks = torch.nn.ModuleList(
      TorchBlock(width, heads, mlp_dim, eps, act) for _ in range(depth)
    )
    self.ln_post = torch.nn.LayerNorm(width, eps=eps)
    self.proj = (
      torch.nn.Parameter(torch.randn(width, embed_dim) * width**-0.5) if embed_dim else None
    )
    for ln in [self.ln_pre, self.ln_post, *(m for b in self.resblocks for m in (b.ln_1, b.ln_2))]:
      if ln is not None:  # Not the identity, so that a swapped scale/bias shows.
        torch.nn.init.normal_(ln.weight, 1.0, 0.2)
        torch.nn.init.normal_(ln.bias, 0.0, 0.2)

  def forward(self, x):
    x = self.conv1(x)
    b, w = x.shape[:2]
    x = x.reshape(b, w, -1).permute(0, 2, 1)
    x = torch.cat([self.class_embedding.expand(b, 1, w), x], 1) + self.positional_embedding
    if self.clip:
      x = self.ln_pre(x)
    x = x.permute(1, 0, 2)
    for block in self.resblocks:
      x = block(x)
    x = x.permute(1, 0, 2)
    if self.clip:
      pooled, patches = self.ln_post(x[:, 0]), x[:, 1:]
    else:
      x = self.ln_post(x)
      pooled, patches = x[:, 0], x[:, 1:]
    if self.proj is not None:
      pooled = pooled @ self.proj
    return pooled, patches


def to_flax(net: TorchViT) -> dict:
  """The ltjax parameters of the restatement (the names a converter will map)."""
  t = lambda p: np.asarray(p.detach().numpy(), np.float32)
  ln = lambda m: {"scale": t(m.weight), "bias": t(m.bias)}
  dense = lambda weight, bias: {"kernel": t(weight).T, "bias": t(bias)}
  conv = {"kernel": t(net.conv1.weight).transpose(2, 3, 1, 0)}
  if net.conv1.bias is not None:
    conv["bias"] = t(net.conv1.bias)
  params = {
    "conv1": conv,
    "class_embedding": t(net.class_embedding),
    "positional_embedding": t(net.positional_embedding),
    "ln_post": ln(net.ln_post),
  }
  if net.ln_pre is not None:
    params["ln_pre"] = ln(net.ln_pre)
  if net.proj is not None:
    params["proj"] = t(net.proj)
  for i, block in enumerate(net.resblocks):
    params[f"resblocks_{i}"] = {
      "ln_1": ln(block.ln_1),
      "attn": {
        "in_proj": dense(block.attn.in_proj_weight, block.attn.in_proj_bias),
        "out_proj": dense(block.attn.out_proj.weight, block.attn.out_proj.bias),
      },
      "ln_2": ln(block.ln_2),
      "c_fc": dense(block.c_fc.weight, block.c_fc.bias),
      "c_proj": dense(block.c_proj.weight, block.c_proj.bias),
    }
  return params


@pytest.mark.parametrize(
  "layout, embed_dim, heads, activation",
  [("clip", 24, 4, ""), ("clip", 0, 1, ""), ("clip", 24, 4, "gelu"), ("augreg", 0, 4, "")],
)
def test_the_vit_is_its_reference_layouts_computation(layout, embed_dim, heads, activation):
  torch.manual_seed(0)
  cfg = dict(patch_size=4, width=32, depth=2, heads=heads, mlp_dim=48, layout=layout)
  gelu = (activation or {"clip": "quick_gelu", "augreg": "gelu"}[layout]) == "gelu"
  net = TorchViT(**cfg, embed_dim=embed_dim, grid=3, gelu=gelu).eval()
  x = np.random.default_rng(1).normal(size=(2, 12, 12, 3)).astype(np.float32)
  with torch.no_grad():
    pooled, patches = net(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  module = VisionTransformer(**cfg, embed_dim=embed_dim, activation=activation)
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.asarray(x))["params"]
  params = to_flax(net)
  assert jax.tree.structure(shapes) == jax.tree.structure(params)  # Every tensor named.
  out = module.apply({"params": params}, jnp.asarray(x))
  np.testing.assert_allclose(out["features"], pooled.numpy(), rtol=TOL, atol=TOL)
  np.testing.assert_allclose(
    out["feature_map"], patches.numpy().reshape(2, 3, 3, 32), rtol=TOL, atol=TOL
  )
  assert np.abs(pooled.numpy()).max() > 0.1


def test_the_published_towers_have_their_sizes():
  shapes = {
    name: jax.eval_shape(
      VisionTransformer(**VIT_CONFIGS[name]).init,
      jax.random.key(0),
      jnp.zeros((1, 224, 224, 3)),
    )["params"]
    for name in ("clip_vit_b16", "vit_b16")
  }
  count = lambda tree: sum(np.prod(x.shape) for x in jax.tree.leaves(tree))
  # CLIP ViT-B/16's image tower, tensor by tensor as OpenAI's state dict lists visual.*:
  # conv1, class and position embeddings, ln_pre, 12 blocks (ln_1, in_proj, out_proj, ln_2,
  # c_fc, c_proj), ln_post, proj.
  w, n, mlp = 768, 14 * 14 + 1, 3072
  block = 2 * w + (3 * w * w + 3 * w) + (w * w + w) + 2 * w + (w * mlp + mlp) + (mlp * w + w)
  clip_b16 = 3 * 16 * 16 * w + w + n * w + 2 * w + 12 * block + 2 * w + w * 512
  assert count(shapes["clip_vit_b16"]) == clip_b16 == 86_192_640
  # AugReg ViT-B/16 (timm's vit_base_patch16_224.augreg_in21k without its head): conv1 with
  # bias, no ln_pre or proj.
  assert count(shapes["vit_b16"]) == clip_b16 - 2 * w - w * 512 + w == 85_798_656
  assert shapes["clip_vit_b16"]["positional_embedding"].shape == (197, 768)
  assert shapes["clip_vit_b16"]["proj"].shape == (768, 512)
  assert "bias" in shapes["vit_b16"]["conv1"] and "ln_pre" not in shapes["vit_b16"]


@pytest.mark.parametrize("backbone", ["vit_tiny", "clip_vit_tiny"])
def test_a_vit_backbone_trains_a_step(backbone):
  config = tiny_config(**{"model.backbone": backbone})
  start, state, (loss, params), metrics, batch = first_step(config)
  np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params["params"]), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
  assert models.BACKBONES[backbone]().module(jnp.bfloat16).dtype == jnp.bfloat16


@pytest.mark.parametrize("stage", ["oltr", "joint"])
def test_oltr_on_a_vit_is_refused_naming_why(stage):
  """OLTR's neck pools the feature map (a ResNet's features); a ViT's are its class token,
  so OLTR stage 2 (and an OLTR stage 1 with its use_fc layer) is refused, not run on other
  features."""
  from ltjax.demo import oltr_config
  from ltjax.train import experiment

  c = oltr_config("/nowhere") if stage == "oltr" else tiny_config()
  c.model.backbone, c.model.width = "clip_vit_tiny", 1
  c.oltr.fc_add = 0 if stage == "oltr" else 16
  with pytest.raises(ValueError, match=r"OLTR's neck .* pools the backbone's last feature map"):
    experiment.checked(c, check_start=False)
  c.model.backbone = "resnet10"
  experiment.checked(c, check_start=False)  # The ResNets keep it.


def test_an_input_that_is_not_whole_patches_is_refused():
  """The patch convolution would silently drop the pixels past the last whole patch."""
  module = VisionTransformer(**VIT_CONFIGS["vit_tiny"])
  with pytest.raises(ValueError, match=r"multiple of 4, got 30x30: set --config.data.crop_size"):
    module.init(jax.random.key(0), jnp.zeros((1, 30, 30, 3)))
