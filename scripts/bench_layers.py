"""Per-layer gradient timings behind ltjax's CPU conv and max-pool gradients.

For each convolution of a ResNet-10 at 112 px (and one ResNeXt grouped conv), batch 64:
the filter gradient as XLA computes it (``jax.vjp`` of ``lax.conv_general_dilated``)
against ``ltjax.models.conv``'s matmul form; then the stem max pool's input gradient,
XLA's ``select_and_scatter`` against ``ltjax.models.pool``'s elementwise form.

  python scripts/bench_layers.py [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
from jax import lax

from ltjax.models.conv import conv_general_dilated
from ltjax.models.pool import max_pool

DN = ("NHWC", "HWIO", "NHWC")
# (input size, in channels, out channels, kernel, stride, groups, label)
CONVS = [
  (112, 3, 64, 7, 2, 1, "stem"),
  (28, 64, 64, 3, 1, 1, "layer1"),
  (28, 64, 128, 3, 2, 1, "layer2 first"),
  (28, 64, 128, 1, 2, 1, "layer2 shortcut"),
  (14, 128, 128, 3, 1, 1, "layer2"),
  (7, 256, 256, 3, 1, 1, "layer3"),
  (4, 512, 512, 3, 1, 1, "layer4"),
  (28, 128, 128, 3, 1, 32, "ResNeXt grouped"),
]


def timed(fn, *args, n: int = 5) -> float:
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  for _ in range(n):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / n


def filter_grad_row(b, size, cin, cout, k, s, groups, label) -> str:
  key = jax.random.key(0)
  x = jax.random.normal(key, (b, size, size, cin))
  w = jax.random.normal(key, (k, k, cin // groups, cout))
  pads = ((k // 2, k // 2),) * 2
  kw = dict(dimension_numbers=DN, feature_group_count=groups)
  y = jax.eval_shape(lambda: lax.conv_general_dilated(x, w, (s, s), pads, **kw))
  g = jax.random.normal(key, y.shape)
  flops = 2 * y.size * k * k * cin // groups
  cells = []
  for conv in (lax.conv_general_dilated, conv_general_dilated):

    def grad_w(x, w, g, conv=conv):
      return jax.vjp(lambda w: conv(x, w, (s, s), pads, **kw), w)[1](g)[0]

    t = timed(jax.jit(grad_w), x, w, g)
    cells.append(f"{1e3 * t:,.0f} ms ({flops / t / 1e9:.1f} GFLOP/s)")
  return (
    f"| {label}: {size}x{size}x{cin} -> {cout}, {k}x{k}, /{s}, groups {groups} | "
    f"{cells[0]} | {cells[1]} |"
  )


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=64)
  b = p.parse_args().batch
  key = jax.random.key(0)
  print(f"filter gradient, batch {b}, float32, jax {jax.__version__}")
  print("| conv | XLA | ltjax matmuls |")
  print("|---|---:|---:|")
  for case in CONVS:
    print(filter_grad_row(b, *case))

  x = jax.nn.relu(jax.random.normal(key, (b, 56, 56, 64)))
  pads = ((1, 1), (1, 1))
  flax_pool = lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding=pads)
  ours = lambda x: max_pool(x, (3, 3), (2, 2), pads)
  g = jax.random.normal(key, (b, 28, 28, 64))
  row = []
  for pool in (flax_pool, ours):
    row.append(timed(jax.jit(lambda x, g, pool=pool: jax.vjp(pool, x)[1](g)[0]), x, g))
  fwd = timed(jax.jit(flax_pool), x)
  print(
    f"\nstem max pool 3x3/2 on {b}x56x56x64: forward {1e3 * fwd:.0f} ms; input gradient "
    f"XLA select_and_scatter {1e3 * row[0]:.0f} ms, ltjax elementwise {1e3 * row[1]:.0f} ms"
  )


if __name__ == "__main__":
  main()
