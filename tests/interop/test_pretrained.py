"""model.pretrained: a bare PyTorch ResNet state dict as a fresh run's backbone."""

import logging

import jax
import numpy as np
import pytest
from helpers import tiny_config, tiny_splits

from ltjax import config as config_lib
from ltjax.train import experiment

torch = pytest.importorskip("torch")
import torch_reference as ref  # noqa: E402

SPLITS = tiny_splits(size=32, channels=3)


def rgb_config(**overrides):
  return tiny_config(
    **{
      "model.backbone": "resnet10",
      "dataset.mean": config_lib.IMAGENET_MEAN,
      "dataset.std": config_lib.IMAGENET_STD,
      **overrides,
    }
  )


def torchvision_like_file(tmp_path, seed=0, extra=None, drop=()):
  """A random reference ResNet-10 (BatchNorm statistics calibrated on the images) saved as
  torchvision saves its ImageNet models: a bare state dict, with the 1000-class ``fc``."""
  feat = ref.resnet10()
  images = SPLITS.train.get_batch(np.arange(len(SPLITS.train)))[0].astype(np.float32)
  x = (images / 255.0 - np.asarray(config_lib.IMAGENET_MEAN)) / np.asarray(config_lib.IMAGENET_STD)
  ref.randomize_(feat, seed, torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32)))
  state = {k: v.clone() for k, v in feat.state_dict().items() if k not in drop}
  state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.zeros(1000)
  state.update(extra or {})
  path = str(tmp_path / "resnet10.pth")
  torch.save(state, path)
  return path, feat, x


def started(config):
  exp, state = experiment.setup(config, SPLITS)
  return exp, exp.stage.start(exp, state)


def test_pretrained_backbone_gives_the_torch_features(tmp_path):
  path, feat, x = torchvision_like_file(tmp_path)
  exp, state = started(rgb_config(**{"model.pretrained": path}))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  got, _ = exp.model.apply(jax.device_get(variables), x, train=False, method=exp.model.features)
  with torch.no_grad():
    want = feat(torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))).numpy()
  np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-4)
  assert np.abs(want).max() > 0.1
  # The head is not in the file: it keeps its fresh initialisation.
  fresh = jax.device_get(experiment.setup(rgb_config(), SPLITS)[1].params["head"])
  head = jax.device_get(state.params["head"])
  for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(head), strict=True):
    np.testing.assert_array_equal(a, b)


def test_missing_tensors_keep_their_initialisation_and_are_logged(tmp_path, caplog):
  dropped = ("layer4.0.bn2.running_mean", "layer4.0.conv2.weight")
  path, _, _ = torchvision_like_file(tmp_path, drop=dropped)
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    _, state = started(rgb_config(**{"model.pretrained": path}))
  assert "lacks 2 tensor(s)" in caplog.text and "layer4.0.conv2.weight" in caplog.text
  fresh_exp, fresh = experiment.setup(rgb_config(), SPLITS)
  np.testing.assert_array_equal(
    jax.device_get(state.params["backbone"]["layer4_0"]["conv2"]["kernel"]),
    jax.device_get(fresh.params["backbone"]["layer4_0"]["conv2"]["kernel"]),
  )


def test_extra_or_misshaped_tensors_are_one_error_naming_them(tmp_path):
  path, _, _ = torchvision_like_file(
    tmp_path, extra={"layer5.0.conv1.weight": torch.zeros(3), "conv1.weight": torch.zeros(3)}
  )
  with pytest.raises(ValueError) as e:
    started(rgb_config(**{"model.pretrained": path}))
  message = str(e.value)
  assert "tensors the backbone lacks (1):\n    layer5.0.conv1.weight" in message
  assert "conv1.weight: (3,), backbone/conv1/kernel needs (64, 3, 7, 7)" in message
  # A ResNet-18 file for a ResNet-10 backbone: its second blocks are extra, with a hint.
  resnet18 = str(tmp_path / "resnet18.pth")
  torch.save(ref.ResNetFeature(ref.BasicBlock, [2, 2, 2, 2]).state_dict(), resnet18)
  with pytest.raises(ValueError, match=r"layer1\.1\.conv1\.weight(.|\n)*looks like resnet18"):
    started(rgb_config(**{"model.pretrained": resnet18}))


def test_not_a_state_dict_and_missing_files_are_clear_errors(tmp_path):
  path = str(tmp_path / "final_model_checkpoint.pth")
  torch.save({"state_dict_best": {"feat_model": {}, "classifier": {}}}, path)
  with pytest.raises(ValueError, match="reference final checkpoint.*ltjax import-torch"):
    started(rgb_config(**{"model.pretrained": path}))
  with pytest.raises(ValueError, match="model.pretrained=/nonexistent.pth does not exist"):
    experiment.setup(rgb_config(**{"model.pretrained": "/nonexistent.pth"}), SPLITS)
  # cRT takes its backbone from init_from or from model.pretrained (a foundation model's
  # features), not both; LWS loads its classifier from init_from too, so only from there.
  both = {"model.pretrained": path, "init_from": str(tmp_path)}
  with pytest.raises(ValueError, match="stage 'crt' takes its backbone from init_from or"):
    experiment.setup(rgb_config(stage="crt", **both), SPLITS)
  with pytest.raises(ValueError, match="stage 'lws' loads its backbone from init_from"):
    experiment.setup(rgb_config(stage="lws", **{"model.pretrained": path}), SPLITS)


def test_missing_torch_names_the_extra(tmp_path, monkeypatch):
  path = str(tmp_path / "any.pth")
  open(path, "wb").close()
  monkeypatch.setitem(__import__("sys").modules, "torch", None)
  with pytest.raises(ValueError, match=r"model.pretrained: .*pip install 'ltjax\[torch\]'"):
    experiment.setup(rgb_config(**{"model.pretrained": path}), SPLITS)
