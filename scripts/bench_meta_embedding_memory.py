"""Peak memory of the meta-embedding head's forward + backward at iNaturalist scale.

Compiles ``jax.grad`` of the OLTR meta-embedding head (``ltjax.models.oltr``) with respect to
its parameters and its input features, at K classes, D feature dims and batch B (default
K=8142, D=2048, B=128: iNaturalist 2018 on a ResNet-50), prints XLA's compiled memory
analysis, runs the step once, and compares with the size of one ``(B, K, D)`` float32 array,
which a broadcast distance ``||x[:, None] - c[None]||`` would need.

  python scripts/bench_meta_embedding_memory.py [--classes 8142 --dim 2048 --batch 128]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from ltjax.models.oltr import MetaEmbeddingHead


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--classes", type=int, default=8142)
  p.add_argument("--dim", type=int, default=2048)
  p.add_argument("--batch", type=int, default=128)
  args = p.parse_args()
  k, d, b = args.classes, args.dim, args.batch

  head = MetaEmbeddingHead(num_classes=k)
  key = jax.random.key(0, impl="rbg")
  x = jax.random.normal(jax.random.fold_in(key, 1), (b, d), jnp.float32)
  centroids = jax.random.normal(jax.random.fold_in(key, 2), (k, d), jnp.float32)
  params = jax.jit(head.init)(key, x, centroids=centroids)["params"]

  def loss(params, x, centroids):
    logits, _ = head.apply({"params": params}, x, centroids=centroids)
    return jax.nn.logsumexp(logits, axis=-1).mean()

  grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
  t0 = time.perf_counter()
  compiled = grad.lower(params, x, centroids).compile()
  compile_s = time.perf_counter() - t0
  m = compiled.memory_analysis()
  t0 = time.perf_counter()
  jax.block_until_ready(compiled(params, x, centroids))
  run_s = time.perf_counter() - t0

  mib = lambda n: f"{n / 2**20:,.0f} MiB"
  n_params = sum(v.size for v in jax.tree.leaves(params))
  print(
    f"meta-embedding head forward+backward, K={k}, D={d}, B={b}, float32, jax {jax.__version__}"
  )
  print(
    f"| parameters ({n_params:,} floats) + centroids + features (arguments) | "
    f"{mib(m.argument_size_in_bytes)} |"
  )
  print(f"| gradients (outputs) | {mib(m.output_size_in_bytes)} |")
  print(f"| temporaries | {mib(m.temp_size_in_bytes)} |")
  print(f"| peak (XLA's estimate) | {mib(m.peak_memory_in_bytes)} |")
  print(f"| one (B, K, D) float32 array, as a broadcast distance needs | {mib(4 * b * k * d)} |")
  print(f"compile {compile_s:.1f} s, one run {run_s:.2f} s")


if __name__ == "__main__":
  main()
