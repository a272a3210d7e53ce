"""Many steps like the reference: ltjax's production train step against the reference
PyTorch model trained the reference's way, from the same weights on the same batches.

The ground truth is the PyTorch model in float64. Two correct float32 implementations drift
apart from it (and from each other) at batch 8 from scratch, so a fixed tolerance is either
loose or flaky: each test measures the float32 noise floor, the PyTorch float32 run's
distance from float64, and requires ltjax's distance to stay within a small multiple of it
for every parameter, BatchNorm running statistic and the loss of every step.

The recipes are the shipped ImageNet-LT configs (classifier-balancing's ``feat_uniform.yaml``
and ``cls_crt.yaml``: SGD momentum 0.9, weight decay 5e-4, lr 0.2, cosine stepped at the start
of every epoch; cRT with its backbone fixed in train-mode BatchNorm) on a ResNet-10, the
number of epochs shortened so that the rate changes every few steps. The PyTorch side is the
reference's training loop written out (``torch.optim.SGD``, ``CosineAnnealingLR`` stepped
before each epoch, ``nn.CrossEntropyLoss``), not ltjax's. The weights reach ltjax through
its interop code (``model.pretrained``'s loader); the batches are ltjax's own stream.
"""

from __future__ import annotations

import copy
import os

import jax
import numpy as np
import pytest
from flax import traverse_util
from helpers import flat_state, load_config

from ltjax import sharding
from ltjax.data.datasets import DataSplits
from ltjax.data.sources import ArraySource
from ltjax.models import torch_weights
from ltjax.train import experiment

torch = pytest.importorskip("torch")
import torch_reference as ref  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NUM_CLASSES = 5
STEPS_PER_EPOCH = 5  # 40 training images, batch 8.
# ltjax's distance from float64 may be this many times the PyTorch float32 run's. Measured
# on the development machine: at most 3.8x (the loss after step 2 at 224 px), 1-2.5x for
# most tensors; the max-pool and BatchNorm faults of issue 21 were 10^2-10^5 times.
FLOOR_FACTOR = 8.0


def _splits(size: int) -> DataSplits:
  rng = np.random.default_rng(0)
  counts = [16, 10, 7, 4, 3]
  labels = np.repeat(np.arange(NUM_CLASSES), counts)
  images = rng.integers(0, 120, (len(labels), size, size, 3)) + labels[:, None, None, None] * 25
  train = ArraySource(images.astype(np.uint8), labels, NUM_CLASSES)
  return DataSplits(train=train, val=train, test=train, num_classes=NUM_CLASSES)


def _config(path: str, crop: int, num_epochs: int):
  c = load_config(os.path.join(REPO, path))
  c.model.backbone = "resnet10"
  c.batch_size = c.eval.batch_size = 8
  c.data.crop_size = crop
  c.data.num_threads = 1
  c.num_epochs = num_epochs
  return c


def _torch_models(x_calibration: np.ndarray, seed: int = 0):
  feat = ref.resnet10()
  ref.randomize_(feat, seed, torch.from_numpy(x_calibration.transpose(0, 3, 1, 2)))
  classifier = ref.DotProductClassifier(512, NUM_CLASSES)
  return feat, classifier


def _ltjax_state(exp, state, weights_path: str):
  """The ltjax state with the backbone of ``weights_path`` (read by the interop loader that
  ``model.pretrained`` uses)."""
  params, stats = jax.device_get(state.params), jax.device_get(state.batch_stats)
  backbone, backbone_stats, missing = torch_weights.load_pretrained_backbone(
    weights_path, params["backbone"], stats["backbone"]
  )
  assert not missing
  params = {**params, "backbone": backbone}
  stats = {**stats, "backbone": backbone_stats}
  return jax.device_put(state.replace(params=params, batch_stats=stats), exp.state_sharding)


def _normalised(exp, batch, dtype) -> torch.Tensor:
  mean, std = (np.asarray(v, np.float64) for v in (exp.config.dataset.mean, exp.config.dataset.std))
  x = np.asarray(batch["image"], np.float64 if dtype == torch.float64 else np.float32)
  x = (x / 255.0 - mean.astype(x.dtype)) / std.astype(x.dtype)
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dtype)


def _torch_run(feat, classifier, exp, batches, dtype, frozen_backbone: bool, names):
  """The reference's loop in ``dtype``: SGD with momentum and weight decay,
  CosineAnnealingLR stepped at the start of every epoch, cross-entropy; cRT: the backbone
  without gradient, in train mode. Returns the losses and, after every step, every tensor
  under its ltjax name (``_as_ltjax``)."""
  feat, classifier = copy.deepcopy(feat).to(dtype), copy.deepcopy(classifier).to(dtype)
  c = exp.config
  trained = list(classifier.parameters()) + ([] if frozen_backbone else list(feat.parameters()))
  opt = torch.optim.SGD(
    trained, lr=c.optim.lr, momentum=c.optim.momentum, weight_decay=c.optim.weight_decay
  )
  scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, c.num_epochs, eta_min=0.0)
  feat.train()
  classifier.train()
  losses, snapshots = [], []
  for step, batch in enumerate(batches):
    if step % STEPS_PER_EPOCH == 0:
      scheduler.step()  # classifier-balancing: before each epoch's batches.
    x, y = _normalised(exp, batch, dtype), torch.from_numpy(np.asarray(batch["label"], np.int64))
    with torch.set_grad_enabled(not frozen_backbone):
      features = feat(x)
    loss = torch.nn.functional.cross_entropy(classifier(features), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(float(loss.detach()))
    snapshots.append(_as_ltjax(feat, classifier, names))
  return np.array(losses), snapshots


def _as_ltjax(feat, classifier, names) -> dict[str, np.ndarray]:
  """{"params/backbone/conv1/kernel": array, "batch_stats/...", "params/head/fc/kernel"} in
  float64, in ltjax's layouts (``names``: torch key -> (collection, ltjax path))."""
  out = {}
  for key, value in feat.state_dict().items():
    if key.endswith("num_batches_tracked"):
      continue
    collection, path = names[key]
    value = value.detach().double().numpy().copy()  # A copy: float64 tensors are views.
    out[f"{collection}/backbone/{path}"] = torch_weights.to_ltjax(
      ("backbone", *path.split("/")), value, value.ndim
    )
  out["params/head/fc/kernel"] = classifier.fc.weight.detach().double().numpy().T.copy()
  out["params/head/fc/bias"] = classifier.fc.bias.detach().double().numpy().copy()
  return out


def _torch_names(state) -> dict[str, tuple[str, str]]:
  """torch key -> (collection, ltjax path below ``backbone``), by ltjax's interop naming."""
  names = {}
  for collection in ("params", "batch_stats"):
    tree = jax.device_get(getattr(state, collection))["backbone"]
    for sub in traverse_util.flatten_dict(tree):
      _, key = torch_weights.torch_name(("backbone", *sub), collection)
      names[key] = (collection, "/".join(sub))
  return names


def _ltjax_run(exp, state, batches):
  data = sharding.batch_sharding(exp.mesh)
  losses, snapshots = [], []
  for batch in batches:
    state, metrics = exp.train_step(state, sharding.to_global(batch, data))
    losses.append(float(metrics["loss"]))
    snapshots.append({k: v.astype(np.float64) for k, v in flat_state(state).items()})
  return np.array(losses), snapshots


def _compare(name, ours_all, f32_all, f64_all, losses):
  """After every step, every tensor and the loss within FLOOR_FACTOR x the float32 floor.

  The floor of a tensor at step s is the largest distance of the PyTorch float32 run from
  float64 up to step s (errors accumulate, and one step's floor can be small by chance)."""
  rows, floors = [], {}
  for step, (ours, f32, f64) in enumerate(zip(ours_all, f32_all, f64_all, strict=True)):
    for key in sorted(f64):
      scale = np.linalg.norm(f64[key])
      tiny = 1e-7 * scale + 1e-12  # Where both runs are (nearly) exact: float32 rounding.
      floors[key] = max(floors.get(key, 0.0), np.linalg.norm(f32[key] - f64[key]), tiny)
      error = np.linalg.norm(ours[key] - f64[key])
      rows.append((error / floors[key], f"step {step + 1} {key}", error, floors[key]))
  ours_l, f32_l, f64_l = losses
  for step in range(len(f64_l)):
    # A loss of 25 (lr 0.2 at batch 8 makes such jumps) is a difference of logits of that
    # size: its float32 rounding is ~1e-6 of it, whatever the PyTorch run happened to hit.
    floor = max(np.abs(f32_l[: step + 1] - f64_l[: step + 1]).max(), 1e-6 * abs(f64_l[step]))
    error = abs(ours_l[step] - f64_l[step])
    rows.append((error / floor, f"step {step + 1} loss", error, floor))
  rows.sort(reverse=True)
  for ratio, key, error, floor in rows[:3]:
    print(f"{name}: {key}: ltjax {error:.3g}, float32 floor {floor:.3g}, ratio {ratio:.2f}")
  bad = [row for row in rows if row[0] > FLOOR_FACTOR]
  assert not bad, (
    f"{name}: {len(bad)} of {len(rows)} beyond {FLOOR_FACTOR}x the float32 floor:\n"
    + "\n".join(
      f"{key}: ltjax {error:.3g} from float64, PyTorch float32 {floor:.3g} (x{ratio:.0f})"
      for ratio, key, error, floor in bad[:10]
    )
  )


def _trajectory(tmp_path, config_path: str, crop: int, num_steps: int, frozen_backbone: bool):
  num_epochs = -(-num_steps // STEPS_PER_EPOCH) + 2  # The cosine reaches 0 after the run.
  config = _config(config_path, crop, num_epochs)
  splits = _splits(crop + crop // 8)
  exp, state = experiment.setup(config, splits, check_start=False)
  assert exp.steps_per_epoch == STEPS_PER_EPOCH
  names = _torch_names(state)
  stream = experiment.make_stream(exp)
  batches = [stream(step) for step in range(num_steps)]
  calibration = np.asarray(_normalised(exp, batches[0], torch.float32).numpy()).transpose(
    0, 2, 3, 1
  )
  feat, classifier = _torch_models(calibration)
  path = str(tmp_path / "resnet10.pth")
  torch.save(feat.state_dict(), path)
  state = _ltjax_state(exp, state, path)
  head = jax.device_get(state.params["head"]["fc"])
  with torch.no_grad():  # ltjax's fresh classifier, in the reference's layout.
    classifier.fc.weight.copy_(torch.from_numpy(np.asarray(head["kernel"]).T.copy()))
    classifier.fc.bias.copy_(torch.from_numpy(np.array(head["bias"])))
  ours_l, ours = _ltjax_run(exp, state, batches)
  f32_l, f32 = _torch_run(feat, classifier, exp, batches, torch.float32, frozen_backbone, names)
  f64_l, f64 = _torch_run(feat, classifier, exp, batches, torch.float64, frozen_backbone, names)
  assert set(ours[0]) == set(f64[0])
  _compare(config.stage, ours, f32, f64, (ours_l, f32_l, f64_l))


JOINT, CRT = "configs/imagenet_lt/joint_instance.py", "configs/imagenet_lt/crt.py"


# 96 px: on the development machine the fused stem of this shape made the old max-pool
# gradient drop windows (step 1: the stem 570x the floor), 64 px did not.
@pytest.mark.parametrize("config_path, crop, steps", [(JOINT, 96, 10), (CRT, 64, 10)])
def test_short_trajectory_tracks_the_reference(tmp_path, config_path, crop, steps):
  _trajectory(tmp_path, config_path, crop, steps, frozen_backbone=config_path == CRT)


@pytest.mark.slow
@pytest.mark.parametrize("config_path", [JOINT, CRT])
def test_twenty_steps_at_224_px_track_the_reference(tmp_path, config_path):
  _trajectory(tmp_path, config_path, 224, 20, frozen_backbone=config_path == CRT)
