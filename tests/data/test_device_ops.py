"""The ``imagenet_device`` augmentation: host crop + device resize/flip/jitter."""

import jax
import numpy as np
import pytest
from helpers import load_config, set_num_classes
from train.test_split_list_training import REPO, make_tree

from ltjax.data import pipeline, samplers
from ltjax.data.pp import device_ops, image_ops
from ltjax.data.pp.augment import AUGMENTATIONS, ImageNetDevice
from ltjax.data.sources import ArraySource

SIZE = 32  # Output side; the buffer side is 64.


def smooth_image(rng, h, w, noise=12.0):
  yy, xx = np.mgrid[0:h, 0:w]
  phase = rng.uniform(0, 2 * np.pi, 3)
  freq = rng.uniform(0.01, 0.08, 3)
  base = 127 + 100 * np.sin(freq[:, None, None] * (xx + 0.7 * yy)[None] + phase[:, None, None])
  image = base.transpose(1, 2, 0) + rng.normal(0, noise, (h, w, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


# Crops smaller and larger than the 64-px buffer, upscaled and downscaled, odd shapes.
SHAPES = [(40, 50), (64, 64), (75, 100), (20, 13), (32, 32), (150, 120), (300, 200), (90, 260)]


def both_paths(images, positions, seed=7, size=SIZE):
  host = image_ops.imagenet_train_batch(images, positions, seed, size=size)
  batch = device_ops.prepare_batch(images, positions, seed, size=size)
  device = np.asarray(jax.jit(device_ops.resize_flip_jitter)(batch))
  return host, device, batch


def test_device_path_matches_the_host_path():
  rng = np.random.default_rng(0)
  images = [smooth_image(rng, *s) for s in SHAPES for _ in range(6)]
  positions = np.arange(len(images)) * 3 + 11
  host, device, batch = both_paths(images, positions)
  assert device.shape == host.shape == (len(images), SIZE, SIZE, 3)
  assert device.dtype == np.uint8
  diff = np.abs(device.astype(np.int64) - host).reshape(len(images), -1)
  assert diff.mean() < 1.5, diff.mean()
  side = device_ops.buffer_side(SIZE)
  reduced = np.array(
    [
      max(image_ops.random_resized_crop_params(*im.shape[:2], u)[2:]) > side
      for im, u in zip(images, record_u(positions), strict=True)
    ]
  )
  assert reduced.any() and (~reduced).any()
  assert (batch["crop_hw"] <= side).all()
  # Crops that fit the buffer: Pillow's resize and blends up to rounding ties.
  assert diff[~reduced].mean() < 0.2 and diff[~reduced].max() <= 6
  # Larger crops go through Pillow's reduce (box filter) first: close, not identical.
  assert diff[reduced].mean() < 3.0


def record_u(positions, seed=7):
  from ltjax.data.pp.rng import record_uniforms

  return record_uniforms(seed, positions, image_ops.IMAGENET_TRAIN_DRAWS)[:, : image_ops.RRC_DRAWS]


def test_flip_and_jitter_draws_are_the_host_paths():
  rng = np.random.default_rng(1)
  images = [smooth_image(rng, 48, 48) for _ in range(16)]
  positions = np.arange(16)
  batch = device_ops.prepare_batch(images, positions, 3, size=SIZE)
  u = record_u(positions, 3)  # Crop draws only; the rest below.
  from ltjax.data.pp.rng import record_uniforms

  full = record_uniforms(3, positions, image_ops.IMAGENET_TRAIN_DRAWS)
  np.testing.assert_array_equal(batch["flip"], full[:, image_ops.RRC_DRAWS] < 0.5)
  for i in range(16):
    box = image_ops.random_resized_crop_params(48, 48, u[i])
    np.testing.assert_array_equal(batch["crop_hw"][i], box[2:])
    np.testing.assert_array_equal(batch["jitter_order"][i], np.argsort(full[i, -3:], kind="stable"))
  assert batch["jitter"].min() >= 0.6 and batch["jitter"].max() <= 1.4


def test_jitter_alone_is_pillows():
  rng = np.random.default_rng(2)
  x = np.stack([smooth_image(rng, 24, 24, noise=30) for _ in range(12)])
  u = rng.random((12, image_ops.JITTER_DRAWS))
  host = np.stack([image_ops.color_jitter(im, row) for im, row in zip(x, u, strict=True)])
  factors = (0.6 + 0.8 * u[:, :3]).astype(np.float32)
  order = np.argsort(u[:, 3:], axis=1, kind="stable").astype(np.int32)
  device = device_ops.color_jitter(x.astype(np.float32), factors, order)
  np.testing.assert_array_equal(np.asarray(device), host)


@pytest.mark.parametrize("hw", [(64, 64), (10, 37), (64, 5), (1, 1)])
def test_padding_never_leaks(hw):
  side = device_ops.buffer_side(SIZE)
  h, w = hw
  image = np.zeros((2, side, side, 3), np.uint8)
  image[:, :h, :w] = 255  # A white crop in a zero buffer.
  image[1, :h, :w, 1] = 90  # A constant coloured one.
  batch = {
    "image": image,
    "crop_hw": np.array([hw, hw], np.int32),
    "flip": np.array([False, True]),
    "jitter": np.ones((2, 3), np.float32),  # Identity factors.
    "jitter_order": np.array([[0, 1, 2], [2, 1, 0]], np.int32),
  }
  out = np.asarray(device_ops.resize_flip_jitter(batch))
  assert out.shape == (2, SIZE, SIZE, 3)
  assert (out[0] == 255).all()
  np.testing.assert_array_equal(out[1], np.broadcast_to([255, 90, 255], out[1].shape))


def test_weights_normalise_over_the_valid_region():
  w = np.asarray(device_ops.resize_weights(np.array([1, 7, 32, 50, 64]), 64, SIZE))
  np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
  for row, n in zip(w, [1, 7, 32, 50, 64], strict=True):
    assert (row[:, n:] == 0).all() and (row >= 0).all()
  np.testing.assert_array_equal(w[2], np.eye(SIZE, 64))  # Same size: the identity.


def test_deterministic_and_batch_independent():
  rng = np.random.default_rng(3)
  images = [smooth_image(rng, *s) for s in SHAPES]
  positions = np.arange(len(images)) + 1000
  a = device_ops.prepare_batch(images, positions, 5, size=SIZE)
  b = device_ops.prepare_batch(images, positions, 5, size=SIZE)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  out = np.asarray(device_ops.resize_flip_jitter(a))
  np.testing.assert_array_equal(out, np.asarray(device_ops.resize_flip_jitter(b)))
  half = device_ops.prepare_batch(images[3:], positions[3:], 5, size=SIZE)
  np.testing.assert_array_equal(np.asarray(device_ops.resize_flip_jitter(half)), out[3:])
  other = device_ops.prepare_batch(images, positions, 6, size=SIZE)
  assert not np.array_equal(np.asarray(device_ops.resize_flip_jitter(other)), out)


def test_stream_and_augment_batch_give_the_device_batch():
  assert "imagenet_device" in AUGMENTATIONS
  rng = np.random.default_rng(4)
  images = rng.integers(0, 255, (8, 40, 40, 3)).astype(np.uint8)
  src = ArraySource(images, np.arange(8) % 2, 2)
  stream = pipeline.TrainStream(
    src,
    sampler=samplers.get("instance")(),
    seed=0,
    global_batch=4,
    augment=ImageNetDevice(crop_size=16),
  )
  batch = stream(1)
  assert set(batch) == {"image", "label", *device_ops.KEYS}
  assert batch["image"].shape == (4, 32, 32, 3)
  direct = ImageNetDevice(crop_size=16)(list(images[:4]), np.arange(4), 0)
  assert set(direct) == set(batch) - {"label"}
  assert direct["image"].shape == (4, 32, 32, 3)


def test_imagenet_device_config_trains_sharded_on_eight_devices(tmp_path, monkeypatch):
  from ltjax.train import experiment

  assert len(jax.devices()) == 8
  make_tree(str(tmp_path / "data"), np.random.default_rng(0))
  set_num_classes(monkeypatch, "imagenet_lt", 4)
  config = load_config(f"{REPO}/configs/imagenet_lt/joint_sqrt.py")
  config.dataset.root = str(tmp_path / "data")
  config.model.backbone = "cifar_resnet8"
  config.data.augment = "imagenet_device"
  config.data.crop_size = 16
  config.data.num_threads = 1
  config.num_devices = 8
  config.batch_size = config.eval.batch_size = 8
  config.num_epochs = 1
  exp, state = experiment.setup(config)
  stream = experiment.make_stream(exp)
  local = stream(0)
  assert local["image"].shape == (8, 32, 32, 3)
  from ltjax import sharding

  batch = sharding.to_global(local, sharding.batch_sharding(exp.mesh))
  assert len(batch["image"].sharding.device_set) == 8
  assert len(batch["jitter"].sharding.device_set) == 8
  state, metrics = exp.train_step(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  assert int(jax.device_get(state.step)) == 1
  # The model saw crop_size images: the device augmentation of the same batch.
  images = np.asarray(device_ops.resize_flip_jitter(local))
  assert images.shape == (8, 16, 16, 3)


def test_example_shapes_are_those_of_prepared_batches():
  rng = np.random.default_rng(2)
  images = [smooth_image(rng, 40, 56) for _ in range(3)]
  batch = device_ops.prepare_batch(images, np.arange(3), 0, size=SIZE)
  shapes = device_ops.example_shapes(SIZE, images[0].shape[2])
  assert set(shapes) == set(batch)
  for key, (shape, dtype) in shapes.items():
    assert batch[key].shape == (3, *shape) and batch[key].dtype == dtype, key
