"""Forward and forward+backward time of a backbone in ltjax and in PyTorch.

Splits the train-step gap of ``scripts/benchmark.py`` into its forward and backward parts:
times ``jax.jit`` of the train-mode loss and of its gradient (with ltjax's compile
options), and the same in PyTorch (channels_last, 2 threads), on one random batch.

  python scripts/bench_fwd_bwd.py [--backbone resnet10 --batch 64 --image_size 112]
                                  [--malloc_hugepages]

``--malloc_hugepages`` re-runs the script with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``
(see BENCHMARKS.md: XLA's per-call temp buffer is otherwise faulted in 4 KiB pages on
every call).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import glibc_tunables  # scripts/, on sys.path when run as a script
import jax
import jax.numpy as jnp
import optax

from ltjax.models import build_model
from ltjax.train import compile_options


def timed(fn, *args, n: int = 4) -> float:
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  for _ in range(n):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / n


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--backbone", default="resnet10")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--image_size", type=int, default=112)
  p.add_argument("--num_classes", type=int, default=1000)
  p.add_argument("--malloc_hugepages", action="store_true")
  args = p.parse_args()
  if args.malloc_hugepages:
    glibc_tunables.reexec_with(glibc_tunables.HUGEPAGES)
  b, s, k = args.batch, args.image_size, args.num_classes

  model = build_model(args.backbone, "linear", k)
  x = jax.random.normal(jax.random.key(0), (b, s, s, 3))
  y = jnp.arange(b) % k
  variables = jax.jit(lambda key: model.init(key, x[:1], train=False))(jax.random.key(1))

  def loss(params, stats, x):
    (logits, _), _ = model.apply(
      {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  params, stats = variables["params"], variables["batch_stats"]
  options = compile_options.for_platform(jax.default_backend())  # As ltjax's own steps.
  jax_fwd = timed(jax.jit(loss, compiler_options=options), params, stats, x)
  jax_all = timed(jax.jit(jax.grad(loss), compiler_options=options), params, stats, x)

  import torch

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import torch_resnet

  torch.set_num_threads(2)
  net = torch_resnet.build(args.backbone, k).to(memory_format=torch.channels_last).train()
  tx = torch.randn(b, 3, s, s).contiguous(memory_format=torch.channels_last)
  ty = torch.arange(b) % k

  def torch_fwd():
    with torch.no_grad():
      return torch.nn.functional.cross_entropy(net(tx), ty)

  def torch_all():
    out = torch.nn.functional.cross_entropy(net(tx), ty)
    out.backward()
    return out

  def torch_timed(fn, n: int = 4) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
      fn()
    return (time.perf_counter() - t0) / n

  t_fwd, t_all = torch_timed(torch_fwd), torch_timed(torch_all)
  print(f"{args.backbone}, {s} px, batch {b}, float32 (seconds)")
  print("| | forward | backward | forward + backward |")
  print("|---|---:|---:|---:|")
  print(f"| ltjax | {jax_fwd:.3f} | {jax_all - jax_fwd:.3f} | {jax_all:.3f} |")
  print(f"| PyTorch channels_last | {t_fwd:.3f} | {t_all - t_fwd:.3f} | {t_all:.3f} |")


if __name__ == "__main__":
  main()
