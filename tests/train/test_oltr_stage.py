"""OLTR stage 2: what it loads, how the centroids start, sharding equivalence, bad input."""

import jax
import numpy as np
import pytest
from helpers import tiny_config, tiny_splits, tiny_stage2_config

from ltjax import sharding
from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import experiment, loop, stages
from ltjax.train import init_from as init_lib
from ltjax.train.steps import normalize


@pytest.fixture(scope="module")
def joint_dir(tmp_path_factory):
  """A short stage-1 (joint) run that stage 2 starts from."""
  workdir = str(tmp_path_factory.mktemp("joint"))
  exp, state = experiment.setup(tiny_config(num_epochs=2), tiny_splits())
  loop.train(exp, state, workdir)
  return workdir


def test_stage_two_loads_backbone_and_hallucinator_from_stage_one(joint_dir):
  params, stats, _ = init_lib.load_variables(joint_dir)
  exp, state = experiment.setup(tiny_stage2_config(joint_dir), tiny_splits())
  state = exp.stage.start(exp, state)
  got = jax.device_get(state.params)
  for a, b in zip(
    jax.tree.leaves(params["backbone"]), jax.tree.leaves(got["backbone"]), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(
    jax.tree.leaves(stats["backbone"]),
    jax.tree.leaves(jax.device_get(state.batch_stats)["backbone"]),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(
    got["head"]["hallucinator"]["kernel"], params["head"]["fc"]["kernel"]
  )
  np.testing.assert_array_equal(got["head"]["hallucinator"]["bias"], params["head"]["fc"]["bias"])
  # New layers exist and are fresh: the attention's output conv starts at zero.
  assert set(got["head"]) == {"hallucinator", "selector", "cosnorm"}
  np.testing.assert_array_equal(got["neck"]["attention"]["W"]["kernel"], 0.0)


def test_centroids_start_as_class_means_of_the_stage_two_features(joint_dir):
  splits = tiny_splits()
  exp, state = experiment.setup(tiny_stage2_config(joint_dir), splits)
  np.testing.assert_array_equal(jax.device_get(state.extra["centroids"]), 0.0)  # start() sets them.
  state = exp.stage.start(exp, state)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  images = normalize(
    np.asarray(splits.train.images, np.float32), exp.config.dataset.mean, exp.config.dataset.std
  )
  features, _ = exp.model.apply(variables, images, train=False, method=exp.model.features)
  features = np.asarray(features)
  labels = np.asarray(splits.train.labels)
  expected = np.stack([features[labels == k].mean(0) for k in range(splits.num_classes)])
  centroids = np.asarray(jax.device_get(state.extra["centroids"]))
  assert centroids.shape == (splits.num_classes, features.shape[1])
  np.testing.assert_allclose(centroids, expected, rtol=1e-5, atol=1e-5)


def three_steps(config):
  exp, state = experiment.setup(config, tiny_splits())
  state = exp.stage.start(exp, state)
  stream = experiment.make_stream(exp)
  losses = []
  for step in range(3):
    batch = sharding.to_global(stream(step), sharding.batch_sharding(exp.mesh))
    state, metrics = exp.train_step(state, batch)
    losses.append([float(metrics[k]) for k in ("loss", "ce", "centroid_loss")])
  return np.array(losses), jax.device_get(state)


def test_stage_two_on_eight_devices_matches_one(joint_dir):
  (loss1, s1), (loss8, s8) = (
    three_steps(tiny_stage2_config(joint_dir, num_devices=n)) for n in (1, 8)
  )
  assert np.all(np.isfinite(loss1))
  np.testing.assert_allclose(loss1, loss8, rtol=1e-5, atol=1e-5)
  for tree in ("params", "batch_stats", "extra"):
    leaves1 = jax.tree_util.tree_leaves_with_path(getattr(s1, tree))
    leaves8 = jax.tree.leaves(getattr(s8, tree))
    assert len(leaves1) == len(leaves8) > 0
    for (path, a), b in zip(leaves1, leaves8, strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=f"{tree} {path}")


def test_training_moves_centroids_and_every_parameter_group(joint_dir, tmp_path):
  exp, start = experiment.setup(tiny_stage2_config(joint_dir), tiny_splits())
  start = jax.device_get(exp.stage.start(exp, start))
  exp, state = experiment.setup(tiny_stage2_config(joint_dir, num_epochs=2), tiny_splits())
  end = jax.device_get(loop.train(exp, state, str(tmp_path)))
  assert not np.allclose(start.extra["centroids"], end.extra["centroids"])
  for group in ("backbone", "neck", "head"):
    moved = [
      not np.array_equal(a, b)
      for a, b in zip(
        jax.tree.leaves(start.params[group]), jax.tree.leaves(end.params[group]), strict=True
      )
    ]
    assert any(moved), group


def test_stage_two_bad_configs_are_clear_errors(joint_dir):
  with pytest.raises(ValueError, match="set --config.init_from"):
    experiment.setup(tiny_stage2_config(""), tiny_splits())
  with pytest.raises(ValueError, match="meta_embedding"):
    experiment.setup(tiny_stage2_config(joint_dir, **{"model.head": "linear"}), tiny_splits())


def test_train_initialises_centroids_once_and_not_on_resume(joint_dir, tmp_path, monkeypatch):
  calls = []
  real = stages.oltr.init_centroids
  monkeypatch.setattr(stages.oltr, "init_centroids", lambda exp, s: calls.append(1) or real(exp, s))
  config = tiny_stage2_config(joint_dir)
  first = jax.device_get(loop.train(*experiment.setup(config, tiny_splits()), str(tmp_path)))
  assert calls == [1]
  assert np.abs(first.extra["centroids"]).max() > 0
  again = jax.device_get(loop.train(*experiment.setup(config, tiny_splits()), str(tmp_path)))
  assert calls == [1]  # Resumed from the final checkpoint: no new pass over the train set.
  np.testing.assert_array_equal(again.extra["centroids"], first.extra["centroids"])


def test_use_fc_layer_of_stage_one_is_loaded_by_stage_two(joint_dir, tmp_path):
  """The reference's use_fc (oltr.fc_add): a dense + ReLU after pooling in stage 1, which
  stage 2 starts from, as the ImageNet-LT and Places-LT configs do."""
  stage1 = tiny_config(**{"oltr.fc_add": 12})
  exp1, state1 = experiment.setup(stage1, tiny_splits())
  assert exp1.model.neck is not None and not exp1.model.neck.use_attention
  assert state1.params["head"]["fc"]["kernel"].shape[0] == 12  # Features are fc_add wide.
  trained = jax.device_get(loop.train(exp1, state1, str(tmp_path)))
  exp2, state2 = experiment.setup(
    tiny_stage2_config(str(tmp_path), **{"oltr.fc_add": 12}), tiny_splits()
  )
  state2 = exp2.stage.start(exp2, state2)
  loaded = jax.device_get(state2.params)
  for a, b in zip(
    jax.tree.leaves(trained.params["neck"]["fc_add"]),
    jax.tree.leaves(loaded["neck"]["fc_add"]),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)
  assert state2.extra["centroids"].shape == (4, 12)
  # Stage 2 over a stage 1 with fc_add but oltr.fc_add=0 would drop it: an error; fc_add in
  # another stage: an error. (Over a stage 1 without it, fc_add starts fresh:
  # tests/interop/test_import_run.py.)
  with pytest.raises(ValueError, match="fc_add, 12 units.*set --config.oltr.fc_add=12"):
    exp3, state3 = experiment.setup(
      tiny_stage2_config(str(tmp_path), **{"oltr.fc_add": 0}), tiny_splits()
    )
    exp3.stage.start(exp3, state3)
  with pytest.raises(ValueError, match="of 12 units, this stage oltr.fc_add=24: set "):
    exp3, state3 = experiment.setup(
      tiny_stage2_config(str(tmp_path), **{"oltr.fc_add": 24}), tiny_splits()
    )
    exp3.stage.start(exp3, state3)
  crt = tiny_config(stage="crt", init_from=str(tmp_path), **{"oltr.fc_add": 12})
  with pytest.raises(ValueError, match="fc_add=12 is an option of stage='joint' / 'oltr', not"):
    experiment.setup(crt, tiny_splits())


def test_fresh_use_fc_layer_wider_than_stage_one_features_names_the_widths(joint_dir):
  """A joint run without use_fc (custom/joint.py) under custom/oltr_stage2.py (fc_add 512):
  the hallucinator, stage 1's classifier, takes the backbone's width, not fc_add's. The error
  names both widths and the flags, before any shape message from the copy."""
  params, _, _ = init_lib.load_variables(joint_dir)
  width = params["head"]["fc"]["kernel"].shape[0]
  exp, state = experiment.setup(
    tiny_stage2_config(joint_dir, **{"oltr.fc_add": 512}), tiny_splits()
  )
  with pytest.raises(ValueError) as e:
    exp.stage.start(exp, state)
  assert str(e.value) == (
    f"init_from={joint_dir}'s classifier (head/fc, which the hallucinator starts from) takes "
    f"{width}-wide features (its backbone's, no use_fc layer), but this stage's neck outputs "
    "oltr.fc_add=512 units: set --config.oltr.fc_add=0 (no use_fc layer, as in that run) or "
    f"--config.oltr.fc_add={width} (a fresh one of that width)."
  )
  # A fresh use_fc layer of the classifier's width starts.
  exp, state = experiment.setup(
    tiny_stage2_config(joint_dir, **{"oltr.fc_add": width}), tiny_splits()
  )
  started = jax.device_get(exp.stage.start(exp, state).params)
  np.testing.assert_array_equal(
    started["head"]["hallucinator"]["kernel"], params["head"]["fc"]["kernel"]
  )


def test_frozen_backbone_in_stage_two_trains_only_neck_head_and_centroids(joint_dir, tmp_path):
  """optim.freeze in OLTR stage 2: the reference's ``fix`` of the feature model (Places-LT)."""
  config = tiny_stage2_config(joint_dir, num_epochs=2, **{"optim.freeze": ("^backbone/",)})
  exp, state = experiment.setup(config, tiny_splits())
  start = jax.device_get(exp.stage.start(exp, state).params)
  end = jax.device_get(loop.train(exp, state, str(tmp_path)))
  for a, b in zip(
    jax.tree.leaves(start["backbone"]), jax.tree.leaves(end.params["backbone"]), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  for group in ("neck", "head"):
    assert any(
      not np.array_equal(a, b)
      for a, b in zip(
        jax.tree.leaves(start[group]), jax.tree.leaves(end.params[group]), strict=True
      )
    ), group
  with pytest.raises(ValueError, match="freeze every parameter"):
    experiment.setup(tiny_stage2_config(joint_dir, **{"optim.freeze": (".",)}), tiny_splits())


def legacy_layout(state) -> dict:
  """The tree a checkpoint written before ``TrainState.extra`` holds (to commit 476272d): the
  centroids a field of the state (None for other stages). Orbax stores a flax dataclass as
  the dict of its fields, so this dict saves exactly what that code saved."""
  fields = ("step", "params", "batch_stats", "opt_state", "rng")
  extra = state.extra or {}
  return {k: getattr(state, k) for k in fields} | {"centroids": extra.get("centroids")}


@pytest.mark.parametrize("stage", ["oltr", "joint"])
def test_checkpoints_from_before_the_stage_state_slot_restore(joint_dir, tmp_path, stage):
  config = tiny_stage2_config(joint_dir) if stage == "oltr" else tiny_config()
  exp, state = experiment.setup(config, tiny_splits())
  if stage == "oltr":
    state = exp.stage.start(exp, state)
    state, _ = exp.train_step(
      state, sharding.to_global(experiment.make_stream(exp)(0), sharding.batch_sharding(exp.mesh))
    )
  saved = jax.device_get(state)
  ckpt = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(1, legacy_layout(saved), {"next_index": 1}, {"train_loss": 1.0})
  ckpt.close()
  target = ckpt_lib.abstract_like(state, exp.state_sharding)
  restored, data, _, step = ckpt_lib.restore(str(tmp_path / "checkpoints"), target)
  assert step == 1 and data == {"next_index": 1}
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(jax.device_get(restored)), strict=True):
    np.testing.assert_array_equal(a, b)
  if stage == "oltr":
    assert np.abs(restored.extra["centroids"]).max() > 0
  else:
    assert restored.extra is None
  # And the run goes on from it: one more step.
  exp.train_step(
    restored, sharding.to_global(experiment.make_stream(exp)(1), sharding.batch_sharding(exp.mesh))
  )
