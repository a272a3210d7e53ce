"""cRT and LWS: what they load, what stays frozen, and sharding equivalence."""

import jax
import numpy as np
import pytest
from helpers import tiny_config, tiny_splits

from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import loop


@pytest.fixture(scope="module")
def joint_dir(tmp_path_factory):
  """A short joint run: the stage-1 model every test here starts from."""
  workdir = str(tmp_path_factory.mktemp("joint"))
  exp, state = loop.setup(tiny_config(num_epochs=2), tiny_splits())
  loop.train(exp, state, workdir)
  return workdir


def stage_config(stage, joint_dir, **overrides):
  extra = {"model.head": "lws"} if stage == "lws" else {}
  return tiny_config(
    stage=stage,
    method=stage,
    init_from=joint_dir,
    **{"sampler.name": "class_aware", **extra, **overrides},
  )


def run_stage(config, workdir):
  exp, state = loop.setup(config, tiny_splits())
  return loop.train(exp, state, str(workdir))


@pytest.mark.parametrize("stage", ["crt", "lws"])
def test_frozen_parts_are_bit_identical_to_stage_one(stage, joint_dir, tmp_path):
  params, stats, _ = ckpt_lib.load_variables(joint_dir)
  state = run_stage(stage_config(stage, joint_dir, num_epochs=2), tmp_path)
  assert int(state.step) > 0
  for name, tree, trained in (
    ("params", params, state.params),
    ("batch_stats", stats, state.batch_stats),
  ):
    before = jax.tree_util.tree_leaves_with_path(tree["backbone"])
    after = jax.tree.leaves(jax.device_get(trained["backbone"]))
    assert len(before) == len(after) > 0
    for (path, a), b in zip(before, after, strict=True):
      np.testing.assert_array_equal(a, b, err_msg=f"{name} {path} moved")
  head = jax.device_get(state.params["head"])
  if stage == "lws":
    np.testing.assert_array_equal(head["fc"]["kernel"], params["head"]["fc"]["kernel"])
    np.testing.assert_array_equal(head["fc"]["bias"], params["head"]["fc"]["bias"])
    assert not np.allclose(head["scales"], 1.0)  # The scales did learn.
  else:
    assert not np.allclose(head["fc"]["kernel"], params["head"]["fc"]["kernel"])


def test_lws_starts_from_unit_scales_and_the_joint_classifier(joint_dir):
  params, _, _ = ckpt_lib.load_variables(joint_dir)
  exp, state = loop.setup(stage_config("lws", joint_dir), tiny_splits())
  state = exp.stage.start(exp, state)
  head = jax.device_get(state.params["head"])
  np.testing.assert_array_equal(head["scales"], np.ones(4, np.float32))
  np.testing.assert_array_equal(head["fc"]["kernel"], params["head"]["fc"]["kernel"])


def test_crt_reinitialises_the_classifier(joint_dir):
  params, _, _ = ckpt_lib.load_variables(joint_dir)
  exp, state = loop.setup(stage_config("crt", joint_dir), tiny_splits())
  state = exp.stage.start(exp, state)
  assert not np.allclose(
    jax.device_get(state.params["head"]["fc"]["kernel"]), params["head"]["fc"]["kernel"]
  )


def test_reference_bn_mode_updates_statistics_only(joint_dir, tmp_path):
  params, stats, _ = ckpt_lib.load_variables(joint_dir)
  state = run_stage(stage_config("crt", joint_dir, update_frozen_bn=True), tmp_path)
  for a, b in zip(
    jax.tree.leaves(params["backbone"]),
    jax.tree.leaves(jax.device_get(state.params["backbone"])),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)
  moved = [
    not np.array_equal(a, b)
    for a, b in zip(
      jax.tree.leaves(stats["backbone"]),
      jax.tree.leaves(jax.device_get(state.batch_stats)["backbone"]),
      strict=True,
    )
  ]
  assert any(moved)


@pytest.mark.parametrize("stage", ["crt", "lws"])
def test_stage_on_eight_devices_matches_one(stage, joint_dir):
  out = {}
  for n in (1, 8):
    exp, state = loop.setup(stage_config(stage, joint_dir, num_devices=n), tiny_splits())
    state = exp.stage.start(exp, state)
    stream = loop.make_stream(exp)
    from ltjax import sharding

    losses = []
    for step in range(3):
      batch = sharding.to_global(stream(step), sharding.batch_sharding(exp.mesh))
      state, metrics = exp.train_step(state, batch)
      losses.append(float(metrics["loss"]))
    out[n] = (np.array(losses), jax.device_get(state.params["head"]))
  np.testing.assert_allclose(out[1][0], out[8][0], rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(out[1][1]), jax.tree.leaves(out[8][1]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_stage_without_init_from_is_a_clear_error():
  with pytest.raises(ValueError, match="set --config.init_from"):
    loop.setup(tiny_config(stage="crt"), tiny_splits())
  with pytest.raises(ValueError, match="does not exist"):
    loop.setup(tiny_config(stage="crt", init_from="/nonexistent/run"), tiny_splits())


def test_init_from_with_another_backbone_is_a_clear_error(joint_dir):
  config = stage_config("crt", joint_dir, **{"model.width": 2})
  with pytest.raises(ValueError, match="does not match the config"):
    exp, state = loop.setup(config, tiny_splits())
    exp.stage.start(exp, state)
