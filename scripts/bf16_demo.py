"""The demo in float32 and in bfloat16 over seeds: accuracy of every method, wall time.

python scripts/bf16_demo.py [--seeds 0 1 2] [--workdir DIR]

bf16 is the computation dtype (``model.dtype``); parameters, optimizer state, centroids,
losses and metrics stay float32. Prints per-method few-shot and overall test accuracy
(percent) for each dtype and seed, the mean over seeds, and each run's wall time.
"""

import argparse
import logging
import os
import tempfile
import time

import numpy as np

from ltjax import demo


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--workdir", default=None, help="default: a temporary directory")
  args = parser.parse_args()
  logging.basicConfig(level=logging.WARNING)
  root = args.workdir or tempfile.mkdtemp(prefix="bf16_demo_")
  rows = {}
  for seed in args.seeds:
    for dtype in ("float32", "bfloat16"):  # Interleaved: the machine's load drifts.
      t0 = time.perf_counter()
      results = demo.run(os.path.join(root, f"{dtype}_seed{seed}"), dtype=dtype, seed=seed)
      seconds = time.perf_counter() - t0
      rows[dtype, seed] = (results, seconds)
      print(f"{dtype} seed {seed}: {seconds:.0f} s", flush=True)
  methods = list(rows[next(iter(rows))][0])
  print(f"\n{'method':10s}" + "".join(f"{d + ' few/all':>22s}" for d in ("float32", "bfloat16")))
  for seed in [*args.seeds, "mean"]:
    print(f"-- seed {seed}")
    for m in methods:
      cells = []
      for dtype in ("float32", "bfloat16"):
        runs = [rows[dtype, s][0][m] for s in (args.seeds if seed == "mean" else [seed])]
        few = 100 * np.mean([r["few"] for r in runs])
        acc = 100 * np.mean([r["all"] for r in runs])
        cells.append(f"{few:10.1f} /{acc:6.1f}")
      print(f"{m:10s}" + "".join(f"{c:>22s}" for c in cells))
  for dtype in ("float32", "bfloat16"):
    times = [rows[dtype, s][1] for s in args.seeds]
    print(f"{dtype}: median wall time {np.median(times):.0f} s per demo")


if __name__ == "__main__":
  main()
