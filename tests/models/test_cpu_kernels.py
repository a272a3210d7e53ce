"""The CPU-only kernels equal XLA's: the conv (a matmul filter gradient for grouped convs on
CPU) and max_pool (an elementwise gradient), values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ltjax.models import cpu_kernels
from ltjax.models.cpu_kernels import conv_general_dilated, matmul_filter_grad, max_pool, patch_conv

DN = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(autouse=True)
def _every_tiny_map_conv_through_patch_conv(monkeypatch):
  """The tests' convolutions are small: without this the size rule keeps them on lax's."""
  monkeypatch.setattr(cpu_kernels, "SMALL_MIN_MACS", 0)


@pytest.mark.parametrize(
  "size, cin, cout, kernel, stride, groups, padding",
  [
    (9, 3, 8, 7, 2, 1, ((3, 3), (3, 3))),  # ResNet stem
    (8, 4, 6, 3, 1, 1, ((1, 1), (1, 1))),
    (8, 4, 6, 3, 2, 1, ((1, 1), (1, 1))),  # strided, odd output
    (7, 4, 6, 1, 2, 1, ((0, 0), (0, 0))),  # downsample shortcut
    (6, 8, 8, 3, 1, 4, ((1, 1), (1, 1))),  # grouped (ResNeXt)
    (6, 8, 4, 3, 2, 2, "SAME"),
    (5, 2, 3, 2, 1, 1, ((0, 1), (1, 0))),  # asymmetric padding, even kernel
    (7, 16, 8, 3, 2, 1, ((1, 1), (1, 1))),
    (6, 16, 4, 1, 1, 1, ((0, 0), (0, 0))),
    (10, 3, 5, 7, 2, 1, ((3, 2), (2, 3))),  # asymmetric padding
    (10, 6, 6, 7, 2, 3, ((3, 2), (2, 3))),  # grouped, asymmetric padding
    (7, 8, 16, 1, 2, 2, ((0, 0), (0, 0))),  # grouped 1x1, strided
    (8, 10, 5, 2, 3, 5, ((0, 0), (1, 1))),  # grouped, stride 3, even kernel, depthwise-like
    (6, 1, 3, 3, 1, 1, ((1, 1), (1, 1))),  # one input channel
    (8, 5, 4, 2, 3, 1, ((0, 0), (1, 1))),  # stride 3, even kernel
    # Output maps of at most 2 pixels a side: the im2col matmul (patch_conv) on CPU.
    (1, 8, 6, 3, 1, 1, ((1, 1), (1, 1))),  # ResNet layer4 at 32 px: 1x1 map, 3x3 kernel
    (2, 8, 6, 3, 1, 1, ((1, 1), (1, 1))),  # layer3 at 32 px: 2x2 map
    (4, 8, 6, 3, 2, 1, ((1, 1), (1, 1))),  # 4x4 -> 2x2, stride 2
    (2, 8, 6, 3, 2, 1, ((1, 1), (1, 1))),  # 2x2 -> 1x1, stride 2
    (3, 4, 5, 3, 2, 1, "SAME"),
    (2, 3, 4, 2, 1, 1, ((0, 1), (1, 0))),  # even kernel, asymmetric padding
  ],
)
def test_values_and_gradients_match_lax(size, cin, cout, kernel, stride, groups, padding):
  kx, kw, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, size, size + 1, cin))
  w = jax.random.normal(kw, (kernel, kernel, cin // groups, cout))

  def conv(fn):
    return lambda x, w: fn(
      x, w, (stride, stride), padding, dimension_numbers=DN, feature_group_count=groups
    )

  ref, ref_vjp = jax.vjp(conv(lax.conv_general_dilated), x, w)
  out, vjp = jax.jit(lambda x, w: jax.vjp(conv(conv_general_dilated), x, w))(x, w)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  g = jax.random.normal(kg, ref.shape)
  for got, want in zip(vjp(g), ref_vjp(g), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_grouped_filter_grad_is_the_matmul_form_on_cpu():
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 4))
  w = jnp.zeros((3, 3, 2, 6))
  g = jax.random.normal(jax.random.key(2), (2, 3, 3, 6))
  pads = ((1, 1), (1, 1))
  f = lambda w: conv_general_dilated(
    x, w, (2, 2), pads, dimension_numbers=DN, feature_group_count=2
  )
  dw = jax.vjp(f, w)[1](g)[0]
  np.testing.assert_array_equal(dw, matmul_filter_grad(x, g, w.shape, (2, 2), pads, 2))
  assert "dot_general" in str(jax.make_jaxpr(lambda w: jax.vjp(f, w)[1](g))(w))


def test_ungrouped_conv_is_lax_itself():
  # Its gradients are XLA's own: fast once the steps compile with Eigen convolutions.
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 3))
  w = jax.random.normal(jax.random.key(2), (3, 3, 3, 5))
  f = lambda fn: lambda w: fn(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DN)
  jaxpr = lambda fn: str(jax.make_jaxpr(lambda w: jax.vjp(f(fn), w)[1](jnp.ones((2, 3, 3, 5))))(w))
  assert jaxpr(conv_general_dilated) == jaxpr(lax.conv_general_dilated)


def test_convolutions_on_tiny_maps_are_one_matmul_of_the_taps_that_see_data():
  """Output maps <= 2x2 (ResNet layer3/4 at 32 px) go through patch_conv on CPU: a 3x3
  conv of a 1x1 map is one C x O matmul (the 8 outer taps only see padding); 3x3 outputs
  and 1x1 kernels stay lax's (where XLA's convolution is the faster)."""
  w = jax.random.normal(jax.random.key(2), (3, 3, 8, 6))
  conv = lambda x, s=1: conv_general_dilated(x, w, (s, s), ((1, 1), (1, 1)), dimension_numbers=DN)

  def lowered(x, s=1):  # For this CPU: the other platforms' branches are not lowered.
    return jax.jit(lambda x: jax.vjp(lambda x: conv(x, s), x)[1](conv(x, s))).lower(x).as_text()

  one = jax.random.normal(jax.random.key(1), (4, 1, 1, 8))
  np.testing.assert_allclose(conv(one)[:, 0, 0], one[:, 0, 0] @ w[1, 1], rtol=1e-5, atol=1e-5)
  text = str(jax.make_jaxpr(lambda x: patch_conv(x, w, (1, 1), ((1, 1), (1, 1))))(one))
  assert text.count("dot_general") == 1 and "concatenate" not in text  # The centre tap.
  assert cpu_kernels.CPU_SCOPE in str(jax.jit(conv).lower(one).as_text(debug_info=True))
  for size, stride, tiny in ((2, 1, True), (4, 2, True), (3, 1, False), (6, 2, False)):
    x = jnp.ones((2, size, size, 8))
    assert ("convolution" not in lowered(x, stride)) == tiny, (size, stride)
  with cpu_kernels.native_gradients():  # What a GPU or TPU estimate compiles: lax's.
    assert "convolution" in lowered(jnp.ones((2, 2, 2, 8)))
  cpu_kernels.SMALL_MIN_MACS = 2 * 2 * 2 * 8 * 6 * 9 + 1  # One more than this conv's.
  assert "convolution" in lowered(jnp.ones((2, 2, 2, 8)))  # Too small to pay its compile.


@pytest.mark.parametrize("size", [6, 2])  # lax's conv, and patch_conv on a 2x2 map.
def test_bfloat16_gradient_keeps_the_kernel_dtype(size):
  x = jax.random.normal(jax.random.key(1), (2, size, size, 4), jnp.bfloat16)
  w = jax.random.normal(jax.random.key(2), (3, 3, 4, 4), jnp.bfloat16)
  f = lambda w: conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)
  assert f(w).dtype == jnp.bfloat16
  assert jax.grad(lambda w: f(w).astype(jnp.float32).sum())(w).dtype == jnp.bfloat16


@pytest.mark.parametrize("cin, groups", [(3, 1), (16, 1), (8, 2)])
def test_bfloat16_filter_gradient_matches_float32(cin, groups):
  # Ungrouped (XLA's gradient) and grouped (im2col matmul) on bfloat16 inputs: the
  # gradient stays bfloat16 and equals the float32 one to bfloat16 precision.
  kx, kw, kg = jax.random.split(jax.random.key(7), 3)
  x = jax.random.normal(kx, (2, 9, 8, cin))
  w = jax.random.normal(kw, (3, 3, cin // groups, 4))
  g = jax.random.normal(kg, (2, 5, 4, 4))
  pads = ((1, 1), (1, 1))

  def grad(dtype):
    f = lambda w: conv_general_dilated(
      x.astype(dtype), w, (2, 2), pads, dimension_numbers=DN, feature_group_count=groups
    )
    return jax.vjp(f, w.astype(dtype))[1](g.astype(dtype))[0]

  got, want = grad(jnp.bfloat16), grad(jnp.float32)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=0.05, atol=0.1)


def test_flax_conv_with_it_has_the_same_params_and_outputs():
  x = jax.random.normal(jax.random.key(3), (2, 8, 8, 3))
  plain = nn.Conv(4, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False)
  ours = plain.clone(conv_general_dilated=conv_general_dilated)
  variables = plain.init(jax.random.key(4), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(4), x)) == jax.tree.map(
    jnp.shape, variables
  )
  np.testing.assert_allclose(ours.apply(variables, x), plain.apply(variables, x), rtol=1e-5)
  loss = lambda m: lambda v: (m.apply(v, x) ** 2).sum()
  g1, g2 = jax.grad(loss(ours))(variables), jax.grad(loss(plain))(variables)
  np.testing.assert_allclose(g1["params"]["kernel"], g2["params"]["kernel"], rtol=1e-4, atol=1e-4)


def test_dilated_conv_falls_back_to_lax():
  x = jax.random.normal(jax.random.key(5), (1, 9, 9, 2))
  w = jax.random.normal(jax.random.key(6), (3, 3, 2, 2))
  kw = dict(rhs_dilation=(2, 2), dimension_numbers=DN)
  np.testing.assert_array_equal(
    conv_general_dilated(x, w, (1, 1), "SAME", **kw),
    lax.conv_general_dilated(x, w, (1, 1), "SAME", **kw),
  )


# ---------------------------------------------------------------------------- max pool


@pytest.mark.parametrize(
  "shape, window, strides, padding",
  [
    ((2, 9, 9, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),  # the ResNet stem, odd input
    ((2, 8, 10, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),  # even input
    ((1, 7, 7, 2), (2, 2), (2, 2), ((0, 0), (0, 0))),
    ((1, 7, 6, 2), (3, 2), (1, 3), ((1, 0), (0, 1))),
  ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_values_and_gradient_match_flax(shape, window, strides, padding, ties):
  x = jax.random.normal(jax.random.key(0), shape)
  if ties:  # ReLU zeros and repeated values: the gradient must go to the first maximum.
    x = jnp.round(jax.nn.relu(x))
  ref = lambda x: nn.max_pool(x, window, strides=strides, padding=padding)
  ours = lambda x: max_pool(x, window, strides, padding)
  y, vjp = jax.vjp(ours, x)
  y_ref, vjp_ref = jax.vjp(ref, x)
  np.testing.assert_array_equal(y, y_ref)
  g = jax.random.normal(jax.random.key(1), y.shape)
  np.testing.assert_allclose(jax.jit(vjp)(g)[0], vjp_ref(g)[0], rtol=1e-6, atol=1e-6)


def test_max_pool_gradient_goes_to_the_first_maximum_of_a_window():
  x = jnp.zeros((1, 3, 3, 1))  # one window, all nine values tied
  dx = jax.grad(lambda x: max_pool(x, (3, 3), (1, 1), ((0, 0), (0, 0))).sum())(x)
  expected = np.zeros((1, 3, 3, 1), np.float32)
  expected[0, 0, 0, 0] = 1.0
  np.testing.assert_array_equal(dx, expected)


def _stem_bias_gradient_and_routed_windows(pool, shape):
  """The stem's conv -> train-mode BatchNorm -> ReLU -> max pool in one jitted function:
  the BatchNorm bias gradient of ``sum(pool)`` and, per channel, the number of windows whose
  maximum is positive (each of them must route its cotangent 1 to one element after the
  ReLU, so the two are equal exactly; windows of ReLU zeros have gradient 0 either way)."""
  from ltjax.train import compile_options

  class Stem(nn.Module):
    @nn.compact
    def __call__(self, image):
      x = nn.Conv(shape[-1], (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False)(image)
      x = nn.relu(nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)(x))
      return pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))

  b, h, w, _ = shape
  image = jax.random.normal(jax.random.key(0), (b, 2 * h, 2 * w, 3))
  model = Stem()
  variables = model.init(jax.random.key(1), image)

  def pooled_sum(params):
    y, _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]}, image, mutable=["batch_stats"]
    )
    return y.sum(), y

  step = jax.jit(
    jax.grad(pooled_sum, has_aux=True), compiler_options=compile_options.for_platform("cpu")
  )
  grads, y = step(variables["params"])
  return np.asarray(grads["BatchNorm_0"]["bias"]), np.asarray((y > 0).sum(axis=(0, 1, 2)))


def test_max_pool_gradient_routes_every_window_after_a_fused_batchnorm_relu():
  # Under jit XLA:CPU recomputes the fused BatchNorm + ReLU for the backward pass, rounding
  # differently: a comparison with the forward's saved maximum dropped 2,530 of 1,605,632
  # windows at this shape (issue 21). Routing by one index drops none.
  shape = (8, 112, 112, 64)
  bias_grad, positive_windows = _stem_bias_gradient_and_routed_windows(max_pool, shape)
  np.testing.assert_array_equal(bias_grad, positive_windows)
  native, _ = _stem_bias_gradient_and_routed_windows(
    lambda x, w, s, p: nn.max_pool(x, w, strides=s, padding=p), shape
  )
  np.testing.assert_array_equal(bias_grad, native)
