"""cRT and LWS: what they load, what stays frozen, and sharding equivalence."""

import jax
import numpy as np
import optax
import pytest
from helpers import first_step, tiny_config, tiny_splits

from ltjax import sharding
from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import experiment, loop, stages, steps
from ltjax.train import init_from as init_lib


@pytest.fixture(scope="module")
def joint_dir(tmp_path_factory):
  """A short joint run: the stage-1 model every test here starts from."""
  workdir = str(tmp_path_factory.mktemp("joint"))
  exp, state = experiment.setup(tiny_config(num_epochs=2), tiny_splits())
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
  exp, state = experiment.setup(config, tiny_splits())
  return loop.train(exp, state, str(workdir))


@pytest.mark.parametrize("stage", ["crt", "lws"])
def test_frozen_parts_are_bit_identical_to_stage_one(stage, joint_dir, tmp_path):
  params, stats, _ = init_lib.load_variables(joint_dir)
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


@pytest.mark.parametrize("stage", ["crt", "lws"])
def test_first_step_is_sgd_on_the_trained_head_only(stage, joint_dir):
  """One cRT / LWS step equals the loss and SGD update recomputed outside the step: the
  classifier (cRT) or the scales (LWS) move by -lr * (g + wd * p), nothing else moves."""
  start, state, (loss, params), metrics, _ = first_step(stage_config(stage, joint_dir))
  np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
  for (path, want), got in zip(
    jax.tree_util.tree_leaves_with_path(params["params"]),
    jax.tree.leaves(state.params),
    strict=True,
  ):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=str(path))
  trained = {"crt": "fc", "lws": "scales"}[stage]
  for a, b in zip(  # The pinned update is not a no-op.
    jax.tree.leaves(start.params["head"][trained]),
    jax.tree.leaves(state.params["head"][trained]),
    strict=True,
  ):
    assert not np.array_equal(a, b)


def test_lws_starts_from_unit_scales_and_the_joint_classifier(joint_dir):
  params, _, _ = init_lib.load_variables(joint_dir)
  exp, state = experiment.setup(stage_config("lws", joint_dir), tiny_splits())
  state = exp.stage.start(exp, state)
  head = jax.device_get(state.params["head"])
  np.testing.assert_array_equal(head["scales"], np.ones(4, np.float32))
  np.testing.assert_array_equal(head["fc"]["kernel"], params["head"]["fc"]["kernel"])


def test_crt_reinitialises_the_classifier(joint_dir):
  params, _, _ = init_lib.load_variables(joint_dir)
  exp, state = experiment.setup(stage_config("crt", joint_dir), tiny_splits())
  state = exp.stage.start(exp, state)
  assert not np.allclose(
    jax.device_get(state.params["head"]["fc"]["kernel"]), params["head"]["fc"]["kernel"]
  )


def test_reference_bn_mode_updates_statistics_only(joint_dir):
  """update_frozen_bn (the reference's BatchNorm in train mode): the backbone's weights stay,
  its running statistics move by PyTorch's momentum 0.1 towards the batch's."""
  params, stats, _ = init_lib.load_variables(joint_dir)
  config = stage_config("crt", joint_dir, update_frozen_bn=True)
  _, state, _, _, batch = first_step(config)
  for a, b in zip(
    jax.tree.leaves(params["backbone"]), jax.tree.leaves(state.params["backbone"]), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  x = steps.normalize(np.asarray(batch["image"]), config.dataset.mean, config.dataset.std)
  conv1 = jax.lax.conv_general_dilated(
    x,
    params["backbone"]["conv1"]["kernel"],
    (1, 1),
    ((1, 1), (1, 1)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=jax.lax.Precision.HIGHEST,
  )
  old, new = stats["backbone"]["bn1"]["mean"], state.batch_stats["backbone"]["bn1"]["mean"]
  np.testing.assert_allclose(new, 0.9 * old + 0.1 * conv1.mean((0, 1, 2)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stage", ["crt", "lws"])
def test_stage_on_eight_devices_matches_one(stage, joint_dir):
  out = {}
  for n in (1, 8):
    exp, state = experiment.setup(stage_config(stage, joint_dir, num_devices=n), tiny_splits())
    state = exp.stage.start(exp, state)
    stream = experiment.make_stream(exp)

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
    experiment.setup(tiny_config(stage="crt"), tiny_splits())
  with pytest.raises(ValueError, match="does not exist"):
    experiment.setup(tiny_config(stage="crt", init_from="/nonexistent/run"), tiny_splits())


def test_init_from_with_another_backbone_is_a_clear_error(joint_dir):
  config = stage_config("crt", joint_dir, **{"model.width": 2})
  with pytest.raises(ValueError, match="does not match the config"):
    exp, state = experiment.setup(config, tiny_splits())
    exp.stage.start(exp, state)


class SmoothedHeadOnly(stages.Stage):
  """A toy stage, defined the way the docstring of ltjax.train.stages says to add one: the
  head alone trained with label-smoothed cross-entropy, from a fresh start."""

  name = "toy_smoothed_head"
  freeze = ("^backbone/",)

  def make_loss(self, classify, class_counts, steps_per_epoch):
    def loss_fn(logits, aux, labels, extra, step):
      targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), 0.1)
      loss = optax.softmax_cross_entropy(logits, targets).mean()
      return loss, {"smoothed_ce": loss}

    return loss_fn


def test_a_new_stage_is_one_object_and_a_config(monkeypatch, tmp_path):
  monkeypatch.setitem(stages.STAGES, SmoothedHeadOnly.name, SmoothedHeadOnly)
  config = tiny_config(stage=SmoothedHeadOnly.name, method="toy")
  start, state, (loss, params), metrics, batch = first_step(config)
  assert float(metrics["smoothed_ce"]) == float(metrics["loss"])
  np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params["params"]), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(  # The freeze patterns of the stage hold.
    jax.tree.leaves(start.params["backbone"])[0], jax.tree.leaves(state.params["backbone"])[0]
  )
  # The loop runs it end to end like any stage: train, checkpoint, evaluate.
  summary = loop.train_and_evaluate(config, str(tmp_path), splits=tiny_splits())
  assert set(summary) >= {"many", "medium", "few", "all"}
  assert ckpt_lib.Checkpointer(str(tmp_path / "checkpoints")).latest_step() == 3


def test_init_from_a_run_over_other_classes_warns_or_is_refused(joint_dir, caplog):
  # The joint run has 4 classes; a cRT over 3 takes only its backbone (a warning), an LWS
  # would load its classifier (refused).
  import logging

  three = tiny_splits(num_classes=3)
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    exp, state = experiment.setup(stage_config("crt", joint_dir), three)
    exp.stage.start(exp, state)
  assert (
    f"init_from={joint_dir} was trained on digits with 4 classes, open classes [8, 9]; this "
    "run is digits with 3 classes, open classes [8, 9]: the backbone's features were learned "
    "on other classes"
  ) in caplog.text
  exp, state = experiment.setup(stage_config("lws", joint_dir), three)
  with pytest.raises(ValueError, match="stage 'lws' loads its classifier, which would score"):
    exp.stage.start(exp, state)
