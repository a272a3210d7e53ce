"""2-D convolution whose filter gradient is a matmul on CPU for grouped convolutions.

XLA:CPU computes the filter gradient of a grouped convolution (ResNeXt's 3x3, 32 groups)
in seconds, with YNNPACK or Eigen convolutions alike (BENCHMARKS.md: 5.9 s for a
28x28x128 layer at batch 16, against 0.12 s here). Ungrouped convolutions need no help
once ltjax's steps compile with ``ltjax.train.compile_options`` (Eigen convolutions on
CPU): XLA's own gradients then run near the matmul rate.

``conv_general_dilated`` here is a drop-in replacement for ``lax.conv_general_dilated``
(pass it to ``flax.linen.Conv(conv_general_dilated=...)``). Ungrouped convolutions, and
anything that is not a plain NHWC/HWIO 2-D convolution, are ``lax``'s. For grouped ones
the forward pass and the input gradient are XLA's own and, on CPU, the filter gradient
is one contraction of the im2col patches ``(N, kh*kw, groups, C)`` with the output
gradient (``matmul_filter_grad``); on other platforms (GPU, TPU) ``lax.platform_dependent``
keeps XLA's native filter gradient, which cuDNN and the TPU compiler run well. The patches
cost ``kh * kw`` times the input activation in temporary memory during the backward pass.
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


def matmul_filter_grad(x, g, kernel_shape, strides, padding, groups):
  """d(conv(x, w)) / dw contracted with the output gradient ``g``, as one contraction.

  The ``kh * kw`` strided views of the padded input that the kernel offsets see are
  stacked into im2col patches ``(N, kh*kw, groups, C)`` and contracted with ``g``
  ``(N, groups, O // groups)`` over ``N``.

  Args:
    x: ``(B, H, W, C * groups)`` conv input.
    g: ``(B, Ho, Wo, O)`` output gradient.
    kernel_shape: ``(kh, kw, C, O)``.
    strides: ``(sh, sw)``.
    padding: ``((top, bottom), (left, right))``.
    groups: feature group count.

  Returns:
    ``(kh, kw, C, O)`` filter gradient in ``g``'s dtype (accumulated in float32).
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
  patches = views[0] if len(views) == 1 else jnp.stack(views, axis=3)
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
  """``lax.conv_general_dilated``, with a matmul filter gradient on CPU for grouped 2-D
  NHWC/HWIO convs; any other case (no groups, dilation, other layouts, precision) is
  ``lax``'s."""
  grouped = (
    feature_group_count > 1
    and lhs.ndim == 4
    and not any(d != 1 for d in (lhs_dilation or ()))
    and not any(d != 1 for d in (rhs_dilation or ()))
    and precision is None
    and not kwargs
    and _is_nhwc(dimension_numbers)
  )
  if not grouped:
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
