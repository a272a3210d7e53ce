"""Tests for the model zoo: parameter counts, shapes, dtypes, registries, torch parity.

Big networks are only traced (``jax.eval_shape``); real computation uses tiny inputs.
Initialisation uses the ``rbg`` PRNG, whose CPU compile is much faster than threefry's.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ltjax.models import (
  BACKBONES,
  HEADS,
  BasicBlock,
  Bottleneck,
  Classifier,
  build_model,
  get_backbone,
  get_head,
)
from ltjax.models.vit import VIT_CONFIGS

KEY = jax.random.key(0, impl="rbg")


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _abstract_variables(model, shape=(1, 32, 32, 3)):
  return jax.eval_shape(lambda: model.init(KEY, jnp.zeros(shape), train=False))


# --- Independent parameter-count formulas (params only, not batch_stats) -----------------


def _conv(cin, cout, k, groups=1):
  return k * k * (cin // groups) * cout


def _bn(c):
  return 2 * c  # scale + bias


def _basic_block(cin, cout, stride):
  n = _conv(cin, cout, 3) + _bn(cout) + _conv(cout, cout, 3) + _bn(cout)
  if stride != 1 or cin != cout:
    n += _conv(cin, cout, 1) + _bn(cout)
  return n


def _bottleneck(cin, planes, stride, groups, wpg):
  width = int(planes * wpg / 64) * groups
  cout = 4 * planes
  n = _conv(cin, width, 1) + _bn(width)
  n += _conv(width, width, 3, groups) + _bn(width)
  n += _conv(width, cout, 1) + _bn(cout)
  if stride != 1 or cin != cout:
    n += _conv(cin, cout, 1) + _bn(cout)
  return n


def _imagenet_resnet_params(layers, bottleneck, groups=1, wpg=64, num_classes=1000):
  n = _conv(3, 64, 7) + _bn(64)
  cin = 64
  for i, num_blocks in enumerate(layers):
    planes = 64 * 2**i
    for j in range(num_blocks):
      stride = 2 if i > 0 and j == 0 else 1
      if bottleneck:
        n += _bottleneck(cin, planes, stride, groups, wpg)
        cin = 4 * planes
      else:
        n += _basic_block(cin, planes, stride)
        cin = planes
  return n + cin * num_classes + num_classes


def _cifar_resnet_params(num_blocks, num_classes=10):
  n = _conv(3, 16, 3) + _bn(16)
  cin = 16
  for i, cout in enumerate((16, 32, 64)):
    for j in range(num_blocks):
      n += _basic_block(cin, cout, 2 if i > 0 and j == 0 else 1)
      cin = cout
  return n + cin * num_classes + num_classes


IMAGENET_SPECS = {
  "resnet10": ((1, 1, 1, 1), False, 1, 64),
  "resnet18": ((2, 2, 2, 2), False, 1, 64),
  "resnet34": ((3, 4, 6, 3), False, 1, 64),
  "resnet50": ((3, 4, 6, 3), True, 1, 64),
  "resnet101": ((3, 4, 23, 3), True, 1, 64),
  "resnet152": ((3, 8, 36, 3), True, 1, 64),
  "resnext50_32x4d": ((3, 4, 6, 3), True, 32, 4),
  "resnext101_32x4d": ((3, 4, 23, 3), True, 32, 4),
  "resnext152_32x4d": ((3, 8, 36, 3), True, 32, 4),
}

# Published torchvision parameter counts (1000-way fc).
TORCHVISION_COUNTS = {
  "resnet18": 11_689_512,
  "resnet34": 21_797_672,
  "resnet50": 25_557_032,
  "resnet101": 44_549_160,
  "resnet152": 60_192_808,
  "resnext50_32x4d": 25_028_904,
}


def test_formula_reproduces_torchvision_counts():
  for name, expected in TORCHVISION_COUNTS.items():
    assert _imagenet_resnet_params(*IMAGENET_SPECS[name]) == expected, name
  # ResNet-10 (OLTR): stem 9,536 + stages 73,984 + 230,144 + 919,040 + 3,673,088 + fc 513,000.
  assert _imagenet_resnet_params(*IMAGENET_SPECS["resnet10"]) == 5_418_792


@pytest.mark.parametrize("name", sorted(IMAGENET_SPECS))
def test_imagenet_param_counts(name):
  model = build_model(name, "linear", num_classes=1000)
  n = _count(_abstract_variables(model)["params"])
  assert n == _imagenet_resnet_params(*IMAGENET_SPECS[name])
  if name in TORCHVISION_COUNTS:
    assert n == TORCHVISION_COUNTS[name]


@pytest.mark.parametrize(
  "name,n,approx",
  [
    ("cifar_resnet8", 1, 0.078e6),
    ("cifar_resnet20", 3, 0.27e6),
    ("cifar_resnet32", 5, 0.46e6),
    ("cifar_resnet44", 7, 0.66e6),
    ("cifar_resnet56", 9, 0.85e6),
  ],
)
def test_cifar_param_counts(name, n, approx):
  model = build_model(name, "linear", num_classes=10)
  count = _count(_abstract_variables(model)["params"])
  assert count == _cifar_resnet_params(n)
  # The paper's figures use option-A (parameter-free) shortcuts; option B adds ~0.6%.
  assert abs(count - approx) / approx < 0.03
  if name == "cifar_resnet32":
    # stem 464 + stage1 23,360 + stage2 88,768 + stage3 353,664 + fc 650.
    assert count == 466_906


def test_cifar_width_multiplier():
  model = build_model("cifar_resnet8", "linear", num_classes=3, width=0.25)
  v = _abstract_variables(model, (1, 8, 8, 1))
  assert v["params"]["backbone"]["conv1"]["kernel"].shape == (3, 3, 1, 4)
  assert v["params"]["head"]["fc"]["kernel"].shape == (16, 3)


# --- Forward passes on tiny inputs ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cifar():
  model = build_model("cifar_resnet8", "linear", num_classes=3, width=0.25)
  variables = jax.jit(model.init, static_argnames="train")(
    KEY, jnp.zeros((2, 8, 8, 1)), train=False
  )
  return model, variables


@pytest.fixture(scope="module")
def resnet10():
  model = build_model("resnet10", "linear", num_classes=5)
  variables = jax.jit(model.init, static_argnames="train")(
    KEY, jnp.zeros((1, 32, 32, 3)), train=False
  )
  return model, variables


_JITTED = {}  # (id(model), train) -> jitted apply; the closures keep the models alive.


def _apply(model, variables, x, train):
  key = (id(model), train)
  if key not in _JITTED:
    if train:
      fn = lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
    else:
      fn = lambda v, x: model.apply(v, x, train=False)
    _JITTED[key] = jax.jit(fn)
  return _JITTED[key](variables, x)


def _check_forward(model, variables, x, num_classes, feat_dim, map_hw, stem):
  """Shapes and dtypes, and the values a bug would move: features are the feature map's
  global average, logits the linear head of the features, and the stem BatchNorm's running
  statistics move to 0.9 old + 0.1 batch (PyTorch momentum 0.1) in train mode only."""
  b = x.shape[0]
  (logits, aux), updates = _apply(model, variables, x, train=True)
  assert set(aux) == {"features", "feature_map"}
  assert logits.shape == (b, num_classes) and logits.dtype == jnp.float32
  assert aux["features"].shape == (b, feat_dim) and aux["features"].dtype == jnp.float32
  assert aux["feature_map"].shape == (b, *map_hw, feat_dim)
  assert set(updates) == {"batch_stats"}
  fc = variables["params"]["head"]["fc"]
  np.testing.assert_allclose(aux["features"], aux["feature_map"].mean((1, 2)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    logits, aux["features"] @ fc["kernel"] + fc["bias"], rtol=1e-5, atol=1e-5
  )
  kernel, stride, pad = stem
  conv1 = lax.conv_general_dilated(
    x,
    variables["params"]["backbone"]["conv1"]["kernel"],
    (stride, stride),
    ((pad, pad), (pad, pad)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=lax.Precision.HIGHEST,
  )
  old = variables["batch_stats"]["backbone"]["bn1"]
  new = updates["batch_stats"]["backbone"]["bn1"]
  np.testing.assert_allclose(
    new["mean"], 0.9 * old["mean"] + 0.1 * conv1.mean((0, 1, 2)), rtol=1e-4, atol=1e-5
  )
  assert jax.tree.structure(variables["batch_stats"]) == jax.tree.structure(updates["batch_stats"])

  eval_logits, eval_aux = _apply(model, variables, x, train=False)
  assert eval_logits.shape == (b, num_classes) and eval_logits.dtype == jnp.float32
  np.testing.assert_allclose(
    eval_logits, eval_aux["features"] @ fc["kernel"] + fc["bias"], rtol=1e-5, atol=1e-5
  )
  assert not np.allclose(eval_logits, logits)  # Running averages, not batch statistics.
  assert np.all(np.isfinite(logits)) and np.all(np.isfinite(eval_logits))


def test_cifar_forward_train_and_eval(tiny_cifar):
  model, variables = tiny_cifar
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  _check_forward(model, variables, x, num_classes=3, feat_dim=16, map_hw=(2, 2), stem=(3, 1, 1))


def test_resnet10_forward_train_and_eval(resnet10):
  model, variables = resnet10
  # Same input shape as the torch parity test, so the compiled functions are shared.
  x = jax.random.normal(jax.random.key(1), (2, 56, 56, 3))
  _check_forward(model, variables, x, num_classes=5, feat_dim=512, map_hw=(2, 2), stem=(7, 2, 3))


def test_parameter_paths_and_init(tiny_cifar):
  _, variables = tiny_cifar
  params = variables["params"]
  assert set(params) == {"backbone", "head"}
  assert set(params["head"]) == {"fc"}
  assert set(params["head"]["fc"]) == {"kernel", "bias"}
  backbone = params["backbone"]
  assert {"conv1", "bn1", "layer1_0", "layer2_0", "layer3_0"} <= set(backbone)
  assert "bias" not in backbone["conv1"]
  assert {"downsample_conv", "downsample_bn"} <= set(backbone["layer2_0"])
  assert "downsample_conv" not in backbone["layer1_0"]
  np.testing.assert_array_equal(backbone["bn1"]["scale"], 1.0)
  np.testing.assert_array_equal(backbone["bn1"]["bias"], 0.0)
  bound = 1 / math.sqrt(16)
  for leaf in (params["head"]["fc"]["kernel"], params["head"]["fc"]["bias"]):
    assert np.all(np.abs(leaf) <= bound) and np.std(leaf) > 0


def test_bfloat16_compute_float32_params(tiny_cifar):
  model = build_model("cifar_resnet8", "linear", num_classes=3, width=0.25, dtype="bfloat16")
  assert model.backbone.dtype == jnp.bfloat16 and model.head.dtype == jnp.bfloat16
  _, variables = tiny_cifar  # same structure; parameters are float32 either way
  abstract = _abstract_variables(model, (2, 8, 8, 1))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(abstract))
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  (logits, aux), updates = _apply(model, variables, x, train=True)
  assert logits.dtype == jnp.float32 and aux["features"].dtype == jnp.float32
  assert aux["feature_map"].dtype == jnp.bfloat16
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(updates))
  logits32, _ = _apply(tiny_cifar[0], variables, x, train=True)[0]
  np.testing.assert_allclose(logits, logits32, rtol=0.1, atol=0.1)


# --- Registries and errors -----------------------------------------------------------------


def test_registry_names():
  resnets = set(IMAGENET_SPECS) | {f"cifar_resnet{d}" for d in (8, 20, 32, 44, 56)}
  assert set(BACKBONES) == resnets | set(VIT_CONFIGS)
  assert {"linear", "lws"} <= set(HEADS)
  assert isinstance(get_backbone("resnet18"), nn.Module)
  assert get_backbone("resnet18", dtype="bfloat16").dtype == jnp.bfloat16
  assert get_head("linear", num_classes=4).num_classes == 4
  assert isinstance(build_model("resnet18", "linear", 4), Classifier)


def test_unknown_names_raise():
  with pytest.raises(ValueError, match="'resnet51': unknown backbone; valid: ") as info:
    get_backbone("resnet51")
  for name in ("cifar_resnet8", "resnet50", "resnext50_32x4d"):
    assert repr(name) in str(info.value)
  with pytest.raises(ValueError, match="'resnet51'"):
    build_model("resnet51", "linear", 10)
  for call in (
    lambda: get_head("arcface", num_classes=10),
    lambda: build_model("resnet18", "arcface", 10),
  ):
    with pytest.raises(ValueError, match="'arcface': unknown head; valid: ") as info:
      call()
    assert "'cosine'" in str(info.value) and "'linear'" in str(info.value)
  with pytest.raises(ValueError, match="'float16'.*bfloat16.*float32"):
    build_model("resnet18", "linear", 10, dtype="float16")


def test_basic_block_rejects_resnext_options():
  block = BasicBlock(features=4, groups=2)
  with pytest.raises(ValueError, match="groups=2"):
    jax.eval_shape(lambda: block.init(KEY, jnp.zeros((1, 4, 4, 4)), train=False))


# --- Numerical parity with a PyTorch (torch.nn.functional) reference -----------------------


def _randomise(variables, seed=0):
  """Random BN scale/bias and running stats so that every BN mapping matters."""
  rng = np.random.default_rng(seed)

  def f(path, x):
    name = path[-1].key
    x = np.asarray(x)
    if name == "scale":
      return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    if name in ("bias", "mean"):
      return rng.normal(0, 0.1, x.shape).astype(np.float32)
    if name == "var":
      return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    return x

  return jax.tree_util.tree_map_with_path(f, variables)


class _TorchRef:
  """Functional torch re-implementation reading flax variables (HWIO -> OIHW)."""

  def __init__(self, variables, train):
    self.torch = pytest.importorskip("torch")
    self.F = self.torch.nn.functional
    self.params = variables["params"]
    self.stats = variables["batch_stats"]
    self.train = train

  def t(self, x):
    return self.torch.from_numpy(np.array(x))

  def conv(self, p, x, stride, groups=1):
    w = self.t(p["kernel"]).permute(3, 2, 0, 1)
    return self.F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups)

  def bn(self, p, s, x):
    return self.F.batch_norm(
      x,
      self.t(s["mean"]),
      self.t(s["var"]),
      self.t(p["scale"]),
      self.t(p["bias"]),
      training=self.train,
      eps=1e-5,
    )

  def basic(self, p, s, x, stride):
    y = self.F.relu(self.bn(p["bn1"], s["bn1"], self.conv(p["conv1"], x, stride)))
    y = self.bn(p["bn2"], s["bn2"], self.conv(p["conv2"], y, 1))
    if "downsample_conv" in p:
      x = self.bn(
        p["downsample_bn"], s["downsample_bn"], self.conv(p["downsample_conv"], x, stride)
      )
    return self.F.relu(y + x)

  def bottleneck(self, p, s, x, stride, groups):
    y = self.F.relu(self.bn(p["bn1"], s["bn1"], self.conv(p["conv1"], x, 1)))
    y = self.F.relu(self.bn(p["bn2"], s["bn2"], self.conv(p["conv2"], y, stride, groups)))
    y = self.bn(p["bn3"], s["bn3"], self.conv(p["conv3"], y, 1))
    if "downsample_conv" in p:
      x = self.bn(
        p["downsample_bn"], s["downsample_bn"], self.conv(p["downsample_conv"], x, stride)
      )
    return self.F.relu(y + x)

  def resnet_basic(self, x_nhwc):
    p, s = self.params["backbone"], self.stats["backbone"]
    x = self.t(x_nhwc).permute(0, 3, 1, 2)
    x = self.F.relu(self.bn(p["bn1"], s["bn1"], self.conv(p["conv1"], x, 2)))
    x = self.F.max_pool2d(x, 3, stride=2, padding=1)
    for i in range(1, 5):
      j = 0
      while f"layer{i}_{j}" in p:
        name = f"layer{i}_{j}"
        x = self.basic(p[name], s[name], x, 2 if i > 1 and j == 0 else 1)
        j += 1
    features = x.mean(dim=(2, 3))
    fc = self.params["head"]["fc"]
    logits = features @ self.t(fc["kernel"]) + self.t(fc["bias"])
    return features.numpy(), logits.numpy()


@pytest.mark.parametrize("train", [False, True])
def test_resnet10_matches_torch_reference(resnet10, train):
  model, variables = resnet10
  variables = _randomise(variables)
  # Odd sizes along the way (56 -> 28 -> 14 -> 7 -> 4 -> 2) exercise padding alignment.
  x = np.asarray(jax.random.normal(jax.random.key(2), (2, 56, 56, 3)))
  out = _apply(model, variables, x, train)
  logits, aux = out[0] if train else out
  ref_features, ref_logits = _TorchRef(variables, train).resnet_basic(x)
  np.testing.assert_allclose(aux["features"], ref_features, rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-3, atol=1e-4)


def test_grouped_bottleneck_matches_torch_reference():
  block = Bottleneck(features=16, strides=2, groups=4, base_width=8)  # inner width 8, out 64
  x = np.asarray(jax.random.normal(jax.random.key(3), (2, 7, 7, 16)))
  variables = jax.jit(block.init, static_argnames="train")(KEY, x, train=False)
  assert variables["params"]["conv2"]["kernel"].shape == (3, 3, 2, 8)
  variables = _randomise(variables)
  y = jax.jit(lambda v, x: block.apply(v, x, train=False))(variables, x)
  assert y.shape == (2, 4, 4, 64)
  ref = _TorchRef(variables, train=False)
  ref_y = ref.bottleneck(ref.params, ref.stats, ref.t(x).permute(0, 3, 1, 2), 2, 4)
  np.testing.assert_allclose(y, ref_y.permute(0, 2, 3, 1).numpy(), rtol=1e-3, atol=1e-4)
