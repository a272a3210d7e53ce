"""Max pooling whose gradient avoids XLA:CPU's slow ``select_and_scatter``.

The gradient of ``flax.linen.max_pool`` is XLA's ``select_and_scatter``, which XLA:CPU
runs as a scalar loop: 0.34 s for the ResNet stem's 3x3/2 pool on a 64x56x56x64 map,
against 0.017 s for the forward pass (measured in BENCHMARKS.md), a fifth of a ResNet-10
train step. ``max_pool`` here has the same forward pass and, on CPU, computes the same
gradient with elementwise operations: for each of the ``kh * kw`` window offsets in
row-major order, the output gradient goes to the positions of that strided view that
equal the window's maximum and were not already claimed by an earlier offset (so ties go
to the first maximum in the window, as XLA's ``select_and_scatter`` with ``>=`` and
PyTorch do), and is added back in place with an interior-padded ``lax.pad``. On other
platforms ``lax.platform_dependent`` keeps XLA's native gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

Pads = tuple[tuple[int, int], tuple[int, int]]


def _native(x, window, strides, padding):
  return lax.reduce_window(
    x,
    -jnp.inf,
    lax.max,
    (1, *window, 1),
    (1, *strides, 1),
    ((0, 0), *padding, (0, 0)),
  )


def _views(xp, window, strides, out_hw):
  """The ``kh * kw`` strided views of the padded input, one per window offset."""
  b, _, _, c = xp.shape
  (kh, kw), (sh, sw), (ho, wo) = window, strides, out_hw
  for i in range(kh):
    for j in range(kw):
      yield (
        (i, j),
        lax.slice(
          xp, (0, i, j, 0), (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1)
        ),
      )


def _elementwise_grad(x, y, g, window, strides, padding):
  (pt, pb), (pl, pr) = padding
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-jnp.inf)
  b, hp, wp, c = xp.shape
  _, ho, wo, _ = y.shape
  sh, sw = strides
  zero = jnp.zeros((), g.dtype)
  # Padded-input row i + sh * r belongs to phase i % sh, at phase row i // sh + r: each
  # offset's gradient lands in one (n_h, n_w) phase grid, shifted by (i // sh, j // sw).
  n_h, n_w = -(-hp // sh), -(-wp // sw)
  phases = [[None] * sw for _ in range(sh)]
  taken = jnp.zeros(y.shape, bool)
  for (i, j), view in _views(xp, window, strides, (ho, wo)):
    hit = (view == y) & ~taken
    taken = taken | hit
    part = jnp.where(hit, g, zero)
    part = lax.pad(
      part,
      zero,
      ((0, 0, 0), (i // sh, n_h - i // sh - ho, 0), (j // sw, n_w - j // sw - wo, 0), (0, 0, 0)),
    )
    a, q = i % sh, j % sw
    phases[a][q] = part if phases[a][q] is None else phases[a][q] + part
  empty = jnp.zeros((b, n_h, n_w, c), g.dtype)
  grid = jnp.stack(
    [jnp.stack([p if p is not None else empty for p in row], axis=3) for row in phases], axis=2
  )  # (B, n_h, sh, n_w, sw, C): interleave the phases back into rows and columns.
  dxp = grid.reshape(b, n_h * sh, n_w * sw, c)
  return dxp[:, pt : hp - pb, pl : wp - pr, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, padding):
  return _native(x, window, strides, padding)


def _fwd(x, window, strides, padding):
  y = _native(x, window, strides, padding)
  return y, (x, y)


def _bwd(window, strides, padding, residuals, g):
  x, y = residuals

  def native(x, g):
    return jax.vjp(lambda x: _native(x, window, strides, padding), x)[1](g)[0]

  def elementwise(x, g):
    return _elementwise_grad(x, y, g, window, strides, padding)

  return (lax.platform_dependent(x, g, cpu=elementwise, default=native),)


_max_pool.defvjp(_fwd, _bwd)


def max_pool(x, window: tuple[int, int], strides: tuple[int, int], padding: Pads):
  """``flax.linen.max_pool`` for NHWC float inputs with explicit padding (padded with
  -inf), with an elementwise gradient on CPU (see the module docstring)."""
  return _max_pool(
    x,
    tuple(int(w) for w in window),
    tuple(int(s) for s in strides),
    tuple((int(lo), int(hi)) for lo, hi in padding),
  )
