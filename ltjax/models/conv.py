"""2-D convolution whose filter gradient is a matmul on CPU.

XLA:CPU lowers the gradient of a convolution with respect to its filter to a convolution
whose "kernel" is the output gradient (spatially as large as the feature map), and runs
it 10-20x below the machine's matmul rate (measured in BENCHMARKS.md: 6 GFLOP/s for a
3x3 64->64 conv on a 28x28 map, batch 64, against ~130 GFLOP/s for a matmul). That one
op made a ResNet-10 train step 3x slower than PyTorch on the same CPU.

``conv_general_dilated`` here is a drop-in replacement for ``lax.conv_general_dilated``
(pass it to ``flax.linen.Conv(conv_general_dilated=...)``) for NHWC inputs and HWIO
kernels without dilation. Its forward pass and its input gradient are XLA's own; its
filter gradient is, on CPU, computed with matmuls: each of the ``kh * kw`` kernel offsets
sees a shifted (strided) view of the padded input, contracted with the output gradient
``(N, O)`` (``matmul_filter_grad``). On
other platforms (GPU, TPU) ``lax.platform_dependent`` keeps XLA's native filter gradient,
which cuDNN and the TPU compiler run well.

The views and patches cost up to ``kh * kw`` times the input activation in temporary
memory during the backward pass of each layer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
Pads = tuple[tuple[int, int], tuple[int, int]]


def _xla_conv(x, w, strides, padding, groups):
  return lax.conv_general_dilated(
    x,
    w,
    strides,
    padding,
    dimension_numbers=_DIMENSION_NUMBERS,
    feature_group_count=groups,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides: tuple[int, int], padding: Pads, groups: int):
  return _xla_conv(x, w, strides, padding, groups)


def _conv_fwd(x, w, strides, padding, groups):
  return _xla_conv(x, w, strides, padding, groups), (x, w)


# Below this many input channels per group, one matmul over stacked patches (im2col)
# beats one matmul per kernel offset (the ResNet stem, C=3); above, the per-offset matmuls
# avoid writing kh*kw copies of the input (measured with scripts/bench_layers.py).
_PER_OFFSET_MIN_CHANNELS = 16


def matmul_filter_grad(x, g, kernel_shape, strides, padding, groups):
  """d(conv(x, w)) / dw contracted with the output gradient ``g``, as matmuls.

  With ``C`` input channels per group: for ``C >= 16`` (and no groups) one ``(C, N) x
  (N, O)`` matmul per kernel offset, on the strided view of the padded input that the
  offset sees; otherwise (the stem, grouped convs) one matmul of the stacked views
  (im2col patches ``(N, kh*kw*C)``) with ``g``.

  Args:
    x: ``(B, H, W, C)`` conv input.
    g: ``(B, Ho, Wo, O)`` output gradient.
    kernel_shape: ``(kh, kw, C // groups, O)``.
    strides: ``(sh, sw)``.
    padding: ``((top, bottom), (left, right))``.
    groups: feature group count.

  Returns:
    ``(kh, kw, C // groups, O)`` filter gradient in ``g``'s dtype (accumulated in float32).
  """
  kh, kw, cin_g, cout = kernel_shape
  b, ho, wo, _ = g.shape
  sh, sw = strides
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  views = [
    lax.slice(
      xp,
      (0, i, j, 0),
      (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, xp.shape[3]),
      (1, sh, sw, 1),
    )
    for i in range(kh)
    for j in range(kw)
  ]
  n = b * ho * wo
  contract_rows = (((0,), (0,)), ((), ()))
  if groups == 1 and cin_g >= _PER_OFFSET_MIN_CHANNELS:
    g2 = g.reshape(n, cout)
    dw = jnp.stack(
      [
        lax.dot_general(v.reshape(n, cin_g), g2, contract_rows, preferred_element_type=jnp.float32)
        for v in views
      ]
    )
    return dw.reshape(kh, kw, cin_g, cout).astype(g.dtype)
  patches = views[0] if len(views) == 1 else jnp.stack(views, axis=3)
  if groups == 1:
    dw = lax.dot_general(
      patches.reshape(n, kh * kw * cin_g),
      g.reshape(n, cout),
      contract_rows,
      preferred_element_type=jnp.float32,
    )
    return dw.reshape(kh, kw, cin_g, cout).astype(g.dtype)
  cout_g = cout // groups
  dw = jnp.einsum(
    "nkgc,ngo->kcgo",
    patches.reshape(n, kh * kw, groups, cin_g),
    g.reshape(n, groups, cout_g),
    preferred_element_type=jnp.float32,
  )
  return dw.reshape(kh, kw, cin_g, cout).astype(g.dtype)


def _conv_bwd(strides, padding, groups, residuals, g):
  x, w = residuals
  _, vjp = jax.vjp(lambda x, w: _xla_conv(x, w, strides, padding, groups), x, w)

  def native(x, g):
    return vjp(g)[1]

  def matmul(x, g):
    return matmul_filter_grad(x, g, w.shape, strides, padding, groups)

  dx = vjp(g)[0]
  dw = lax.platform_dependent(x, g, cpu=matmul, default=native)
  return dx, dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(
  lhs,
  rhs,
  window_strides: Sequence[int],
  padding: str | Sequence[tuple[int, int]],
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  precision=None,
  **kwargs,
):
  """``lax.conv_general_dilated`` for 2-D NHWC/HWIO convs, with a matmul filter gradient
  on CPU; any other case (dilation, other layouts, precision) falls back to ``lax``."""
  plain = (
    lhs.ndim == 4
    and not any(d != 1 for d in (lhs_dilation or ()))
    and not any(d != 1 for d in (rhs_dilation or ()))
    and precision is None
    and not kwargs
    and _is_nhwc(dimension_numbers)
  )
  if not plain:
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      precision=precision,
      **kwargs,
    )
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return _conv(lhs, rhs, tuple(int(s) for s in window_strides), pads, int(feature_group_count))


def _is_nhwc(dimension_numbers) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return dimension_numbers == lax.conv_dimension_numbers(
      (1, 1, 1, 1), (1, 1, 1, 1), _DIMENSION_NUMBERS
    )
  return tuple(dimension_numbers) == _DIMENSION_NUMBERS
