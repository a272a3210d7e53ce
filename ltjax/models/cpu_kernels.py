"""CPU-only kernels: a grouped-convolution filter gradient and a max-pool gradient.

XLA:CPU runs two backward passes of the ResNets far below its matmul rate: the filter
gradient of a grouped convolution (ResNeXt's 3x3 with 32 groups) and the gradient of max
pooling (``select_and_scatter``, a scalar loop). BENCHMARKS.md ("CPU-only kernels") has the
measurements that justify these replacements. Both are ``jax.custom_vjp`` functions whose
forward pass is XLA's own and whose backward pass is chosen per platform with
``lax.platform_dependent``: on CPU the replacement below, everywhere else (GPU, TPU) XLA's
native gradient, which cuDNN and the TPU compiler run well. Nothing here reaches a GPU or
TPU lowering (tests/test_lowering.py checks it).

* ``conv_general_dilated``: a drop-in replacement for ``lax.conv_general_dilated`` (pass
  it to ``flax.linen.Conv(conv_general_dilated=...)``). Ungrouped convolutions, and
  anything that is not a plain NHWC/HWIO 2-D convolution, are ``lax``'s (once ltjax's
  steps compile with ``ltjax.train.compile_options``, XLA's own gradients of ungrouped
  convolutions run near the matmul rate). For grouped ones the filter gradient on CPU is
  one contraction of the im2col patches ``(N, kh*kw, groups, C)`` with the output gradient
  (``matmul_filter_grad``); the patches cost ``kh * kw`` times the input activation in
  temporary memory during the backward pass.
* ``max_pool``: ``flax.linen.max_pool`` for NHWC float inputs with explicit padding. On
  CPU its gradient is computed with elementwise operations: one pass over the ``kh * kw``
  strided views of the input (window offsets in row-major order) finds each window's first
  maximum as an offset index (ties go to the first maximum in the window, as XLA's
  ``select_and_scatter`` with ``>=`` and PyTorch do); the output gradient of each offset
  then goes where the index names it and is added back in place with an interior-padded
  ``lax.pad``. Routing by one index, not by comparing the input with the forward's
  maximum, sends every window's gradient to exactly one element even when XLA recomputes a
  fused producer of the input (BatchNorm + ReLU) with other rounding in the backward pass.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

#: Name scope of the CPU-only branches: it shows in a lowering's locations, so a test can
#: tell that none of this code reached a GPU or TPU lowering (tests/test_lowering.py).
CPU_SCOPE = "ltjax_cpu_only_kernel"

_ENABLED = [True]


@contextlib.contextmanager
def native_gradients():
  """Within this block, functions traced use XLA's native gradients on every platform, the
  CPU too: what a GPU or TPU compiles, for estimates on a CPU (scripts/memory_plan.py).
  The choice is made when a function is traced: a step jitted and traced before the block
  keeps the kernels it was traced with."""
  previous, _ENABLED[0] = _ENABLED[0], False
  try:
    yield
  finally:
    _ENABLED[0] = previous


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
    with jax.named_scope(CPU_SCOPE):
      return matmul_filter_grad(x, g, w.shape, strides, padding, groups)

  dx = vjp(g)[0]
  dw = lax.platform_dependent(x, g, cpu=matmul, default=native) if _ENABLED[0] else native(x, g)
  return dx, dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


# ------------------------------------------------------- convolutions on tiny feature maps

#: Output maps at most this many pixels a side go through ``patch_conv`` on CPU: XLA:CPU's
#: Eigen convolution runs 10-90x slower than the matmul there (ResNet-10's layer3/4 at 32 px
#: inputs, BENCHMARKS.md "Issue 35"), from 3x3 outputs on it is the faster one.
SMALL_OUTPUT = 2
#: ... when the convolution has at least this many multiply-adds (batch x output pixels x
#: in x out channels x kernel taps): ``patch_conv`` compiles in about 0.5 s where XLA's
#: convolution takes 0.1 s, which a small one (a test's batch of 16) never wins back.
SMALL_MIN_MACS = 2**24


def _out_size(size: int, k: int, s: int, pad: tuple[int, int]) -> int:
  return (size + pad[0] + pad[1] - k) // s + 1


def patch_conv(x, w, strides: tuple[int, int], padding: Pads):
  """An ungrouped NHWC/HWIO convolution as one matmul of its im2col patches: the strided
  views of the padded input that each kernel offset sees, concatenated along channels,
  times the kernel's rows. Offsets whose every view lies in the padding (the outer ring of
  a 3x3 kernel on a 1x1 map) contribute zeros and are left out, so a 3x3 convolution of a
  1x1 map costs one ``C x O`` matmul. Exactly the convolution (same sums, another order)."""
  kh, kw, cin, cout = w.shape
  b, h, wd, _ = x.shape
  (pt, pb), (pl, pr) = padding
  sh, sw = strides
  ho, wo = _out_size(h, kh, sh, (pt, pb)), _out_size(wd, kw, sw, (pl, pr))
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))

  def sees_data(offset: int, stride: int, out: int, pad: int, size: int) -> bool:
    return any(pad <= offset + stride * r < pad + size for r in range(out))

  views, rows = [], []
  for i in range(kh):
    for j in range(kw):
      if not (sees_data(i, sh, ho, pt, h) and sees_data(j, sw, wo, pl, wd)):
        continue
      end = (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, cin)
      views.append(lax.slice(xp, (0, i, j, 0), end, (1, sh, sw, 1)))
      rows.append(w[i, j])
  patches = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)
  kernel = rows[0] if len(rows) == 1 else jnp.concatenate(rows, axis=0)
  y = jnp.matmul(patches.reshape(b * ho * wo, -1), kernel, preferred_element_type=jnp.float32)
  return y.reshape(b, ho, wo, cout).astype(jnp.result_type(x, w))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _small_conv(x, w, strides: tuple[int, int], padding: Pads):
  def cpu(x, w):
    with jax.named_scope(CPU_SCOPE):
      return patch_conv(x, w, strides, padding)

  def native(x, w):
    return _xla_conv(x, w, strides, padding, 1)

  return lax.platform_dependent(x, w, cpu=cpu, default=native)


def _small_conv_fwd(x, w, strides, padding):
  return _small_conv(x, w, strides, padding), (x, w)


def _small_conv_bwd(strides, padding, residuals, g):
  x, w = residuals

  def cpu(x, w, g):
    with jax.named_scope(CPU_SCOPE):
      return jax.vjp(lambda x, w: patch_conv(x, w, strides, padding), x, w)[1](g)

  def native(x, w, g):
    return jax.vjp(lambda x, w: _xla_conv(x, w, strides, padding, 1), x, w)[1](g)

  return tuple(lax.platform_dependent(x, w, g, cpu=cpu, default=native))


_small_conv.defvjp(_small_conv_fwd, _small_conv_bwd)


def _tiny_output(lhs, rhs, strides, pads) -> bool:
  kh, kw, cin, cout = rhs.shape
  out = [
    _out_size(n, k, s, p)
    for n, k, s, p in zip(lhs.shape[1:3], (kh, kw), strides, pads, strict=True)
  ]
  macs = lhs.shape[0] * out[0] * out[1] * cin * cout * kh * kw
  return kh * kw > 1 and max(out) <= SMALL_OUTPUT and macs >= SMALL_MIN_MACS


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
  """``lax.conv_general_dilated``, with on CPU a matmul filter gradient for grouped 2-D
  NHWC/HWIO convs and ``patch_conv`` (forward and gradients) for ungrouped ones whose
  output map is at most ``SMALL_OUTPUT`` pixels a side; any other case (dilation, other
  layouts, precision) is ``lax``'s."""
  plain = (
    lhs.ndim == 4
    and not any(d != 1 for d in (lhs_dilation or ()))
    and not any(d != 1 for d in (rhs_dilation or ()))
    and precision is None
    and not kwargs
    and _is_nhwc(dimension_numbers)
    and _ENABLED[0]
  )
  grouped = plain and feature_group_count > 1
  if plain and feature_group_count == 1:
    pads = padding
    if isinstance(padding, str):
      pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    strides = tuple(int(s) for s in window_strides)
    if _tiny_output(lhs, rhs, strides, pads):
      return _small_conv(lhs, rhs, strides, pads)
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


# ---------------------------------------------------------------------------- max pool


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


def _first_max_offset(views):
  """For each window, the index (row-major offset) of its first maximum, as one int8 map.

  The routing is decided once, here: every window gets exactly one offset, whatever XLA
  fuses in front of the pool. (Comparing each view with the forward's saved maximum instead
  drops windows under jit: XLA:CPU recomputes a fused producer, such as train-mode
  BatchNorm + ReLU, separately for the forward and the backward, and the two can round
  differently, so no element equals the saved maximum.) Strict ``>``: ties go to the first
  offset, as XLA's ``select_and_scatter`` with ``>=`` and PyTorch do."""
  dtype = jnp.int8 if len(views) <= 127 else jnp.int32
  best, index = views[0], jnp.zeros(views[0].shape, dtype)
  for k, view in enumerate(views[1:], start=1):
    better = view > best
    best = jnp.where(better, view, best)
    index = jnp.where(better, jnp.asarray(k, dtype), index)
  return index


def _elementwise_grad(x, g, window, strides, padding):
  (pt, pb), (pl, pr) = padding
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-jnp.inf)
  b, hp, wp, c = xp.shape
  _, ho, wo, _ = g.shape
  sh, sw = strides
  zero = jnp.zeros((), g.dtype)
  offsets = [ij for ij, _ in _views(xp, window, strides, (ho, wo))]
  index = _first_max_offset([view for _, view in _views(xp, window, strides, (ho, wo))])
  # Padded-input row i + sh * r belongs to phase i % sh, at phase row i // sh + r: each
  # offset's gradient lands in one (n_h, n_w) phase grid, shifted by (i // sh, j // sw).
  n_h, n_w = -(-hp // sh), -(-wp // sw)
  phases = [[None] * sw for _ in range(sh)]
  for k, (i, j) in enumerate(offsets):
    part = jnp.where(index == k, g, zero)
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
  return _native(x, window, strides, padding), x


def _bwd(window, strides, padding, x, g):

  def native(x, g):
    return jax.vjp(lambda x: _native(x, window, strides, padding), x)[1](g)[0]

  def elementwise(x, g):
    with jax.named_scope(CPU_SCOPE):
      return _elementwise_grad(x, g, window, strides, padding)

  if not _ENABLED[0]:
    return (native(x, g),)
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
