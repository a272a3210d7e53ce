"""On a GPU or TPU: the production train step runs there, agrees with a CPU recomputation,
uses the platform's native gradients (not the CPU-only kernels), and trains in bfloat16.

Marked ``accelerator`` and skipped where the default backend is the CPU (CI, the
development machine). ``scripts/device_check.sh`` runs them on an accelerator machine:
``JAX_PLATFORMS= python -m pytest -m accelerator tests/test_accelerator.py``.
"""

import jax
import numpy as np
import pytest
from helpers import expected_first_step, tiny_config, tiny_splits

from ltjax import sharding
from ltjax.train import experiment

pytestmark = [
  pytest.mark.accelerator,
  pytest.mark.skipif(
    jax.default_backend() == "cpu", reason="needs a GPU or TPU (JAX_PLATFORMS= on one)"
  ),
]


def test_train_step_runs_on_the_accelerator_and_agrees_with_the_cpu():
  """At full float32 precision (the default lets GPUs use TF32 and TPUs bfloat16 passes in
  float32 convolutions, which moves small gradients by tens of percent), one train step on
  the accelerator equals its recomputation on the CPU."""
  exp, state = experiment.setup(tiny_config(num_devices=1), tiny_splits())
  assert {d.platform for d in exp.mesh.devices.flat} <= {"gpu", "tpu", "cuda", "rocm"}
  batch = experiment.make_stream(exp)(0)
  start = jax.device_get(state)
  with jax.default_matmul_precision("highest"):
    new, metrics = exp.train_step(
      state, sharding.to_global(batch, sharding.batch_sharding(exp.mesh))
    )
    with jax.default_device(jax.devices("cpu")[0]):
      loss, params = expected_first_step(exp, start, batch)
  np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
  new = jax.device_get(new)
  for a, b in zip(jax.tree.leaves(params["params"]), jax.tree.leaves(new.params), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_the_lowering_uses_native_gradients_not_the_cpu_kernels():
  config = tiny_config(num_devices=1, **{"model.backbone": "resnet10"})
  exp, state = experiment.setup(config, tiny_splits(size=32, channels=1))
  batch = sharding.to_global(experiment.make_stream(exp)(0), sharding.batch_sharding(exp.mesh))
  text = exp.train_step.lower(state, batch).as_text()
  assert "select_and_scatter" in text  # XLA's max-pool gradient, not the CPU elementwise one.


def test_bfloat16_trains_on_the_accelerator():
  losses = {}
  for dtype in ("float32", "bfloat16"):
    exp, state = experiment.setup(
      tiny_config(num_devices=1, **{"model.dtype": dtype}), tiny_splits()
    )
    stream, data = experiment.make_stream(exp), sharding.batch_sharding(exp.mesh)
    history = []
    for step in range(3):
      state, metrics = exp.train_step(state, sharding.to_global(stream(step), data))
      history.append(float(metrics["loss"]))
    losses[dtype] = np.array(history)
    floats = [x for x in jax.tree.leaves(state.params) if np.issubdtype(x.dtype, np.floating)]
    assert all(x.dtype == np.float32 for x in floats)
  assert np.isfinite(losses["bfloat16"]).all()
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=5e-2, atol=5e-2)
