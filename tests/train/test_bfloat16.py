"""bfloat16 training: bf16 compute, float32 parameters, optimizer state, centroids,
batch statistics, losses and metrics; and close to float32 training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config, tiny_splits, tiny_stage2_config

from ltjax import sharding
from ltjax.train import experiment, loop


@pytest.fixture(scope="module")
def joint_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("joint"))
  loop.train(*experiment.setup(tiny_config(num_epochs=2), tiny_splits()), workdir)
  return workdir


def configs(joint_dir, dtype):
  return {
    "joint": tiny_config(**{"model.dtype": dtype}),
    "oltr": tiny_stage2_config(joint_dir, **{"model.dtype": dtype}),
  }


def train_steps(config, n=3):
  exp, state = experiment.setup(config, tiny_splits())
  state = exp.stage.start(exp, state)  # OLTR: stage 1 loaded, centroids initialised.
  stream, data_sharding = experiment.make_stream(exp), sharding.batch_sharding(exp.mesh)
  history = []
  for step in range(n):
    state, metrics = exp.train_step(state, sharding.to_global(stream(step), data_sharding))
    history.append(metrics)
  return exp, state, history


@pytest.mark.parametrize("stage", ["joint", "oltr"])
def test_bfloat16_compute_float32_state_and_losses_close_to_float32(joint_dir, stage):
  losses = {}
  for dtype in ("float32", "bfloat16"):
    exp, state, history = train_steps(configs(joint_dir, dtype)[stage])
    losses[dtype] = np.array([float(m["loss"]) for m in history])
  assert exp.model.backbone.dtype == jnp.bfloat16
  trees = [state.params, state.batch_stats, state.opt_state]
  if stage == "oltr":
    trees.append(state.extra["centroids"])
  floats = [x for x in jax.tree.leaves(trees) if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and all(x.dtype == jnp.float32 for x in floats)
  for metrics in history:
    assert bool(metrics.pop("finite"))
    assert all(v.dtype == jnp.float32 and np.isfinite(v) for v in metrics.values())
  # The compute is bf16: the model's feature map is bf16 ...
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  x = jnp.zeros((2, 8, 8, 1), jnp.float32)
  _, aux = exp.model.apply(variables, x, train=False, **exp.stage.model_inputs(state.extra))
  assert aux["feature_map"].dtype == jnp.bfloat16
  # ... and the losses agree with float32 to bf16's precision (8 bits of mantissa).
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=3e-2, atol=3e-2)
