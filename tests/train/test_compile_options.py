"""ltjax's steps compile with Eigen convolutions on CPU (ltjax.train.compile_options)."""

import re
import warnings

import jax
import jax.numpy as jnp
import pytest
from helpers import tiny_config, tiny_splits
from jax import lax

from ltjax import sharding
from ltjax.train import compile_options, experiment

DN = ("NHWC", "HWIO", "NHWC")


def ynn_convolutions(hlo: str) -> int:
  """How many fused computations called by a YNN fusion have a convolution as root."""
  called = re.findall(r"ynn_fusion[.\d]* = .*?calls=%([\w.\-]+)", hlo)
  roots = 0
  for name in called:
    body = re.search(r"^%" + re.escape(name) + r" .*?\{(.*?)^\}", hlo, re.M | re.S)
    roots += bool(body and re.search(r"ROOT .*? convolution\(", body.group(1)))
  return roots


def conv_hlo(options) -> str:
  x = jnp.ones((4, 28, 28, 64))  # ResNet layer1-sized: XLA hands it to YNNPACK by default.
  w = jnp.ones((3, 3, 64, 64))
  f = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)
  return jax.jit(f, compiler_options=options).lower(x, w).compile().as_text()


def test_options_only_on_cpu():
  assert compile_options.for_platform("cpu") == compile_options.CPU_OPTIONS
  assert compile_options.for_platform("gpu") is None
  assert compile_options.for_platform("tpu") is None
  assert compile_options.for_devices(jax.devices()) == compile_options.CPU_OPTIONS


def test_the_options_take_convolutions_away_from_ynnpack():
  # Guards the premise: if a jaxlib stops putting convs on YNNPACK, this says so.
  assert ynn_convolutions(conv_hlo(None)) == 1
  assert ynn_convolutions(conv_hlo(compile_options.CPU_OPTIONS)) == 0
  assert "convolution(" in conv_hlo(compile_options.CPU_OPTIONS)


def test_train_eval_and_feature_steps_compile_with_them(tmp_path, monkeypatch):
  options = []
  real_jit = jax.jit

  def spy(fn, **kw):
    options.append(kw.get("compiler_options"))
    return real_jit(fn, **kw)

  monkeypatch.setattr(jax, "jit", spy)
  exp, state = experiment.setup(tiny_config(workdir=str(tmp_path)), tiny_splits())
  monkeypatch.undo()
  # The train, eval and feature steps; the learning-rate schedule and the state initialiser
  # (no convolutions: no options needed).
  assert options == [compile_options.CPU_OPTIONS] * 3 + [None, None]
  stream = experiment.make_stream(exp)
  batch = sharding.to_global(stream(0), sharding.batch_sharding(exp.mesh))
  state, metrics = exp.train_step(state, batch)
  assert bool(jnp.isfinite(metrics["loss"]))


def test_a_jaxlib_that_rejects_them_gets_a_warning_and_no_options(monkeypatch):
  monkeypatch.setattr(
    compile_options, "CPU_OPTIONS", {"xla_cpu_experimental_ynn_fusion_type": "NO_SUCH_TYPE"}
  )
  compile_options._cpu_options_accepted.cache_clear()
  try:
    with pytest.warns(UserWarning, match="rejects ltjax's XLA:CPU options"):
      assert compile_options.for_platform("cpu") is None
  finally:
    compile_options._cpu_options_accepted.cache_clear()
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    monkeypatch.undo()
    assert compile_options.for_platform("cpu") == compile_options.CPU_OPTIONS
