"""PyTorch models with the reference repositories' architecture and parameter names.

Written for the tests from the papers' formulas and the references' module layout
(zhmiao/OpenLongTailRecognition-OLTR, facebookresearch/classifier-balancing): the
``feat_model`` (torchvision-style ResNet/ResNeXt, optional ``modulatedatt`` and
``fc_add``) and the ``classifier`` heads (``fc``; ``fc`` + ``scales`` for LWS;
``fc_hallucinator``/``fc_selector``/``cosnorm_classifier`` for the meta-embedding), and the
reference checkpoint format (``save_reference_checkpoint``).

Two deliberate differences from the reference, neither affecting the parameters:
* global average pooling is ``mean`` over the map, which equals the reference's
  ``AvgPool2d(7, stride=1)`` on its 7x7 map and also works on the small maps of the tests;
* the modulated attention's map side is ``spatial`` (reference: hard-coded 7), and the
  stem's input channels ``in_channels`` (reference: 3), so the tests can run on small
  (and grey) images.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
    super().__init__()
    del groups, base_width
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    residual = x if self.downsample is None else self.downsample(x)
    return F.relu(out + residual)


class Bottleneck(nn.Module):
  """ResNet v1.5 bottleneck; ``groups``/``base_width`` make it a ResNeXt block."""

  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
    super().__init__()
    width = int(planes * (base_width / 64.0)) * groups
    self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = downsample

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = F.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    residual = x if self.downsample is None else self.downsample(x)
    return F.relu(out + residual)


class ModulatedAttLayer(nn.Module):
  """Non-local self-attention times a spatial attention map (OLTR Eq. 3), NCHW."""

  def __init__(self, in_channels, reduction=2, spatial=7):
    super().__init__()
    self.in_channels = in_channels
    self.inter_channels = in_channels // reduction
    self.spatial = spatial
    self.g = nn.Conv2d(in_channels, self.inter_channels, 1)
    self.theta = nn.Conv2d(in_channels, self.inter_channels, 1)
    self.phi = nn.Conv2d(in_channels, self.inter_channels, 1)
    self.conv_mask = nn.Conv2d(self.inter_channels, in_channels, 1, bias=False)
    self.fc_spatial = nn.Linear(spatial * spatial * in_channels, spatial * spatial)

  def forward(self, x):
    b, c, h, w = x.shape
    g = self.g(x).view(b, self.inter_channels, -1).permute(0, 2, 1)
    theta = self.theta(x).view(b, self.inter_channels, -1).permute(0, 2, 1)
    phi = self.phi(x).view(b, self.inter_channels, -1)
    attention = torch.softmax(theta @ phi, dim=-1)
    y = (attention @ g).permute(0, 2, 1).reshape(b, self.inter_channels, h, w)
    mask = self.conv_mask(y)
    # NCHW flattening: index c * h * w + row * w + col.
    spatial = torch.softmax(self.fc_spatial(x.reshape(b, -1)), dim=1)
    spatial = spatial.view(b, 1, self.spatial, self.spatial)
    return spatial * mask + x


class ResNetFeature(nn.Module):
  """The reference feature model: ResNet/ResNeXt trunk, [modulatedatt], pool, [fc_add]."""

  def __init__(
    self,
    block,
    layers,
    groups=1,
    width_per_group=64,
    use_modulatedatt=False,
    use_fc=False,
    spatial=7,
    in_channels=3,
  ):
    super().__init__()
    self.inplanes = 64
    self.groups, self.base_width = groups, width_per_group
    self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    self.layer1 = self._make_layer(block, 64, layers[0])
    self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
    self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
    self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
    self.use_fc = use_fc
    if use_fc:
      self.fc_add = nn.Linear(512 * block.expansion, 512)
    self.use_modulatedatt = use_modulatedatt
    if use_modulatedatt:
      self.modulatedatt = ModulatedAttLayer(512 * block.expansion, spatial=spatial)

  def _make_layer(self, block, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(
        nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
        nn.BatchNorm2d(planes * block.expansion),
      )
    layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
    self.inplanes = planes * block.expansion
    for _ in range(1, blocks):
      layers.append(block(self.inplanes, planes, 1, None, self.groups, self.base_width))
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    if self.use_modulatedatt:
      x = self.modulatedatt(x)
    x = x.mean(dim=(2, 3))
    if self.use_fc:
      x = F.relu(self.fc_add(x))
    return x


def resnet10(**kwargs):
  return ResNetFeature(BasicBlock, [1, 1, 1, 1], **kwargs)


def resnext50_32x4d(**kwargs):
  return ResNetFeature(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, **kwargs)


class DotProductClassifier(nn.Module):
  def __init__(self, feat_dim, num_classes):
    super().__init__()
    self.fc = nn.Linear(feat_dim, num_classes)

  def forward(self, x, centroids=None):
    return self.fc(x)


class LWSClassifier(nn.Module):
  """Decoupling's LWS: ``fc(x) * scales`` (the bias is scaled too)."""

  def __init__(self, feat_dim, num_classes):
    super().__init__()
    self.fc = nn.Linear(feat_dim, num_classes)
    self.scales = nn.Parameter(torch.ones(num_classes))

  def forward(self, x, centroids=None):
    return self.fc(x) * self.scales


class CosNormClassifier(nn.Module):
  """``scale * (|x| / (1 + |x|)) * (x / |x|) . (w / |w|)``; the scale 16 is a constant."""

  def __init__(self, in_dims, out_dims, scale=16.0):
    super().__init__()
    self.scale = scale
    bound = 1.0 / math.sqrt(in_dims)
    self.weight = nn.Parameter(torch.empty(out_dims, in_dims).uniform_(-bound, bound))

  def forward(self, x, centroids=None):
    norm_x = torch.norm(x, 2, 1, keepdim=True)
    ex = (norm_x / (1 + norm_x)) * (x / norm_x)
    ew = self.weight / torch.norm(self.weight, 2, 1, keepdim=True)
    return (self.scale * ex) @ ew.t()


class MetaEmbeddingClassifier(nn.Module):
  """OLTR dynamic meta-embedding (Eqs. 1-2) + cosine-norm classifier."""

  def __init__(self, feat_dim, num_classes):
    super().__init__()
    self.fc_hallucinator = nn.Linear(feat_dim, num_classes)
    self.fc_selector = nn.Linear(feat_dim, feat_dim)
    self.cosnorm_classifier = CosNormClassifier(feat_dim, num_classes)

  def forward(self, x, centroids):
    # Exact distances, as the reference (it broadcasts B x K x D).
    nearest = torch.cdist(x, centroids, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    reachability = (10.0 / nearest)[:, None]
    memory = torch.softmax(self.fc_hallucinator(x), dim=1) @ centroids
    selector = torch.tanh(self.fc_selector(x))
    return self.cosnorm_classifier(reachability * (x + selector * memory))


def _blocks(model: nn.Module) -> list[nn.Module]:
  return [m for m in model.modules() if isinstance(m, BasicBlock | Bottleneck)]


@torch.no_grad()
def randomize_(model: nn.Module, seed: int, calibration: torch.Tensor | None = None) -> None:
  """Random weights and BatchNorm statistics, then eval mode.

  With ``calibration`` images, the running statistics are first set to that batch's
  statistics (so activations stay O(1) through deep networks), then perturbed.
  """
  gen = torch.Generator().manual_seed(seed)

  def rand(shape, low, high):
    return torch.rand(shape, generator=gen) * (high - low) + low

  # The last BatchNorm of each residual branch gets smaller scales, so the residual sums
  # (and float32 rounding) do not grow much over the 16 blocks of a ResNeXt-50.
  branch_ends = {b.bn3 if isinstance(b, Bottleneck) else b.bn2 for b in _blocks(model)}
  for module in model.modules():
    if isinstance(module, nn.Conv2d | nn.Linear):
      fan_in = module.weight[0].numel()
      module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / math.sqrt(fan_in))
      if module.bias is not None:
        module.bias.copy_(rand(module.bias.shape, -0.1, 0.1))
    elif isinstance(module, nn.BatchNorm2d):
      low, high = (0.2, 0.5) if module in branch_ends else (0.5, 1.5)
      module.weight.copy_(rand(module.weight.shape, low, high))
      module.bias.copy_(rand(module.bias.shape, -0.2, 0.2))
      module.running_mean.copy_(rand(module.running_mean.shape, -0.2, 0.2))
      module.running_var.copy_(rand(module.running_var.shape, 0.5, 2.0))
  for name, param in model.named_parameters():
    if name.endswith("scales"):
      param.copy_(rand(param.shape, 0.5, 2.0))
    elif name.endswith("cosnorm_classifier.weight") or name == "weight":
      param.copy_(torch.randn(param.shape, generator=gen))
  if calibration is not None:
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
      m.momentum = None  # Cumulative average: one batch sets the statistics exactly.
      m.reset_running_stats()
    model.train()
    model(calibration)
    for m in bns:
      m.momentum = 0.1
      m.running_mean.add_(rand(m.running_mean.shape, -0.1, 0.1))
      m.running_var.mul_(rand(m.running_var.shape, 0.8, 1.25))
  model.eval()


def save_reference_checkpoint(
  path: str,
  feat_model: nn.Module,
  classifier: nn.Module,
  centroids: torch.Tensor | None = None,
  data_parallel: bool = True,
) -> None:
  """``torch.save`` in the references' ``final_model_checkpoint.pth`` format.

  The state dicts carry the ``module.`` prefix of ``nn.DataParallel`` (``data_parallel``);
  OLTR keeps the centroids next to ``state_dict_best`` (None in stage 1).
  """
  prefix = "module." if data_parallel else ""

  def state_dict(model):
    return {prefix + k: v.clone() for k, v in model.state_dict().items()}

  torch.save(
    {
      "epoch": 30,
      "best_epoch": 27,
      "state_dict_best": {
        "feat_model": state_dict(feat_model),
        "classifier": state_dict(classifier),
      },
      "best_acc": 0.4321,
      "centroids": centroids,
    },
    path,
  )


@torch.no_grad()
def reference_logits(feat_model, classifier, images_nhwc, centroids=None) -> np.ndarray:
  """The reference forward on normalised NHWC float images: ``(B, K)`` numpy logits."""
  x = torch.from_numpy(np.array(np.transpose(images_nhwc, (0, 3, 1, 2)), np.float32))
  return classifier(feat_model(x), centroids).numpy()


@torch.no_grad()
def centroids_near(feat_model, images_nhwc, num_classes: int, seed: int) -> torch.Tensor:
  """Random centroids around the features of ``images``, so reachabilities are O(1)."""
  x = torch.from_numpy(np.array(np.transpose(images_nhwc, (0, 3, 1, 2)), np.float32))
  features = feat_model(x)
  gen = torch.Generator().manual_seed(seed)
  noise = torch.randn(num_classes, features.shape[1], generator=gen) * features.std()
  return features.mean(0, keepdim=True) + noise
