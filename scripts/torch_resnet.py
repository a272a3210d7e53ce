"""PyTorch ResNets with the same architecture as ``ltjax.models`` (for scripts/benchmark.py).

Only used to time an equivalent PyTorch training step next to ltjax's; torchvision is not
a dependency, so the networks are written out here. The layout is torchvision's (stem
7x7/2 conv + 3x3/2 max pool, four stages, ResNet v1.5 stride on the 3x3 conv) and, for
the ``cifar_*`` names, He et al.'s CIFAR ResNet with 1x1-conv shortcuts, matching
``ltjax.models.resnet``.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64):
    super().__init__()
    if groups != 1 or base_width != 64:
      raise ValueError("BasicBlock supports only groups=1 and base_width=64.")
    self.conv1 = _conv(cin, planes, 3, stride)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = _conv(planes, planes, 3)
    self.bn2 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = None
    if stride != 1 or cin != planes:
      self.downsample = nn.Sequential(_conv(cin, planes, 1, stride), nn.BatchNorm2d(planes))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    shortcut = x if self.downsample is None else self.downsample(x)
    return self.relu(y + shortcut)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64):
    super().__init__()
    width = int(planes * base_width / 64) * groups
    cout = planes * self.expansion
    self.conv1 = _conv(cin, width, 1)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = _conv(width, width, 3, stride, groups)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = _conv(width, cout, 1)
    self.bn3 = nn.BatchNorm2d(cout)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = None
    if stride != 1 or cin != cout:
      self.downsample = nn.Sequential(_conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    shortcut = x if self.downsample is None else self.downsample(x)
    return self.relu(y + shortcut)


def _init(module: nn.Module) -> None:
  for m in module.modules():
    if isinstance(m, nn.Conv2d):
      nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(m, nn.BatchNorm2d):
      nn.init.ones_(m.weight)
      nn.init.zeros_(m.bias)


class ResNet(nn.Module):
  """ImageNet ResNet / ResNeXt (torchvision layout) with a linear classifier."""

  def __init__(
    self,
    block: type[nn.Module],
    stage_sizes: tuple[int, ...],
    num_classes: int,
    groups: int = 1,
    width_per_group: int = 64,
  ):
    super().__init__()
    self.stem = nn.Sequential(
      _conv(3, 64, 7, 2),
      nn.BatchNorm2d(64),
      nn.ReLU(inplace=True),
      nn.MaxPool2d(3, stride=2, padding=1),
    )
    layers, cin = [], 64
    for i, n in enumerate(stage_sizes):
      planes = 64 * 2**i
      for j in range(n):
        stride = 2 if (i > 0 and j == 0) else 1
        layers.append(block(cin, planes, stride, groups, width_per_group))
        cin = planes * block.expansion
    self.layers = nn.Sequential(*layers)
    self.fc = nn.Linear(cin, num_classes)
    _init(self)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.layers(self.stem(x))
    return self.fc(torch.flatten(x.mean(dim=(2, 3)), 1))


class CifarResNet(nn.Module):
  """He et al.'s CIFAR ResNet (depth 6n + 2, widths 16/32/64) with a linear classifier."""

  def __init__(self, num_blocks: int, num_classes: int, width: float = 1):
    super().__init__()
    widths = [max(1, int(round(w * width))) for w in (16, 32, 64)]
    self.stem = nn.Sequential(_conv(3, widths[0], 3), nn.BatchNorm2d(widths[0]), nn.ReLU(True))
    layers, cin = [], widths[0]
    for i, planes in enumerate(widths):
      for j in range(num_blocks):
        layers.append(BasicBlock(cin, planes, 2 if (i > 0 and j == 0) else 1))
        cin = planes
    self.layers = nn.Sequential(*layers)
    self.fc = nn.Linear(cin, num_classes)
    _init(self)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.layers(self.stem(x))
    return self.fc(torch.flatten(x.mean(dim=(2, 3)), 1))


_IMAGENET = {
  "resnet10": (BasicBlock, (1, 1, 1, 1), {}),
  "resnet18": (BasicBlock, (2, 2, 2, 2), {}),
  "resnet34": (BasicBlock, (3, 4, 6, 3), {}),
  "resnet50": (Bottleneck, (3, 4, 6, 3), {}),
  "resnet101": (Bottleneck, (3, 4, 23, 3), {}),
  "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), {"groups": 32, "width_per_group": 4}),
}
_CIFAR = {"cifar_resnet8": 1, "cifar_resnet20": 3, "cifar_resnet32": 5, "cifar_resnet56": 9}
BACKBONES = tuple(_IMAGENET) + tuple(_CIFAR)


def build(name: str, num_classes: int) -> nn.Module:
  """The PyTorch twin of ``ltjax.models.build_model(name, "linear", num_classes)``."""
  if name in _IMAGENET:
    block, stages, kwargs = _IMAGENET[name]
    return ResNet(block, stages, num_classes, **kwargs)
  if name in _CIFAR:
    return CifarResNet(_CIFAR[name], num_classes)
  raise ValueError(f"no PyTorch twin for backbone {name!r}; valid: {', '.join(BACKBONES)}.")
