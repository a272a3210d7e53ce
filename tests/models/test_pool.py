"""max_pool with an elementwise gradient equals flax's max_pool and its gradient."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltjax.models.pool import max_pool


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
def test_values_and_gradient_match_flax(shape, window, strides, padding, ties):
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


def test_gradient_goes_to_the_first_maximum_of_a_window():
  x = jnp.zeros((1, 3, 3, 1))  # one window, all nine values tied
  dx = jax.grad(lambda x: max_pool(x, (3, 3), (1, 1), ((0, 0), (0, 0))).sum())(x)
  expected = np.zeros((1, 3, 3, 1), np.float32)
  expected[0, 0, 0, 0] = 1.0
  np.testing.assert_array_equal(dx, expected)
