"""Reference PyTorch checkpoints -> ltjax variables: names, layouts, logits, errors."""

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from ltjax import models
from ltjax.interop import torch_import
from ltjax.models import torch_weights

torch = pytest.importorskip("torch")
import torch_reference as ref  # noqa: E402

TOL = 1e-4


def images(n, size, seed=0, channels=3):
  return np.random.default_rng(seed).normal(size=(n, size, size, channels)).astype(np.float32)


def calibrated(feat_model, classifier, size, seed=0, channels=3):
  """Random weights; BatchNorm statistics from a random batch, then perturbed; eval mode."""
  calibration = torch.from_numpy(images(4, size, seed + 100, channels).transpose(0, 3, 1, 2))
  ref.randomize_(feat_model, seed, calibration.contiguous())
  ref.randomize_(classifier, seed + 1)
  return feat_model, classifier


def variable_shapes(model, x, centroids_shape=None):
  """Shapes of the model's params and batch_stats, without computing anything."""
  c = None if centroids_shape is None else jax.ShapeDtypeStruct(centroids_shape, jnp.float32)
  init = functools.partial(model.init, train=False)
  head_inputs = lambda c: {} if c is None else {"centroids": c}  # OLTR stage 2's head only.
  shapes = jax.eval_shape(lambda x, c: init(jax.random.key(0), x, **head_inputs(c)), x, c)
  as_tuples = lambda tree: jax.tree.map(lambda a: tuple(a.shape), tree)
  return as_tuples(shapes["params"]), as_tuples(shapes.get("batch_stats", {}))


def import_variables(path, model, x, centroids_shape=None, config=None):
  networks, centroids, _ = torch_import.parse_reference(torch_import.load_reference(path), path)
  params, stats = variable_shapes(model, x, centroids_shape)
  return torch_import.convert(networks, centroids, params, stats, centroids_shape, config, path)


def assert_same_logits(
  tmp_path, feat, clf, backbone, head, x, neck=None, centroids=None, data_parallel=True
):
  num_classes = (
    clf.fc.out_features if hasattr(clf, "fc") else clf.cosnorm_classifier.weight.shape[0]
  )
  path = str(tmp_path / "final_model_checkpoint.pth")
  ref.save_reference_checkpoint(path, feat, clf, centroids, data_parallel=data_parallel)
  want = ref.reference_logits(feat, clf, x, centroids)
  model = models.build_model(backbone, head, num_classes, neck=neck)
  cshape = None if centroids is None else tuple(centroids.shape)
  params, stats, cents = import_variables(path, model, jnp.asarray(x), cshape)
  head_inputs = {} if cents is None else {"centroids": cents}  # OLTR stage 2's head only.
  forward = jax.jit(lambda v, x, inputs: model.apply(v, x, train=False, **inputs)[0])
  got = np.asarray(forward({"params": params, "batch_stats": stats}, x, head_inputs))
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
  assert np.abs(want).max() > 0.1  # Not a vacuous comparison.
  return got


# --- Names and layouts ------------------------------------------------------------------


@pytest.mark.parametrize(
  "path, collection, expected",
  [
    (("backbone", "conv1", "kernel"), "params", ("feat_model", "conv1.weight")),
    (("backbone", "bn1", "scale"), "params", ("feat_model", "bn1.weight")),
    (("backbone", "bn1", "mean"), "batch_stats", ("feat_model", "bn1.running_mean")),
    (("backbone", "bn1", "var"), "batch_stats", ("feat_model", "bn1.running_var")),
    (
      ("backbone", "layer3_0", "downsample_conv", "kernel"),
      "params",
      ("feat_model", "layer3.0.downsample.0.weight"),
    ),
    (
      ("backbone", "layer2_1", "downsample_bn", "bias"),
      "params",
      ("feat_model", "layer2.1.downsample.1.bias"),
    ),
    (
      ("backbone", "layer4_2", "conv3", "kernel"),
      "params",
      ("feat_model", "layer4.2.conv3.weight"),
    ),
    (
      ("neck", "attention", "W", "kernel"),
      "params",
      ("feat_model", "modulatedatt.conv_mask.weight"),
    ),
    (
      ("neck", "attention", "spatial", "bias"),
      "params",
      ("feat_model", "modulatedatt.fc_spatial.bias"),
    ),
    (
      ("neck", "attention", "theta", "kernel"),
      "params",
      ("feat_model", "modulatedatt.theta.weight"),
    ),
    (("neck", "fc_add", "kernel"), "params", ("feat_model", "fc_add.weight")),
    (("head", "fc", "kernel"), "params", ("classifier", "fc.weight")),
    (("head", "scales"), "params", ("classifier", "scales")),
    (("head", "hallucinator", "bias"), "params", ("classifier", "fc_hallucinator.bias")),
    (("head", "selector", "kernel"), "params", ("classifier", "fc_selector.weight")),
    (("head", "cosnorm", "weight"), "params", ("classifier", "cosnorm_classifier.weight")),
  ],
)
def test_reference_names(path, collection, expected):
  assert torch_import.torch_name(path, collection) == expected


def test_spatial_attention_weight_is_permuted_from_nchw_to_nhwc_flattening():
  rng = np.random.default_rng(0)
  h, w, c = 3, 2, 5
  weight = rng.normal(size=(h * w, c * h * w))  # torch nn.Linear (out, in), NCHW input
  x_nchw = rng.normal(size=(c, h, w))
  want = weight @ x_nchw.reshape(-1)
  path = ("neck", "attention", "spatial", "kernel")
  assert torch_weights.reference_shape(path, (h * w * c, h * w)) == weight.shape
  kernel = torch_weights.to_ltjax(path, weight, 2)
  got = x_nchw.transpose(1, 2, 0).reshape(-1) @ kernel  # ltjax flattens NHWC
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_grouped_conv_kernel_layout():
  weight = np.arange(8 * 2 * 3 * 3, dtype=np.float32).reshape(8, 2, 3, 3)  # (O, I/g, kh, kw)
  path = ("backbone", "layer1_0", "conv2", "kernel")
  kernel = torch_weights.to_ltjax(path, weight, 4)
  assert kernel.shape == (3, 3, 2, 8)
  assert kernel[1, 2, 0, 5] == weight[5, 0, 1, 2]
  assert torch_weights.reference_shape(path, kernel.shape) == weight.shape


# --- Same logits as PyTorch -------------------------------------------------------------


def test_oltr_stage_two_resnet10_attention_meta_embedding(tmp_path):
  # The reference attention is tied to a 7x7 map: 224-px images for a ResNet.
  feat, clf = calibrated(
    ref.resnet10(use_modulatedatt=True), ref.MetaEmbeddingClassifier(512, 6), 224
  )
  x = images(2, 224, seed=1)
  centroids = ref.centroids_near(feat, x, 6, seed=2)
  neck = {"use_attention": True, "fc_add": 0}
  assert_same_logits(
    tmp_path, feat, clf, "resnet10", "meta_embedding", x, neck=neck, centroids=centroids
  )


def test_oltr_stage_two_with_fc_add_on_a_small_attention_map(tmp_path):
  feat = ref.resnet10(use_modulatedatt=True, use_fc=True, spatial=2)
  feat, clf = calibrated(feat, ref.MetaEmbeddingClassifier(512, 5), 64, seed=3)
  x = images(3, 64, seed=4)
  centroids = ref.centroids_near(feat, x, 5, seed=5)
  neck = {"use_attention": True, "fc_add": 512}
  assert_same_logits(
    tmp_path, feat, clf, "resnet10", "meta_embedding", x, neck=neck, centroids=centroids
  )


def test_oltr_stage_one_with_fc_add(tmp_path):
  # The reference OLTR stage 1 (ImageNet-LT, Places-LT): use_fc=True and a dot product.
  feat, clf = calibrated(ref.resnet10(use_fc=True), ref.DotProductClassifier(512, 5), 64, seed=10)
  neck = {"use_attention": False, "fc_add": 512}
  assert_same_logits(tmp_path, feat, clf, "resnet10", "linear", images(2, 64, seed=11), neck=neck)


def test_resnext50_dot_product(tmp_path):
  feat, clf = calibrated(ref.resnext50_32x4d(), ref.DotProductClassifier(2048, 7), 64, seed=6)
  assert_same_logits(tmp_path, feat, clf, "resnext50_32x4d", "linear", images(2, 64, seed=7))


@pytest.mark.parametrize("data_parallel", [True, False])
def test_resnet10_lws(tmp_path, data_parallel):
  feat, clf = calibrated(ref.resnet10(), ref.LWSClassifier(512, 5), 64, seed=8)
  assert_same_logits(
    tmp_path, feat, clf, "resnet10", "lws", images(2, 64, seed=9), data_parallel=data_parallel
  )


# --- Errors -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet10_state(tmp_path_factory):
  """(feat_model state dict, classifier state dict) of a random ResNet-10 + fc, 4 classes."""
  feat, clf = ref.resnet10(), ref.DotProductClassifier(512, 4)
  ref.randomize_(feat, 0)
  ref.randomize_(clf, 1)
  return feat.state_dict(), clf.state_dict()


def save(path, feat_sd, clf_sd, **extra):
  state = {"feat_model": {f"module.{k}": v for k, v in feat_sd.items()}, "classifier": clf_sd}
  torch.save({"epoch": 1, "state_dict_best": state, **extra}, path)
  return str(path)


def convert_file(path, backbone="resnet10", head="linear", num_classes=4, neck=None, **cfg):
  config = tiny_config(**{"model.backbone": backbone, "model.head": head, **cfg})
  model = models.build_model(backbone, head, num_classes, neck=neck)
  centroids_shape = (num_classes, 512) if head == "meta_embedding" else None
  return import_variables(path, model, jnp.zeros((1, 32, 32, 3)), centroids_shape, config)


def test_the_fixture_checkpoint_imports(tmp_path, resnet10_state):
  params, stats, centroids = convert_file(save(tmp_path / "ok.pth", *resnet10_state))
  assert set(params) == {"backbone", "head"} and centroids is None
  assert stats["backbone"]["bn1"]["var"].shape == (64,)


def test_unknown_keys_are_listed(tmp_path, resnet10_state):
  feat, clf = resnet10_state
  feat = {**feat, "layer5.0.conv1.weight": torch.zeros(3), "modulatedatt.g.bias": torch.zeros(2)}
  clf = {**clf, "extra": torch.zeros(1)}
  with pytest.raises(ValueError) as e:
    convert_file(save(tmp_path / "c.pth", feat, clf))
  message = str(e.value)
  assert "unknown tensors (no parameter of the model) (3)" in message
  for key in ("feat_model.layer5.0.conv1.weight", "feat_model.modulatedatt.g.bias"):
    assert key in message
  assert "classifier.extra" in message
  assert "missing" not in message
  assert "OLTR's modulated attention" in message  # hint


def test_missing_keys_are_listed(tmp_path, resnet10_state):
  feat, clf = resnet10_state
  feat = {k: v for k, v in feat.items() if k not in ("layer2.0.bn1.running_var", "conv1.weight")}
  with pytest.raises(ValueError) as e:
    convert_file(save(tmp_path / "c.pth", feat, {"fc.weight": clf["fc.weight"]}))
  message = str(e.value)
  assert "missing tensors (model parameters not in the checkpoint) (3)" in message
  for key in (
    "feat_model.conv1.weight",
    "feat_model.layer2.0.bn1.running_var",
    "classifier.fc.bias",
  ):
    assert key in message
  assert "unknown" not in message


def test_shape_mismatches_are_listed(tmp_path, resnet10_state):
  with pytest.raises(ValueError) as e:
    convert_file(save(tmp_path / "c.pth", *resnet10_state), num_classes=5)
  message = str(e.value)
  assert "shape mismatches (reference layouts) (2)" in message
  assert "classifier.fc.weight: (4, 512), model head/fc/kernel needs (5, 512)" in message
  assert "classifier.fc.bias: (4,), model head/fc/bias needs (5,)" in message


def test_wrong_backbone_gets_a_hint(tmp_path, resnet10_state):
  with pytest.raises(ValueError, match="looks like resnet10: set --config.model.backbone=resnet10"):
    convert_file(save(tmp_path / "c.pth", *resnet10_state), backbone="resnet18")


def test_head_hints(tmp_path, resnet10_state):
  feat, clf = resnet10_state
  path = save(tmp_path / "lws.pth", feat, {**clf, "scales": torch.ones(4)})
  with pytest.raises(ValueError, match="model.head='lws'"):
    convert_file(path)
  with pytest.raises(ValueError, match="has no LWS scales"):
    convert_file(save(tmp_path / "c.pth", *resnet10_state), head="lws")
  cosnorm = save(tmp_path / "cos.pth", feat, {"weight": torch.zeros(4, 512)})
  with pytest.raises(ValueError, match="standalone cosine-norm classifier"):
    convert_file(cosnorm)


def test_fc_add_hints(tmp_path):
  # OLTR stage 1 on ImageNet-LT has use_fc=True: a joint config needs oltr.fc_add=512.
  path = str(tmp_path / "stage1.pth")
  ref.save_reference_checkpoint(path, ref.resnet10(use_fc=True), ref.DotProductClassifier(512, 4))
  with pytest.raises(ValueError, match="use_fc layer: --config.oltr.fc_add=512"):
    convert_file(path)
  with pytest.raises(ValueError, match="only in OLTR stages 1 .joint. and 2 .oltr., not in 'crt'"):
    convert_file(path, stage="crt")
  path = str(tmp_path / "stage2.pth")
  feat, clf = ref.resnet10(use_modulatedatt=True, use_fc=True), ref.MetaEmbeddingClassifier(512, 4)
  ref.save_reference_checkpoint(path, feat, clf, torch.zeros(4, 512))
  neck = {"use_attention": True, "fc_add": 0}
  with pytest.raises(ValueError, match="use_fc layer: --config.oltr.fc_add=512"):
    convert_file(path, head="meta_embedding", neck=neck, stage="oltr")


def test_meta_embedding_needs_centroids(tmp_path):
  feat, clf = ref.resnet10(use_modulatedatt=True), ref.MetaEmbeddingClassifier(512, 4)
  path = str(tmp_path / "stage2.pth")
  ref.save_reference_checkpoint(path, feat, clf, centroids=None)
  neck = {"use_attention": True, "fc_add": 0}
  with pytest.raises(ValueError, match=r"needs 'centroids' \(4, 512\).*has none"):
    convert_file(path, head="meta_embedding", neck=neck, stage="oltr")


@pytest.mark.parametrize(
  "content, message",
  [
    ([1, 2], "holds a list; expected the reference's dict with 'state_dict_best'"),
    ({"conv1.weight": torch.zeros(1)}, "is a bare state dict"),
    ({"epoch": 3, "state_dict": {}}, "is a 'latest' checkpoint"),
    ({"epoch": 3}, "is a dict with keys ['epoch']"),
    ({"state_dict_best": 3}, "'state_dict_best' is a int, not a dict"),
    (
      {"state_dict_best": {"feat_model": {}, "embed": {}}},
      "must hold exactly ['feat_model', 'classifier']; missing ['classifier'], unknown ['embed']",
    ),
    (
      {"state_dict_best": {"feat_model": [], "classifier": {}}},
      "state_dict_best['feat_model'] is a list, not a state dict",
    ),
    (
      {"state_dict_best": {"feat_model": {"a": "b"}, "classifier": {}}},
      "feat_model.a is a str, not a tensor",
    ),
  ],
)
def test_other_structures_are_clear_errors(tmp_path, content, message):
  path = str(tmp_path / "x.pth")
  torch.save(content, path)
  with pytest.raises(ValueError) as e:
    torch_import.parse_reference(torch_import.load_reference(path), path)
  assert message in str(e.value)


def test_unreadable_and_missing_files(tmp_path):
  garbage = tmp_path / "garbage.pth"
  garbage.write_text("not a checkpoint")
  with pytest.raises(ValueError, match="is not a PyTorch checkpoint"):
    torch_import.load_reference(str(garbage))
  with pytest.raises(FileNotFoundError, match="no checkpoint file"):
    torch_import.load_reference(str(tmp_path / "missing.pth"))


class Opaque:
  """A Python object that only unpickles with allow_pickle."""


def test_python_objects_need_allow_pickle(tmp_path, resnet10_state):
  path = save(tmp_path / "p.pth", *resnet10_state, options=Opaque())
  with pytest.raises(ValueError, match="--allow_pickle"):
    torch_import.load_reference(path)
  assert isinstance(torch_import.load_reference(path, allow_pickle=True)["options"], Opaque)


def test_numpy_arrays_load_without_allow_pickle(tmp_path, resnet10_state):
  path = save(tmp_path / "n.pth", *resnet10_state, embed=np.zeros(3), best_acc=np.float64(0.5))
  _, _, info = torch_import.parse_reference(torch_import.load_reference(path), path)
  assert info == {"epoch": 1, "best_acc": 0.5}


def test_missing_torch_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(ImportError, match=r"pip install 'ltjax\[torch\]'"):
    torch_import.load_reference("any.pth")
