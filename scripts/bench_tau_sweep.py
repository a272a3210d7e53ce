"""Benchmark of the one-matmul tau sweep (Decoupling tau-normalisation) against a naive loop.

Selecting tau sweeps a grid on the validation split. Because ``x^T (w_j / ||w_j||^tau) =
(x^T w_j) * ||w_j||^-tau``, ``ltjax.models.heads.tau_sweep_predictions`` computes ``X W^T``
once and then, per tau, a column rescale and an argmax. This script times, on random
ImageNet-LT-sized data (by default N=20,000 validation features, D=512, K=1000, 100 taus):

* (a) ``tau_sweep_predictions``: one matmul + T rescale/argmax passes (jitted);
* (b) the naive loop: T x (``tau_normalize`` + matmul + argmax), each step jitted;
* one bare ``X W^T`` matmul, for reference.

Everything is compiled and warmed up first. The three are timed interleaved, once each per
round, so a noisy neighbour slows all alike; the table reports medians over rounds and the
median of the per-round (b)/(a) ratios. Both methods' predictions are checked to agree.

Example::

  python scripts/bench_tau_sweep.py
  python scripts/bench_tau_sweep.py --rounds 5 --taus_per_step 4
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--n", type=int, default=20_000, help="validation features N")
  p.add_argument("--d", type=int, default=512, help="feature dimension D")
  p.add_argument("--k", type=int, default=1000, help="classes K")
  p.add_argument("--taus", type=int, default=100, help="grid size T (taus in [0, 2])")
  p.add_argument("--rounds", type=int, default=3, help="timed rounds (medians reported)")
  p.add_argument("--taus_per_step", type=int, default=1, help="see tau_sweep_predictions")
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args(argv)


def main(argv=None) -> None:
  args = parse_args(argv)
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  import jax
  import jax.numpy as jnp
  import numpy as np

  from ltjax.models.heads import tau_normalize, tau_sweep_predictions

  rng = np.random.default_rng(args.seed)
  x = jnp.asarray(rng.normal(size=(args.n, args.d)), jnp.float32)
  # Row norms spread as after long-tailed training (head classes have larger norms).
  w = rng.normal(size=(args.k, args.d)) * np.linspace(2.0, 0.5, args.k)[:, None] / 20
  w = jnp.asarray(w, jnp.float32)
  taus = jnp.linspace(0.0, 2.0, args.taus)
  hi = jax.lax.Precision.HIGHEST  # as in ltjax.models.heads (a no-op for f32 on CPU)

  @jax.jit
  def naive_step(x, w, tau):
    return jnp.argmax(jnp.matmul(x, tau_normalize(w, tau).T, precision=hi), -1).astype(jnp.int32)

  def naive(x, w, taus):
    return jnp.stack([naive_step(x, w, tau) for tau in taus]).block_until_ready()

  def sweep(x, w, taus):
    return tau_sweep_predictions(x, w, taus, taus_per_step=args.taus_per_step).block_until_ready()

  bare = jax.jit(lambda x, w: jnp.matmul(x, w.T, precision=hi))

  def matmul(x, w, taus):
    del taus
    return bare(x, w).block_until_ready()

  contenders = {"sweep": sweep, "naive": naive, "matmul": matmul}
  outputs = {name: fn(x, w, taus) for name, fn in contenders.items()}  # compile + warm up
  for fn in contenders.values():
    fn(x, w, taus)
  agree = float(np.mean(np.asarray(outputs["sweep"]) == np.asarray(outputs["naive"])))

  times: dict[str, list[float]] = {name: [] for name in contenders}
  for _ in range(args.rounds):
    for name, fn in contenders.items():
      start = time.perf_counter()
      fn(x, w, taus)
      times[name].append(time.perf_counter() - start)
  med = {name: statistics.median(t) for name, t in times.items()}
  ratio = statistics.median(n / s for n, s in zip(times["naive"], times["sweep"], strict=True))

  t, n, d, k = args.taus, args.n, args.d, args.k
  cmd = " ".join(["python", "scripts/bench_tau_sweep.py", *map(shlex.quote, sys.argv[1:])])
  print(f"tau sweep, N={n:,} val features, D={d}, K={k}, T={t} taus in [0, 2], float32")
  print()
  print("| method | time (s) | vs (a) |")
  print("|---|---:|---:|")
  print(
    f"| (a) `tau_sweep_predictions`: 1 matmul + {t} column rescales + argmax "
    f"(taus_per_step={args.taus_per_step}) | {med['sweep']:.3f} | 1.0x |"
  )
  print(
    f"| (b) naive: {t} x (`tau_normalize` + matmul + argmax) | {med['naive']:.3f} | {ratio:.1f}x |"
  )
  print(f"| one bare matmul X W^T ({n}x{d} @ {d}x{k}), reference | {med['matmul']:.3f} | - |")
  print()
  print(
    f"Medians of {args.rounds} interleaved rounds after compile + warm-up; (b)/(a) ratio is the "
    f"median of per-round ratios. Predictions agree on {agree:.4%} of the {t}x{n:,} entries."
  )
  print(
    f"jax {jax.__version__}, {jax.devices()[0].platform} ({os.cpu_count()} CPUs), "
    f"{platform.processor() or platform.machine()}, 1-min load average {load:.2f} at start."
  )
  print(f"Command: `{cmd}`")


if __name__ == "__main__":
  main()
