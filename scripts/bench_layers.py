"""Per-layer timings behind ltjax's CPU compile options and its conv and max-pool gradients.

For each convolution of a ResNet-10 at 112 px (and two ResNeXt grouped convs), batch 64:
forward, input gradient and filter gradient, compiled with XLA:CPU's defaults
(convolutions on YNNPACK) and with ``ltjax.train.compile_options`` (Eigen convolutions),
and the filter gradient as ``ltjax.models.cpu_kernels.matmul_filter_grad``'s im2col contraction
(which ltjax uses for grouped convs); then the stem max pool's input gradient, XLA's
``select_and_scatter`` against ``ltjax.models.cpu_kernels``'s elementwise form.

  python scripts/bench_layers.py [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
from jax import lax

from ltjax.models.cpu_kernels import matmul_filter_grad, max_pool
from ltjax.train import compile_options

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
  (28, 128, 128, 3, 1, 32, "ResNeXt layer2 grouped"),
  (14, 256, 256, 3, 1, 32, "ResNeXt layer3 grouped"),
]
OPTIONS = compile_options.CPU_OPTIONS


def timed(fn, *args, n: int = 5) -> float:
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  for _ in range(n):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / n


def conv_row(b, size, cin, cout, k, s, groups, label) -> str:
  key = jax.random.key(0)
  x = jax.random.normal(key, (b, size, size, cin))
  w = jax.random.normal(key, (k, k, cin // groups, cout))
  pads = ((k // 2, k // 2),) * 2
  conv = lambda x, w: lax.conv_general_dilated(
    x, w, (s, s), pads, dimension_numbers=DN, feature_group_count=groups
  )
  y = jax.eval_shape(conv, x, w)
  g = jax.random.normal(key, y.shape)
  flops = 2 * y.size * k * k * cin // groups
  fns = {
    "forward": (lambda x, w, g: conv(x, w)),
    "input gradient": (lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]),
    "filter gradient": (lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0]),
  }
  cells = []
  for name, fn in fns.items():
    for options in (None, OPTIONS):
      if name == "filter gradient" and groups > 1:
        cells.append("(seconds)")  # XLA's grouped filter gradient: 2-6 s at batch 16.
        continue
      t = timed(jax.jit(fn, compiler_options=options), x, w, g)
      cells.append(f"{1e3 * t:,.0f} ({flops / t / 1e9:.0f})")
  im2col = lambda x, g: matmul_filter_grad(x, g, w.shape, (s, s), pads, groups)
  t = timed(jax.jit(im2col, compiler_options=OPTIONS), x, g)
  cells.append(f"{1e3 * t:,.0f} ({flops / t / 1e9:.0f})")
  return f"| {label}: {size}x{size}x{cin} -> {cout}, {k}x{k}, /{s} | " + " | ".join(cells) + " |"


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=64)
  b = p.parse_args().batch
  key = jax.random.key(0)
  print(f"ms (GFLOP/s), batch {b}, float32, jax {jax.__version__}; YNNPACK = XLA:CPU defaults,")
  print("Eigen = ltjax.train.compile_options")
  print(
    "| conv | forward YNNPACK | forward Eigen | input grad YNNPACK | input grad Eigen "
    "| filter grad YNNPACK | filter grad Eigen | filter grad im2col |"
  )
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for case in CONVS:
    print(conv_row(b, *case))

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
