"""The text-initialised head, the run's copy of its text features and the zero-shot row, in
process (the command-line walk-throughs are in the slow set: tests/interop/
test_clip_pipeline.py)."""

import dataclasses

import numpy as np
import pytest
from helpers import tiny_config, tiny_splits

from ltjax.evaluate import posthoc_methods
from ltjax.models import text_features
from ltjax.train import experiment, workdir

NAMES = ("cat", "dog", "fire_truck", "tench")


def features_file(tmp_path, names=NAMES, width=16, seed=0):
  rng = np.random.default_rng(seed)
  tf = text_features.TextFeatures(
    names, text_features.normalize(rng.normal(size=(len(names), width))), 100.0
  )
  path = str(tmp_path / "text.npz")
  text_features.save(path, tf)
  return path, tf


def clip_config(path, **overrides):
  return tiny_config(
    **{
      "model.backbone": "clip_vit_tiny",
      "model.width": 1,
      "model.head": "cosine",
      "model.text_features": path,
      "model.head_init": "text_features",
      **overrides,
    }
  )


def splits(names=NAMES):
  return dataclasses.replace(tiny_splits(size=32, channels=3), class_names=names)


@pytest.mark.parametrize("projection", [True, False])
def test_the_head_starts_from_the_text_features_of_the_class_names(tmp_path, projection):
  path, tf = features_file(tmp_path)
  tf = dataclasses.replace(tf, projection=np.random.default_rng(1).normal(size=(32, 16)))
  text_features.save(path, tf)
  config = clip_config(path, **{"model.clip_projection": projection})
  exp, state = experiment.setup(config, splits())
  started = exp.stage.start(exp, state)
  kernel = np.asarray(started.params["head"]["fc"]["kernel"])
  width = 16 if projection else 32
  np.testing.assert_allclose(kernel, text_features.head_kernel(tf, width), atol=1e-6)
  # The copy a fresh start keeps, byte for byte.
  workdir.store_inputs(str(tmp_path), config)
  copy = tmp_path / text_features.RUN_COPY
  assert copy.read_bytes() == (tmp_path / "text.npz").read_bytes()
  assert text_features.of_run(str(tmp_path), config) == str(copy)


def test_text_features_of_other_classes_or_heads_are_refused(tmp_path):
  path, _ = features_file(tmp_path)
  exp, state = experiment.setup(clip_config(path), splits(("cat", "dog", "tench", "fire_truck")))
  with pytest.raises(ValueError, match=r"class 2: 'fire_truck' in the file, 'tench' in the"):
    exp.stage.start(exp, state)
  with pytest.raises(ValueError, match=r"starts a linear/normed_linear/cosine head, not"):
    experiment.setup(clip_config(path, **{"model.head": "meta_embedding"}), splits())
  with pytest.raises(ValueError, match=r"needs --config.model.text_features=FILE"):
    experiment.setup(clip_config("", **{"model.text_features": ""}), splits())


def test_the_zero_shot_row_is_clips_and_only_on_an_untouched_clip_tower(tmp_path):
  _, tf = features_file(tmp_path)
  rng = np.random.default_rng(2)
  split = lambda n: {  # noqa: E731
    "features": rng.normal(size=(n, 16)),
    "logits": rng.normal(size=(n, 4)),
    "labels": rng.integers(0, 4, n),
  }
  inputs = posthoc_methods.PosthocInputs(
    train=split(8),
    val=split(6),
    test=split(5),
    weights=None,
    train_counts=np.array([4, 2, 1, 1]),
    eval_cfg=None,
    text_features=tf,
    pretrained_backbone=True,
  )
  method = posthoc_methods.ZeroShot()
  assert method.skip_reason(inputs) is None
  out = method.run(inputs)
  f = inputs.test["features"]
  want = 100.0 * (f / np.linalg.norm(f, axis=1, keepdims=True)) @ tf.features.T
  np.testing.assert_allclose(out["logits"], want, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(out["pred"], want.argmax(-1))
  trained = dataclasses.replace(inputs, pretrained_backbone=False)
  assert "not a CLIP tower from model.pretrained" in method.skip_reason(trained)
  assert "no text features" in method.skip_reason(dataclasses.replace(inputs, text_features=None))
