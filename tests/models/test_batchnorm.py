"""ltjax's BatchNorm keeps PyTorch's running statistics and flax's (two-pass) normalisation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltjax.models.batchnorm import BatchNorm


def test_running_statistics_follow_torch_batchnorm2d_over_steps():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  # Small maps, as at layer 4 with a small per-device batch, where n / (n - 1) matters most.
  batches = [rng.normal(2.0, 3.0, (4, 3, 3, 5)).astype(np.float32) for _ in range(6)]
  ref = torch.nn.BatchNorm2d(5, momentum=0.1, eps=1e-5).train()
  ours = BatchNorm(use_running_average=False)
  variables = ours.init(jax.random.key(0), jnp.asarray(batches[0]))
  step = jax.jit(lambda v, x: ours.apply(v, x, mutable=["batch_stats"]))
  for x in batches:
    y, updates = step(variables, x)
    variables = {**variables, **updates}
    with torch.no_grad():
      y_ref = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(y, y_ref, atol=2e-5)  # normalised with the biased variance
    np.testing.assert_allclose(variables["batch_stats"]["mean"], ref.running_mean, atol=1e-6)
    np.testing.assert_allclose(
      variables["batch_stats"]["var"], ref.running_var, rtol=1e-6, atol=1e-6
    )
  # flax's own layer keeps the biased variance: the two differ, so the test can tell.
  flax_stats = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5).apply(
    variables, batches[0], mutable=["batch_stats"]
  )[1]["batch_stats"]
  unbiased = ours.apply(variables, batches[0], mutable=["batch_stats"])[1]["batch_stats"]
  assert not np.allclose(flax_stats["var"], unbiased["var"], rtol=1e-3)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_outputs_and_gradients_equal_flax_batchnorm(train, dtype):
  x = jax.random.normal(jax.random.key(1), (8, 4, 4, 6)) * 2 + 1
  # flax's two-pass variance, the one ltjax computes (its default, mean(x^2) - mean(x)^2,
  # cancels when the mean dwarfs the spread: see the next test).
  flax_bn = nn.BatchNorm(
    use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, use_fast_variance=False
  )
  ours = BatchNorm(use_running_average=not train, dtype=dtype)
  variables = ours.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
    jnp.shape, flax_bn.init(jax.random.key(0), x)
  )
  variables = jax.tree.map(lambda v: v + jax.random.uniform(jax.random.key(2), v.shape), variables)

  def loss(module):
    def f(params, x):
      y, _ = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])
      return (y.astype(jnp.float32) ** 2).sum(), y

    return jax.jit(jax.grad(f, argnums=(0, 1), has_aux=True))

  (g, y), (g_ref, y_ref) = loss(ours)(variables["params"], x), loss(flax_bn)(variables["params"], x)
  assert y.dtype == y_ref.dtype == dtype
  np.testing.assert_array_equal(y, y_ref)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_one_value_per_channel_is_refused():
  ours = BatchNorm(use_running_average=False)
  variables = ours.init(jax.random.key(0), jnp.ones((1, 1, 1, 3)))
  with pytest.raises(ValueError, match="more than one value per channel"):
    ours.apply(variables, jnp.ones((1, 1, 1, 3)), mutable=["batch_stats"])


def test_statistics_stay_accurate_when_the_mean_dwarfs_the_spread():
  # mean(x^2) - mean(x)^2 cancels catastrophically here (float32 keeps ~7 digits of
  # mean(x^2) = 90,000): compiled with ltjax's CPU options it put 1.6% errors into the
  # gradients of a CIFAR ResNet whose first activations have such a mean (issue 21). The
  # layer computes mean((x - mean)^2), as PyTorch does.
  from ltjax.train import compile_options

  x = np.random.default_rng(0).normal(300.0, 1.0, (8, 32, 32, 16)).astype(np.float32)
  ours = BatchNorm(use_running_average=False)
  variables = ours.init(jax.random.key(0), x)

  def step(v, x):
    y, updates = ours.apply(v, x, mutable=["batch_stats"])
    return y, updates["batch_stats"]["var"]

  y, var = jax.jit(step, compiler_options=compile_options.for_platform("cpu"))(variables, x)
  x64 = x.astype(np.float64)
  n = x64.size // 16
  expected_var = 0.9 + 0.1 * x64.var(axis=(0, 1, 2)) * n / (n - 1)
  np.testing.assert_allclose(var, expected_var, rtol=1e-5)
  expected_y = (x64 - x64.mean(axis=(0, 1, 2))) / np.sqrt(x64.var(axis=(0, 1, 2)) + 1e-5)
  np.testing.assert_allclose(y, expected_y, atol=2e-4)
