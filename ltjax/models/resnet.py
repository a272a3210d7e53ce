"""ResNet and ResNeXt backbones (torchvision layout) and CIFAR-style ResNets.

Every backbone is a linen module called as ``backbone(x, train)`` on a float NHWC batch
and returns a dict::

  {"feature_map": (B, H, W, C) in the computation dtype,
   "features":    (B, C) float32, the global average pool of the feature map}

Conventions shared by all modules here:

* ``dtype`` is the computation dtype (e.g. ``jnp.bfloat16``); parameters are always
  float32. The input is cast to ``dtype`` on entry.
* Convolutions have no bias and use He-normal fan-out init; BatchNorm
  (``ltjax.models.batchnorm``) starts at scale 1, bias 0 and uses PyTorch's hyper-parameters
  (momentum 0.1 there, i.e. 0.9 in flax; epsilon 1e-5) and its running variance (the
  unbiased batch variance). ``train=True`` normalises with batch statistics and updates
  ``batch_stats`` (apply with ``mutable=["batch_stats"]``); ``train=False`` uses the
  running averages.
* Padding is explicit and symmetric as in PyTorch, so torchvision weights map one-to-one
  (conv kernels transposed from OIHW to HWIO).

Parameter names follow torchvision: ``conv1``/``bn1`` for the stem, ``layer{i}_{j}`` for
block ``j`` of stage ``i`` (1-based stages), and ``conv1``/``bn1``/.../``downsample_conv``/
``downsample_bn`` inside a block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ltjax.models.batchnorm import BatchNorm
from ltjax.models.cpu_kernels import conv_general_dilated, max_pool

Dtype = Any
Array = Any

conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

_BN_MOMENTUM = 0.9  # flax convention; PyTorch's momentum=0.1
_BN_EPSILON = 1e-5


def _conv(
  features: int, kernel: int, strides: int, dtype: Dtype, name: str, groups: int = 1
) -> nn.Conv:
  """Bias-free conv with PyTorch-style symmetric padding ``kernel // 2``."""
  pad = kernel // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(strides, strides),
    padding=((pad, pad), (pad, pad)),
    feature_group_count=groups,
    use_bias=False,
    dtype=dtype,
    param_dtype=jnp.float32,
    kernel_init=conv_init,
    conv_general_dilated=conv_general_dilated,
    name=name,
  )


def _bn(train: bool, dtype: Dtype, name: str) -> BatchNorm:
  return BatchNorm(
    use_running_average=not train,
    momentum=_BN_MOMENTUM,
    epsilon=_BN_EPSILON,
    dtype=dtype,
    name=name,
  )


def _pool(feature_map: Array) -> Array:
  """Global average pool in float32: ``(B, H, W, C) -> (B, C)``."""
  return jnp.mean(feature_map.astype(jnp.float32), axis=(1, 2))


class BasicBlock(nn.Module):
  """Two 3x3 convs with an identity (or 1x1 conv + BN) shortcut.

  Attributes:
    features: output channels (``planes`` in torchvision; expansion 1).
    strides: stride of the first 3x3 conv and of the shortcut.
    groups: must be 1 (kept so ``ResNet`` can pass it to any block type).
    base_width: must be 64 (likewise).
    dtype: computation dtype.
    shortcut: where the shape changes, "conv" (1x1 conv + BN, option B) or "pad" (the
      strided identity with zero-padded channels, option A of He et al. 2016).
  """

  features: int
  strides: int = 1
  groups: int = 1
  base_width: int = 64
  dtype: Dtype = jnp.float32
  shortcut: str = "conv"

  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if self.groups != 1 or self.base_width != 64:
      raise ValueError(
        f"BasicBlock supports only groups=1 and base_width=64, got groups={self.groups}, "
        f"base_width={self.base_width}; use Bottleneck for ResNeXt."
      )
    residual = x
    y = _conv(self.features, 3, self.strides, self.dtype, "conv1")(x)
    y = _bn(train, self.dtype, "bn1")(y)
    y = nn.relu(y)
    y = _conv(self.features, 3, 1, self.dtype, "conv2")(y)
    y = _bn(train, self.dtype, "bn2")(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      if self.shortcut == "pad":  # Option A: x[:, ::s, ::s], channels zero-padded both sides.
        extra = self.features - x.shape[-1]
        residual = x[:, :: self.strides, :: self.strides, :]
        residual = jnp.pad(residual, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
      else:
        residual = _conv(self.features, 1, self.strides, self.dtype, "downsample_conv")(x)
        residual = _bn(train, self.dtype, "downsample_bn")(residual)
    return nn.relu(y + residual)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided, optionally grouped), 1x1 expand (x4); ResNet v1.5.

  The inner width is ``int(features * base_width / 64) * groups``, so ``groups=1,
  base_width=64`` is a plain ResNet bottleneck and ``groups=32, base_width=4`` is
  ResNeXt 32x4d.

  Attributes:
    features: ``planes``; the block outputs ``features * 4`` channels.
    strides: stride of the 3x3 conv and of the shortcut.
    groups: number of groups of the 3x3 conv (ResNeXt cardinality).
    base_width: width per group at ``features=64``.
    dtype: computation dtype.
  """

  features: int
  strides: int = 1
  groups: int = 1
  base_width: int = 64
  dtype: Dtype = jnp.float32

  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    width = int(self.features * (self.base_width / 64.0)) * self.groups
    out_features = self.features * self.expansion
    residual = x
    y = _conv(width, 1, 1, self.dtype, "conv1")(x)
    y = _bn(train, self.dtype, "bn1")(y)
    y = nn.relu(y)
    y = _conv(width, 3, self.strides, self.dtype, "conv2", groups=self.groups)(y)
    y = _bn(train, self.dtype, "bn2")(y)
    y = nn.relu(y)
    y = _conv(out_features, 1, 1, self.dtype, "conv3")(y)
    y = _bn(train, self.dtype, "bn3")(y)
    if self.strides != 1 or x.shape[-1] != out_features:
      residual = _conv(out_features, 1, self.strides, self.dtype, "downsample_conv")(x)
      residual = _bn(train, self.dtype, "downsample_bn")(residual)
    return nn.relu(y + residual)


class ResNet(nn.Module):
  """ImageNet ResNet / ResNeXt in the torchvision layout (without the fc layer).

  Stem: 7x7/2 conv 64, BN, ReLU, 3x3/2 max pool (padding 1); then four stages of widths
  64/128/256/512 (times ``block_cls.expansion``), the first block of stages 2-4 having
  stride 2; then global average pooling.

  Attributes:
    stage_sizes: number of blocks in each of the four stages.
    block_cls: ``BasicBlock`` or ``Bottleneck``.
    groups: ResNeXt cardinality (Bottleneck only).
    width_per_group: ResNeXt width per group (Bottleneck only); 64 for plain ResNets.
    dtype: computation dtype.
  """

  stage_sizes: Sequence[int]
  block_cls: type[nn.Module]
  groups: int = 1
  width_per_group: int = 64
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> dict[str, Array]:
    if len(self.stage_sizes) != 4:
      raise ValueError(f"ResNet needs 4 stage sizes, got stage_sizes={tuple(self.stage_sizes)}.")
    x = jnp.asarray(x, self.dtype)
    x = _conv(64, 7, 2, self.dtype, "conv1")(x)
    x = _bn(train, self.dtype, "bn1")(x)
    x = nn.relu(x)
    x = max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = self.block_cls(
          features=64 * 2**i,
          strides=2 if (i > 0 and j == 0) else 1,
          groups=self.groups,
          base_width=self.width_per_group,
          dtype=self.dtype,
          name=f"layer{i + 1}_{j}",
        )(x, train)
    return {"feature_map": x, "features": _pool(x)}


class CifarResNet(nn.Module):
  """CIFAR ResNet (He et al. 2016, Sec. 4.2) with option-B (1x1 conv + BN) shortcuts, or
  option A (``shortcut="pad"``: the paper's CIFAR network and the LDAM-DRW code's).

  3x3 conv 16, BN, ReLU; three stages of ``num_blocks`` BasicBlocks of widths 16/32/64
  (times ``width``), stride 2 at the start of stages 2 and 3; global average pooling.
  Depth is ``6 * num_blocks + 2``.

  Attributes:
    num_blocks: BasicBlocks per stage (``n`` in the paper).
    width: channel multiplier (1 is the paper's network; <1 is handy for tiny tests).
    dtype: computation dtype.
    shortcut: "conv" (option B) or "pad" (option A), see ``BasicBlock``.
  """

  num_blocks: int
  width: float = 1
  dtype: Dtype = jnp.float32
  shortcut: str = "conv"

  @nn.compact
  def __call__(self, x: Array, train: bool) -> dict[str, Array]:
    widths = [max(1, int(round(w * self.width))) for w in (16, 32, 64)]
    x = jnp.asarray(x, self.dtype)
    x = _conv(widths[0], 3, 1, self.dtype, "conv1")(x)
    x = _bn(train, self.dtype, "bn1")(x)
    x = nn.relu(x)
    for i, features in enumerate(widths):
      for j in range(self.num_blocks):
        x = BasicBlock(
          features=features,
          strides=2 if (i > 0 and j == 0) else 1,
          dtype=self.dtype,
          shortcut=self.shortcut,
          name=f"layer{i + 1}_{j}",
        )(x, train)
    return {"feature_map": x, "features": _pool(x)}


# name -> (module class, fixed attributes). ``models.BACKBONES`` wraps these.
RESNET_CONFIGS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
  "resnet10": (ResNet, dict(stage_sizes=(1, 1, 1, 1), block_cls=BasicBlock)),
  "resnet18": (ResNet, dict(stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)),
  "resnet34": (ResNet, dict(stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)),
  "resnet50": (ResNet, dict(stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck)),
  "resnet101": (ResNet, dict(stage_sizes=(3, 4, 23, 3), block_cls=Bottleneck)),
  "resnet152": (ResNet, dict(stage_sizes=(3, 8, 36, 3), block_cls=Bottleneck)),
  "resnext50_32x4d": (
    ResNet,
    dict(stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, groups=32, width_per_group=4),
  ),
  "resnext101_32x4d": (
    ResNet,
    dict(stage_sizes=(3, 4, 23, 3), block_cls=Bottleneck, groups=32, width_per_group=4),
  ),
  "resnext152_32x4d": (
    ResNet,
    dict(stage_sizes=(3, 8, 36, 3), block_cls=Bottleneck, groups=32, width_per_group=4),
  ),
  "cifar_resnet8": (CifarResNet, dict(num_blocks=1)),
  "cifar_resnet20": (CifarResNet, dict(num_blocks=3)),
  "cifar_resnet32": (CifarResNet, dict(num_blocks=5)),
  "cifar_resnet44": (CifarResNet, dict(num_blocks=7)),
  "cifar_resnet56": (CifarResNet, dict(num_blocks=9)),
}
