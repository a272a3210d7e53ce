"""The comparison set in training: every loss on every classifier stage, mixup / CutMix in
the train step, post-hoc logit adjustment and a report over runs with different losses."""

import json
import os

import jax
import numpy as np
import pytest
from helpers import first_step, run_ltjax, tiny_config, tiny_splits

from ltjax import losses, sharding
from ltjax.data.pp import mixing
from ltjax.train import experiment, loop, steps

REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "configs")
LOSSES = ("softmax", "logit_adjusted", "focal", "class_balanced", "ldam")


def loss_overrides(name, **more):
  head = {"model.head": "normed_linear"} if name == "ldam" else {}
  return {"loss.name": name, **head, **more}


def forward(exp, state, images):
  (logits, aux), _ = exp.model.apply(
    {"params": state.params, "batch_stats": state.batch_stats},
    images,
    train=True,
    mutable=["batch_stats"],
    **exp.stage.apply_kwargs(),
  )
  return logits, aux


def check_first_step(config):
  """The step is SGD on the configured loss, which sees the training class counts."""
  start, state, (loss, params), metrics, batch = first_step(config)
  np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params["params"]), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-6)
  exp, _ = experiment.setup(config, tiny_splits())
  x = steps.normalize(np.asarray(batch["image"]), config.dataset.mean, config.dataset.std)
  logits, _ = forward(exp, start, x)
  counts = exp.splits.train_counts
  assert counts.min() < counts.max()  # Long-tailed: re-balancing changes the loss.
  inputs = losses.LossInputs(counts.astype(np.float32), np.float32(0.0))
  want = losses.from_config(config)(logits, np.asarray(batch["label"]), inputs)
  np.testing.assert_allclose(float(metrics["loss"]), float(want), rtol=1e-5)
  if config.loss.name not in ("softmax", "ldam"):
    plain = losses.get("softmax")()(logits, np.asarray(batch["label"]), inputs)
    assert abs(float(want) - float(plain)) > 1e-3


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_trains_a_joint_step(name):
  check_first_step(tiny_config(**loss_overrides(name)))


@pytest.fixture(scope="module")
def joint_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("joint"))
  exp, state = experiment.setup(tiny_config(num_epochs=2), tiny_splits())
  loop.train(exp, state, workdir)
  return workdir


@pytest.mark.parametrize(
  "stage, name",
  [("crt", "class_balanced"), ("crt", "ldam"), ("lws", "logit_adjusted"), ("lws", "focal")],
)
def test_the_classifier_stages_take_any_loss(stage, name, joint_dir):
  extra = {"model.head": "lws"} if stage == "lws" else {}
  config = tiny_config(
    stage=stage,
    method=stage,
    init_from=joint_dir,
    **{"sampler.name": "class_aware", **loss_overrides(name), **extra},
  )
  check_first_step(config)


def test_ldam_on_the_lws_head_is_refused_before_any_work(joint_dir):
  config = tiny_config(stage="lws", method="lws", init_from=joint_dir)
  config.model.head, config.loss.name = "lws", "ldam"
  with pytest.raises(ValueError, match="add --config.model.head=normed_linear"):
    experiment.checked(config)


@pytest.mark.parametrize(
  "alphas", [(0.4, 0.0), (0.0, 1.0), (1.0, 1.0)], ids=["mixup", "cutmix", "both"]
)
@pytest.mark.parametrize("name", ["softmax", "ldam"])
def test_a_mixed_step_minimises_the_lambda_weighted_loss(alphas, name):
  """The step's loss is lam L(y) + (1 - lam) L(y[perm]) on the batch mixed with the step's
  own key, recomputed here outside the step (8 devices: the batch is sharded)."""
  config = tiny_config(**loss_overrides(name, **{"loss.drw_epoch": 0} if name == "ldam" else {}))
  config.data.mixup_alpha, config.data.cutmix_alpha = alphas
  exp, state = experiment.setup(config, tiny_splits())
  assert exp.mesh.size == 8
  start = jax.device_get(exp.stage.start(exp, state))
  batch = experiment.make_stream(exp)(0)
  _, metrics = exp.train_step(
    jax.device_put(start, exp.state_sharding),
    sharding.to_global(batch, sharding.batch_sharding(exp.mesh)),
  )
  rng = jax.random.fold_in(start.rng, start.step)
  x = steps.normalize(np.asarray(batch["image"]), config.dataset.mean, config.dataset.std)
  mixed = jax.jit(mixing.from_config(config.data))(jax.random.fold_in(rng, steps._MIX_STREAM), x)
  assert 0.0 < float(mixed.lam) < 1.0 and not np.allclose(mixed.images, x)
  logits, aux = forward(exp, start, mixed.images)
  labels = np.asarray(batch["label"])
  a, _ = exp.loss_fn(logits, aux, labels, None, 0)
  b, _ = exp.loss_fn(logits, aux, labels[np.asarray(mixed.perm)], None, 0)
  want = float(mixed.lam) * float(a) + (1 - float(mixed.lam)) * float(b)
  np.testing.assert_allclose(float(metrics["loss"]), want, rtol=1e-5)
  assert bool(metrics["finite"])


def test_alpha_zero_puts_no_mixing_in_the_step():
  """Off, the step holds no mixing operation (it is the unmixed step, op for op); on, it
  samples lambda (a gamma draw) and permutes the batch."""

  def jaxpr(config):
    exp, state = experiment.setup(config, tiny_splits())
    batch = experiment.make_stream(exp)(0)
    return str(exp.train_step.trace(state, batch).jaxpr)

  off = jaxpr(tiny_config())
  on = jaxpr(tiny_config(**{"data.mixup_alpha": 0.2}))
  assert "random_gamma" in on and "random_gamma" not in off
  assert off == jaxpr(tiny_config(**{"data.mixup_alpha": 0.0, "data.cutmix_alpha": 0.0}))


def test_oltr_stage_refuses_mixed_batches(tmp_path):
  from helpers import tiny_stage2_config

  config = tiny_stage2_config(str(tmp_path), **{"data.mixup_alpha": 0.2})
  with pytest.raises(ValueError, match="cannot train on mixed batches"):
    experiment.checked(config, check_start=False)


@pytest.mark.slow  # CI's 20 minutes: README's slow-set table names it.
def test_losses_posthoc_and_compare_from_the_command_line(tmp_path):
  """Two runs with other losses (one with mixup), post-hoc logit adjustment on one, and
  one table over both from `ltjax report --compare`."""
  digits = os.path.join(REPO_CONFIGS, "digits", "joint.py")
  common = [f"--config={digits}", "--config.num_epochs=3", "--config.eval_every_epochs=0"]
  runs = {
    "la": ["--config.loss.name=logit_adjusted", "--config.method=la_loss"],
    "ldam": [
      "--config.loss.name=ldam",
      "--config.loss.drw_epoch=2",
      "--config.model.head=normed_linear",
      "--config.data.mixup_alpha=0.2",
      "--config.method=ldam_drw",
    ],
  }
  for name, extra in runs.items():
    result = run_ltjax("train", *common, f"--workdir={name}", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
  result = run_ltjax("evaluate", "--workdir=la", "--posthoc", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert "| logit_adjustment |" in result.stdout
  la = json.loads((tmp_path / "la" / "results.json").read_text())
  assert {"la_loss", "ncm", "tau_norm", "logit_adjustment"} <= set(la)
  sweep = json.loads((tmp_path / "la" / "tau_sweep.json").read_text())
  assert sweep["logit_adjustment"]["chosen_tau"] in sweep["logit_adjustment"]["taus"]
  result = run_ltjax("report", "--workdir=cmp", "--compare", "la", "ldam", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
  rows = [line.split("|")[1].strip() for line in table[1:]]
  assert {"la_loss", "ldam_drw", "logit_adjustment", "ncm", "tau_norm"} <= set(rows), rows
