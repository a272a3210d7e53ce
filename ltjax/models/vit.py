"""Vision Transformers (Dosovitskiy et al., ICLR 2021) as long-tail backbones, in the two
layouts whose published weights long-tail work starts from:

* ``"clip"``: CLIP's image tower (Radford et al., 2021; OpenAI ``clip/model.py``
  ``VisionTransformer`` and ``open_clip``'s): a bias-free patch convolution, a class token,
  learned position embeddings, a LayerNorm before the blocks (``ln_pre``), pre-norm blocks
  with QuickGELU (``x * sigmoid(1.702 x)``, as OpenAI's weights were trained; OpenCLIP's own
  LAION / DataComp weights of ``ViT-B-16`` / ``ViT-L-14`` were trained with the exact GELU:
  ``activation="gelu"``, the ``openclip_*`` backbones), LayerNorm epsilon 1e-5, and the
  class token through ``ln_post`` and the linear projection ``proj`` into the joint
  image-text space (the features a text-initialised head scores);
* ``"augreg"``: the ImageNet-21k ViTs of "How to train your ViT" (Steiner et al., 2022; the
  ``.npz`` files big_vision and timm publish): a patch convolution with bias, no ``ln_pre``,
  exact GELU, epsilon 1e-6, a final LayerNorm over all tokens and the class token as the
  feature.

Parameter names follow CLIP's state dict (``conv1``, ``class_embedding``,
``positional_embedding``, ``ln_pre``, ``resblocks_{i}`` with ``ln_1``, ``attn``
(``in_proj`` q/k/v, ``out_proj``), ``ln_2``, ``c_fc``, ``c_proj``; ``ln_post``, ``proj``) so
that a converter maps tensors one to one. Like the ResNets, the backbone returns
``{"feature_map": the patch tokens (B, H/p, W/p, C), "features": (B, D) float32}``;
``dtype`` is the computation dtype, parameters, LayerNorm and softmax are float32.

The published weights are read by ``ltjax.models.vit_weights`` (``model.pretrained``),
checked against ``open_clip`` and ``timm`` reading the same files
(tests/models/test_vit_weights.py); the layers are checked against PyTorch restatements of
both layouts (tests/models/test_vit.py).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Layout = Literal["clip", "augreg"]
Activation = Literal["", "quick_gelu", "gelu"]


def quick_gelu(x: jax.Array) -> jax.Array:
  """OpenAI CLIP's activation: ``x * sigmoid(1.702 x)``."""
  return x * jax.nn.sigmoid(1.702 * x)


def _gelu(x: jax.Array) -> jax.Array:
  """PyTorch's ``nn.GELU()``: the exact (erf) GELU, as the AugReg ViTs and OpenCLIP's own
  weights were trained."""
  return jax.nn.gelu(x, approximate=False)


ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": _gelu}
#: The activation of a layout when ``activation`` is unset: what its first weights used.
DEFAULT_ACTIVATION = {"clip": "quick_gelu", "augreg": "gelu"}


class _LayerNorm(nn.Module):
  """LayerNorm computed in float32 whatever the computation dtype (CLIP's ``LayerNorm``
  casts up too), its ``scale`` and ``bias`` PyTorch's ``weight`` and ``bias``."""

  epsilon: float

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (width,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (width,), jnp.float32)
    y = x.astype(jnp.float32)
    mean = y.mean(-1, keepdims=True)
    var = jnp.square(y - mean).mean(-1, keepdims=True)
    y = (y - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
    return y.astype(x.dtype)


class _Attention(nn.Module):
  """Multi-head self-attention with one q/k/v projection (``in_proj``), as PyTorch's
  ``nn.MultiheadAttention`` and timm's ``qkv`` hold it; softmax in float32. ``tuning``'s
  modules sit where LIFT's ``peft_vit.py`` puts them: LoRA on the queries and values, then
  SSF on q/k/v; SSF on the output."""

  heads: int
  dtype: Dtype
  tuning: Any = None

  @nn.compact
  def __call__(self, x):
    b, n, width = x.shape
    ssf = getattr(self.tuning, "name", "") == "ssf"
    head_dim = width // self.heads
    qkv = nn.Dense(3 * width, dtype=self.dtype, name="in_proj")(x)
    name = getattr(self.tuning, "name", "")
    if name == "lora":
      rank = self.tuning.adapter_dim
      q = qkv[..., :width] + _LoRA(rank, self.dtype, name="lora_q")(x)
      v = qkv[..., 2 * width :] + _LoRA(rank, self.dtype, name="lora_v")(x)
      qkv = jnp.concatenate([q, qkv[..., width : 2 * width], v], axis=-1)
    if ssf:
      qkv = _ScaleShift(self.dtype, name="ssf_attn_in")(qkv)
    qkv = qkv.reshape(b, n, 3, self.heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(head_dim)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, width)
    out = nn.Dense(width, dtype=self.dtype, name="out_proj")(out)
    if ssf:
      out = _ScaleShift(self.dtype, name="ssf_attn_out")(out)
    return out


class _LoRA(nn.Module):
  """LoRA's update of a projection: ``(x A B) / rank``, ``A`` (D, r) uniform in
  ``+-1/sqrt(r)`` (PyTorch's ``kaiming_uniform_(a=sqrt(5))`` of a (D, r) tensor, as LIFT
  initialises ``lora_A``), ``B`` (r, D) zero."""

  rank: int
  dtype: Dtype

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    bound = 1.0 / math.sqrt(self.rank)
    init_a = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)  # noqa: E731
    a = self.param("lora_A", init_a, (width, self.rank), jnp.float32)
    b = self.param("lora_B", nn.initializers.zeros, (self.rank, width), jnp.float32)
    return (
      (x @ a.astype(self.dtype)) @ b.astype(self.dtype) * jnp.asarray(1.0 / self.rank, self.dtype)
    )


class _Bottleneck(nn.Module):
  """``up(relu(down(LN(x))))``, times a learnt scalar starting at 1 with ``scaled``
  (AdaptFormer; without: the sequential adapter). As LIFT's ``peft_modules.py``: PyTorch's
  LayerNorm (epsilon 1e-5), ``down`` drawn as ``kaiming_normal_(a=sqrt(5))`` (normal, std
  ``1/sqrt(3 D)``), ``up`` and both biases zero."""

  dim: int
  dtype: Dtype
  scaled: bool

  @nn.compact
  def __call__(self, x):
    y = _LayerNorm(1e-5, name="ln")(x)
    down = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "normal")
    y = nn.Dense(self.dim, dtype=self.dtype, kernel_init=down, name="down_proj")(y)
    y = nn.Dense(x.shape[-1], dtype=self.dtype, kernel_init=nn.initializers.zeros, name="up_proj")(
      jax.nn.relu(y)
    )
    if self.scaled:
      y = y * self.param("scale", nn.initializers.ones, (1,), jnp.float32).astype(self.dtype)
    return y


class _ScaleShift(nn.Module):
  """SSF's ``x * scale + shift`` per channel, ``scale`` drawn from N(1, 0.02) and ``shift``
  from N(0, 0.02) (LIFT's ``SSF``)."""

  dtype: Dtype

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    normal = nn.initializers.normal(0.02)
    scale = self.param("scale", lambda k, s, d: 1.0 + normal(k, s, d), (width,), jnp.float32)
    shift = self.param("shift", normal, (width,), jnp.float32)
    return x * scale.astype(self.dtype) + shift.astype(self.dtype)


class _Block(nn.Module):
  """Pre-norm residual block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``, with the
  modules of ``tuning`` (``ltjax.models.peft``) where LIFT's ``peft_vit.py`` puts them."""

  heads: int
  mlp_dim: int
  epsilon: float
  activation: Any
  dtype: Dtype
  tuning: Any = None

  @nn.compact
  def __call__(self, x):
    name = getattr(self.tuning, "name", "")

    def ssf(which, y):  # SSF after a layer; the identity for every other method.
      return _ScaleShift(self.dtype, name=which)(y) if name == "ssf" else y

    h = ssf("ssf_ln_1", _LayerNorm(self.epsilon, name="ln_1")(x))
    x = x + _Attention(self.heads, self.dtype, self.tuning, name="attn")(h)
    y = ssf("ssf_ln_2", _LayerNorm(self.epsilon, name="ln_2")(x))
    y = ssf("ssf_mlp_in", nn.Dense(self.mlp_dim, dtype=self.dtype, name="c_fc")(y))
    y = nn.Dense(x.shape[-1], dtype=self.dtype, name="c_proj")(self.activation(y))
    y = ssf("ssf_mlp_out", y)
    if name == "adapter":
      y = y + _Bottleneck(self.tuning.adapter_dim, self.dtype, False, name="adapter")(y)
    if name == "adaptformer":
      y = y + _Bottleneck(self.tuning.adapter_dim, self.dtype, True, name="adaptformer")(x)
    return x + y


class VisionTransformer(nn.Module):
  """A ViT backbone (see the module docstring for the two layouts).

  Attributes:
    patch_size: side of the square patches (16 for B/16, 14 for L/14).
    width: token width (768 for B, 1024 for L).
    depth: number of blocks.
    heads: attention heads.
    mlp_dim: hidden width of the blocks' MLP (4 x width in the published models).
    layout: ``"clip"`` or ``"augreg"``.
    embed_dim: CLIP's projection width (512 for B/16, 768 for L/14); 0 = no projection
      (``"augreg"``).
    activation: the MLP's ``"quick_gelu"`` or ``"gelu"``; ``""`` = the layout's
      (``DEFAULT_ACTIVATION``). Weights trained with one and run with the other give other
      features, so it follows the file: OpenAI's CLIP QuickGELU, OpenCLIP's own GELU.
    project: with a projection (``embed_dim``), the features are the class token projected
      into CLIP's joint image-text space (True) or the class token before it (False: where
      LIFT's heads sit, ``width`` wide); ``proj`` is a parameter either way, so a file reads
      the same.
    tuning: the parameter-efficient fine-tuning method (``ltjax.models.peft``, its options
      resolved), whose modules the blocks add; None: none.
    dtype: computation dtype.
  """

  patch_size: int
  width: int
  depth: int
  heads: int
  mlp_dim: int
  layout: Layout = "clip"
  embed_dim: int = 0
  activation: Activation = ""
  project: bool = True
  tuning: Any = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No dropout or batch statistics in these towers.
    clip = self.layout == "clip"
    epsilon = 1e-5 if clip else 1e-6
    x = x.astype(self.dtype)
    p = self.patch_size
    if x.shape[1] % p or x.shape[2] % p:
      # The patch convolution would drop the pixels past the last whole patch, unsaid.
      raise ValueError(
        f"a ViT with {p}-pixel patches needs an input side that is a multiple of {p}, got "
        f"{x.shape[1]}x{x.shape[2]}: set --config.data.crop_size to one (224 for B/16)."
      )
    tokens = nn.Conv(
      self.width,
      (p, p),
      strides=(p, p),
      padding="VALID",
      use_bias=not clip,
      dtype=self.dtype,
      name="conv1",
    )(x)
    b, h, w, _ = tokens.shape
    tokens = tokens.reshape(b, h * w, self.width)
    init = nn.initializers.normal(self.width**-0.5)
    cls = self.param("class_embedding", init, (self.width,), jnp.float32)
    pos = self.param("positional_embedding", init, (h * w + 1, self.width), jnp.float32)
    cls = jnp.broadcast_to(cls.astype(self.dtype), (b, 1, self.width))
    tokens = jnp.concatenate([cls, tokens], axis=1) + pos.astype(self.dtype)
    if clip:
      tokens = _LayerNorm(epsilon, name="ln_pre")(tokens)
    activation = ACTIVATIONS[self.activation or DEFAULT_ACTIVATION[self.layout]]
    seq_len = tokens.shape[1]
    deep = getattr(self.tuning, "deep", None)
    for i in range(self.depth):
      if deep is not None and (deep or i == 0):
        tokens = self._prompted(tokens[:, :seq_len], i, p, x.shape[-1])
      tokens = _Block(
        self.heads,
        self.mlp_dim,
        epsilon,
        activation,
        self.dtype,
        self.tuning,
        name=f"resblocks_{i}",
      )(tokens)
    if clip:
      pooled = _LayerNorm(epsilon, name="ln_post")(tokens[:, 0])
      patches = tokens[:, 1:seq_len]
    else:
      tokens = _LayerNorm(epsilon, name="ln_post")(tokens)
      pooled, patches = tokens[:, 0], tokens[:, 1:seq_len]
    if self.embed_dim:
      proj = self.param("proj", init, (self.width, self.embed_dim), jnp.float32)
      if self.project:
        pooled = pooled @ proj.astype(self.dtype)
    return {
      "feature_map": patches.reshape(b, h, w, self.width),
      "features": pooled.astype(jnp.float32),
    }

  def _prompted(self, tokens, i: int, patch: int, channels: int):
    """VPT: ``tuning.vpt_len`` learnt tokens ``vpt_{i}`` appended to the sequence, drawn
    uniform in ``+-sqrt(6 / (3 p^2 + width))`` (LIFT's ``VPT``: the fan of the patch
    convolution, as the VPT paper; LIFT counts 3 input channels)."""
    del channels
    bound = math.sqrt(6.0 / float(3 * patch * patch + self.width))
    init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)  # noqa: E731
    prompts = self.param(f"vpt_{i}", init, (self.tuning.vpt_len, self.width), jnp.float32)
    prompts = jnp.broadcast_to(prompts.astype(self.dtype), (tokens.shape[0], *prompts.shape))
    return jnp.concatenate([tokens, prompts], axis=1)


_CLIP_B16 = dict(
  patch_size=16, width=768, depth=12, heads=12, mlp_dim=3072, layout="clip", embed_dim=512
)
_CLIP_L14 = dict(
  patch_size=14, width=1024, depth=24, heads=16, mlp_dim=4096, layout="clip", embed_dim=768
)

#: name -> (VisionTransformer attributes): the published towers, and tiny ones for tests.
#: ``clip_*`` run OpenAI's weights and the others trained with QuickGELU (open_clip's
#: ``*-quickgelu`` configs; its pretrained table marks them ``quick_gelu``: OpenAI, DFN,
#: MetaCLIP), ``openclip_*`` those open_clip runs with its plain ``ViT-B-16`` / ``ViT-L-14``
#: configs (exact GELU: LAION-400M/2B, DataComp). Sizes as open_clip's ``model_configs``:
#: heads = width / 64 (its ``head_width``), MLP 4 x width.
VIT_CONFIGS: dict[str, dict[str, Any]] = {
  "clip_vit_b16": _CLIP_B16,
  "clip_vit_l14": _CLIP_L14,
  "openclip_vit_b16": dict(_CLIP_B16, activation="gelu"),
  "openclip_vit_l14": dict(_CLIP_L14, activation="gelu"),
  "vit_b16": dict(patch_size=16, width=768, depth=12, heads=12, mlp_dim=3072, layout="augreg"),
  "vit_l16": dict(patch_size=16, width=1024, depth=24, heads=16, mlp_dim=4096, layout="augreg"),
  "clip_vit_tiny": dict(
    patch_size=4, width=32, depth=2, heads=2, mlp_dim=64, layout="clip", embed_dim=16
  ),
  "vit_tiny": dict(patch_size=4, width=32, depth=2, heads=2, mlp_dim=64, layout="augreg"),
}
