"""A stage that keeps arrays of its own in the train state (``TrainState.extra``): one class,
which the generic init, step, optimizer, checkpoints and loop carry without naming it. Copy it
to add your own; OLTR's centroids (``ltjax.train.stages.OLTR``) are the paper's case."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from helpers import first_step, tiny_config, tiny_splits

from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import experiment, loop, stages
from ltjax.train.state import TrainState

BIAS_LR = 0.5


class LearnedPrior(stages.Stage):
  """A toy stage: a per-class logit bias of its own, trained at its own learning rate beside
  the model, added to the logits in the loss."""

  name = "toy_learned_prior"

  def init_extra(self, num_classes, feature_dim):
    return {"prior": jnp.zeros((num_classes,), jnp.float32)}

  def extra_groups(self):
    return {"prior": (BIAS_LR, 0.0, 0.0)}  # (learning rate, momentum, weight decay)

  def make_loss(self, classify, class_counts, steps_per_epoch):
    def loss_fn(logits, aux, labels, extra, step):
      loss = optax.softmax_cross_entropy_with_integer_labels(logits + extra["prior"], labels)
      return loss.mean(), {"prior_norm": jnp.linalg.norm(extra["prior"])}

    return loss_fn


def test_a_stage_with_its_own_state_trains_checkpoints_and_resumes(monkeypatch, tmp_path):
  monkeypatch.setitem(stages.STAGES, LearnedPrior.name, LearnedPrior)
  config = tiny_config(stage=LearnedPrior.name, method="toy")
  start, state, (loss, params), metrics, batch = first_step(config)
  assert set(start.extra) == {"prior"} and start.extra["prior"].shape == (4,)
  # The step is the stage's loss, its gradient and SGD over the parameters and the prior,
  # each at its group's rate (recomputed outside the train step: helpers.expected_first_step).
  np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
  np.testing.assert_allclose(state.extra["prior"], params["prior"], rtol=1e-5, atol=1e-7)
  for a, b in zip(jax.tree.leaves(params["params"]), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
  # The prior moved by its own rate: -BIAS_LR x the mean softmax-minus-one-hot of the batch.
  assert np.abs(state.extra["prior"]).max() > 1e-3
  assert float(metrics["prior_norm"]) == 0.0  # The loss saw the prior of the start.

  # The loop runs it like any stage; the checkpoint holds the prior, a resume restores it.
  loop.train_and_evaluate(config, str(tmp_path), splits=tiny_splits())
  exp, fresh = experiment.setup(config, tiny_splits())
  target = ckpt_lib.abstract_like(fresh, exp.state_sharding)
  restored, _, _, step = ckpt_lib.restore(str(tmp_path / "checkpoints"), target)
  assert step == 3 and isinstance(restored, TrainState)
  prior = np.asarray(jax.device_get(restored.extra["prior"]))
  assert np.abs(prior).max() > 1e-3
  assert "prior" in jax.device_get(restored.opt_state).inner_states  # Its own SGD group.


def _names_in_code(module) -> set[str]:
  """Identifiers, attributes, keywords and string constants of a module's code (not its
  docstrings or comments)."""
  import ast
  import inspect

  tree = ast.parse(inspect.getsource(module))
  docstrings = {
    id(node.body[0].value)
    for node in ast.walk(tree)
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
    and node.body
    and isinstance(node.body[0], ast.Expr)
    and isinstance(node.body[0].value, ast.Constant)
  }
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Name):
      names.add(node.id)
    elif isinstance(node, ast.Attribute):
      names.add(node.attr)
    elif isinstance(node, (ast.keyword, ast.arg)) and node.arg:
      names.add(node.arg)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
      if id(node) not in docstrings:
        names.add(node.value)
  return names


def test_the_generic_core_never_names_a_stages_state():
  """The train step, init, optimizer, checkpoints and model pass the stage's arrays on
    without naming them, nor do the other stages: OLTR's centroids are named in its stage
  (``ltjax.train.stages.oltr``), head and loss only (and in
    the translation of checkpoints written before ``TrainState.extra``)."""
  from ltjax import models
  from ltjax.train import optim, state, steps
  from ltjax.train.stages import base, decoupling, starts

  for module in (steps, optim, experiment, models, loop, ckpt_lib, base, decoupling, starts):
    assert "centroids" not in _names_in_code(module), module.__name__
  assert _names_in_code(state) & {"centroids"} == {"centroids"}  # LEGACY_EXTRA_FIELDS only.
  assert "centroids" not in {f.name for f in dataclasses.fields(TrainState)}


def test_the_generic_steps_read_no_config():
  """The train, eval and feature steps take what the run's components made of their config
  blocks (``experiment._train_step_fn``), never the config itself."""
  import ast
  import inspect

  from ltjax.train import steps

  tree = ast.parse(inspect.getsource(steps))
  names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
  args = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
  assert not {"config", "ml_collections"} & (names | args)
