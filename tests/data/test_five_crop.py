"""``data.eval_transform=five_crop``: LIFT's test-time ensemble (shijxcs/LIFT, tte_mode
"fivecrop"): Resize(crop_size + tte_expand) + FiveCrop(crop_size) on the host, the logits
averaged over the five crops in the eval and feature steps."""

import os

import jax
import numpy as np
import pytest
from helpers import tiny_config, tiny_splits
from PIL import Image

from ltjax import config as config_lib
from ltjax import sharding
from ltjax.data import pipeline
from ltjax.data.pp import augment, image_ops
from ltjax.data.sources import ArraySource
from ltjax.train import experiment

# (height, width, channels), crop, expand: landscape, portrait grey, square, an image smaller
# than crop + expand (upsampled), a large one downsampled, and LIFT's 224 + 24.
CASES = [
  ((37, 53, 3), 16, 6),
  ((60, 41, 1), 16, 6),
  ((40, 40, 3), 20, 4),
  ((12, 15, 3), 16, 8),
  ((90, 70, 3), 14, 0),
  ((300, 260, 3), 224, 24),
]


def smooth_image(shape, seed):
  """Gradients and blobs plus noise: resampling differences show."""
  rng = np.random.default_rng(seed)
  h, w, c = shape
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  chans = [
    127
    + 100 * np.sin(2 * np.pi * (rng.uniform(1, 4) * x + rng.uniform(1, 4) * y))
    + rng.normal(0, 20, (h, w))
    for _ in range(c)
  ]
  return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def transforms():
  pytest.importorskip("torch")
  from ltjax.interop import torch_extras

  try:  # torch_extras: torchvision's import where its compiled operators cannot load.
    return torch_extras.import_torchvision().transforms
  except ImportError:
    pytest.skip("torchvision is not installed (the torch extra)")


@pytest.mark.parametrize("shape, crop, expand", CASES)
def test_crops_are_torchvision_resize_then_fivecrop(transforms, shape, crop, expand):
  image = smooth_image(shape, seed=sum(shape))
  pil = Image.fromarray(image[:, :, 0] if shape[2] == 1 else image)
  reference = transforms.Compose([transforms.Resize(crop + expand), transforms.FiveCrop(crop)])
  want = np.stack([np.asarray(c).reshape(crop, crop, shape[2]) for c in reference(pil)])
  out = augment.FiveCrop(crop_size=crop, tte_expand=expand)([image])
  assert out.shape == (1, 5, crop, crop, shape[2]) and out.dtype == np.uint8
  # Pillow's bilinear resize (antialiased), as torchvision on PIL images: the same pixels.
  np.testing.assert_array_equal(out[0], want)


def test_crop_geometry_is_the_four_corners_then_the_centre():
  # Shorter side already crop + expand: no resize, so the crops are plain slices.
  image = np.arange(20 * 27, dtype=np.int64).reshape(20, 27, 1).astype(np.uint8)
  out = image_ops.eval_resize_five_crop(image, resize=20, crop=12)
  assert image_ops.FIVE_CROPS == ("top_left", "top_right", "bottom_left", "bottom_right", "center")
  want = [image[:12, :12], image[:12, 15:], image[8:, :12], image[8:, 15:], image[4:16, 8:20]]
  np.testing.assert_array_equal(out, np.stack(want))  # Centre: round(8 / 2), round(15 / 2).


def test_eval_batches_carry_five_crops_per_example():
  images = np.stack([smooth_image((10, 14, 3), s) for s in range(5)])
  src = ArraySource(images, np.array([0, 1, 0, 1, -1]), 2, allow_open=True)
  batches = list(pipeline.eval_batches(src, 4, transform=augment.FiveCrop(8, 2)))
  assert [b["image"].shape for b in batches] == [(4, 5, 8, 8, 3)] * 2
  assert [b["mask"].tolist() for b in batches] == [[True] * 4, [True, False, False, False]]
  np.testing.assert_array_equal(batches[1]["label"], [-1, -1, -1, -1])  # Padding repeats.
  np.testing.assert_array_equal(
    batches[0]["image"][2], image_ops.eval_resize_five_crop(images[2], 10, 8)
  )


def test_image_ops_refuse_crops_that_do_not_fit():
  with pytest.raises(ValueError, match="the 9x9 crops do not fit in a 8x12 image"):
    image_ops.five_crop(np.zeros((8, 12, 3), np.uint8), 9)
  with pytest.raises(ValueError, match="crop 9 is larger than the resized shorter side 8"):
    image_ops.eval_resize_five_crop(np.zeros((8, 12, 3), np.uint8), 8, 9)
  with pytest.raises(ValueError, match="tte_expand must be an integer >= 0"):
    augment.FiveCrop(crop_size=4, tte_expand=-1)


FIVE_CROP = {"data.augment": "imagenet", "data.crop_size": 8, "data.eval_transform": "five_crop"}


@pytest.fixture(scope="module")
def five_crop_run():
  """A tiny model (cifar_resnet8) whose eval images are five 8x8 crops of 12x12 resizes."""
  config = tiny_config(**FIVE_CROP, **{"data.tte_expand": 4})
  splits = tiny_splits()
  exp, state = experiment.setup(config, splits)
  # Larger logits than the initialisation's (~0.1): averaging probabilities would differ.
  params = jax.device_get(state.params)
  params["head"]["fc"]["kernel"] = params["head"]["fc"]["kernel"] * 100.0
  state = jax.device_put(state.replace(params=params), exp.state_sharding)
  batch = next(
    pipeline.eval_batches(splits.test, config.eval.batch_size, transform=augment.FiveCrop(8, 4))
  )
  return exp, state, {k: batch[k] for k in ("image", "label")}


def test_eval_and_feature_steps_average_the_logits_of_the_five_crops(five_crop_run):
  exp, state, batch = five_crop_run
  data = sharding.batch_sharding(exp.mesh)
  assert batch["image"].shape == (16, 5, 8, 8, 1)
  # One crop at a time: the single-image program (the one every other transform runs).
  per_crop = [
    jax.device_get(
      exp.feature_step(state, sharding.to_global({**batch, "image": batch["image"][:, v]}, data))
    )
    for v in range(5)
  ]
  logits = np.stack([p["logits"] for p in per_crop], 1)  # (B, 5, K)
  mean_logits = logits.mean(1)
  assert np.abs(logits - mean_logits[:, None]).max() > 0.5  # The crops do differ.

  features = jax.device_get(exp.feature_step(state, sharding.to_global(batch, data)))
  assert features["logits"].shape == mean_logits.shape
  np.testing.assert_allclose(features["logits"], mean_logits, rtol=1e-5, atol=1e-5)
  want_features = np.stack([p["features"] for p in per_crop], 1).mean(1)
  np.testing.assert_allclose(features["features"], want_features, rtol=1e-5, atol=1e-5)

  out = jax.device_get(exp.eval_step(state, sharding.to_global(batch, data)))
  fns = exp.evaluation.device_functions
  assert set(out) == set(fns) and {"pred", "max_prob"} <= set(out)
  for name, fn in fns.items():
    want = jax.device_get(jax.jit(fn)(mean_logits, batch["label"]))
    np.testing.assert_allclose(out[name], want, rtol=1e-5, atol=1e-6, err_msg=name)
  # The logits are averaged, not the probabilities (LIFT's ensemble).
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  assert np.abs(out["max_prob"] - probs.mean(1).max(-1)).max() > 1e-2


def test_the_five_crop_eval_step_stays_sharded_on_the_batch(five_crop_run):
  exp, state, _ = five_crop_run
  batch = experiment.abstract_eval_batch(exp)
  assert exp.mesh.size == 8 and batch["image"].shape == (16, 5, 8, 8, 1)
  text = exp.eval_step.lower(state, batch).compile().as_text()
  for collective in ("all-gather", "all-to-all", "collective-permute"):
    assert collective not in text, collective  # Each device averages its own examples' crops.


def test_five_crop_refuses_a_model_trained_on_another_size():
  splits = tiny_splits()  # 8x8 images, kept at that size by crop_flip.
  config = tiny_config(**{"data.eval_transform": "five_crop", "data.crop_size": 12})
  with pytest.raises(ValueError, match="12x12 crops") as e:
    experiment.setup(config, splits)
  assert "trained on 8x8 images (data.augment=crop_flip keeps the stored size)" in str(e.value)
  assert "set --config.data.crop_size=8, or train with --config.data.augment=imagenet" in str(
    e.value
  )
  config.data.eval_transform = "ten_crop"
  with pytest.raises(ValueError, match="'ten_crop': unknown evaluation transform; valid: 'none'"):
    experiment.setup(config, splits)


def test_tte_expand_is_range_checked():
  config = tiny_config(**FIVE_CROP, **{"data.tte_expand": -1})
  with pytest.raises(ValueError, match=r"--config.data.tte_expand must be an integer >= 0"):
    config_lib.validate(config)


def test_a_trained_run_is_evaluated_with_five_crops_and_its_rows_say_so(tmp_path):
  """LIFT trains with one view and tests with five (its test_only run with tte): ltjax
  evaluates a finished run with ``data.eval_transform=five_crop``; the row records its views,
  and rows of one view are removed beside it, saying why."""
  import json

  from ltjax.evaluate import runner
  from ltjax.train import loop, restore, workdir

  config = tiny_config(**{**FIVE_CROP, "data.eval_transform": "resize_center_crop"})
  run = str(tmp_path / "run")
  one_view = loop.train_and_evaluate(config, run, splits=tiny_splits())
  assert "test_views" not in one_view["computed_with"]
  runner.update_json(os.path.join(run, "results.json"), "other", one_view)  # A second row.
  tta = tiny_config(**FIVE_CROP)
  workdir.check_evaluation(run, tta)  # An evaluation field: allowed on a finished run.
  exp, state = restore.restore_trained(tta, run, tiny_splits())
  row = runner.evaluate_and_write(exp, state, run)
  assert row["computed_with"]["test_views"] == "five_crop+24"
  with open(os.path.join(run, "results.json")) as f:
    assert set(json.load(f)) == {config.method}  # "other" (one view) went.
