"""Per-device memory of the compiled train step of every reference config (a memory plan):
the table of BENCHMARKS.md. For one config of your own (any dataset, --config.x overrides)
use `ltjax plan --config=FILE` (ltjax/train/memory_plan.py is the code of both).

For each config, the production train step (``ltjax.train.experiment.abstract_setup``: no data
read, no array allocated) is compiled for a mesh of ``--devices`` devices at the config's
global batch, and XLA's memory analysis gives, per device: the arguments (the replicated
train state and the device's slice of the batch), the outputs not aliased to them, and the
temporaries (activations kept for the backward pass, gradients, workspace). Their sum is
what the device must hold for the step.

On a CPU-only machine the devices are simulated (``--xla_force_host_platform_device_count``)
and the figures are XLA:CPU's, with the GPU/TPU gradients (``cpu_kernels.native_gradients``:
ltjax's CPU-only kernels would add their own buffers): an estimate of what XLA:GPU / XLA:TPU
allocate, whose fusion and layout choices differ. On an accelerator, the figures are that
compiler's own.

  python scripts/memory_plan.py --devices 8                  # every reference config
  python scripts/memory_plan.py --devices 8 --configs imagenet_lt/joint_instance.py
  python scripts/memory_plan.py --devices 1 --fit 80 --configs imagenet_lt/joint_instance.py
"""

from __future__ import annotations

import argparse
import glob
import json
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
REFERENCE_DIRS = ("imagenet_lt", "places_lt", "inat2018")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--devices", type=int, default=8, help="devices of the mesh compiled for")
  p.add_argument(
    "--split_over",
    type=int,
    default=0,
    help="devices the config's global batch is meant for (default --devices): the per-device "
    "batch is batch_size / split_over, e.g. --devices 1 --split_over 8 on one GPU gives "
    "the per-GPU figures of an 8-GPU run",
  )
  p.add_argument("--configs", default="", help="comma-separated paths under configs/")
  p.add_argument("--dtype", default="", help="override model.dtype (float32, bfloat16)")
  p.add_argument("--fit", type=float, default=0, help="also the largest per-device batch in GB")
  p.add_argument("--json_out", default="")
  return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={ARGS.devices}"
  ).strip()

import jax  # noqa: E402

from ltjax import config as config_lib  # noqa: E402
from ltjax.train.memory_plan import GB, largest_batch, plan  # noqa: E402


def main(args) -> None:
  if args.configs:
    paths = [os.path.join(_REPO, "ltjax", "configs", p) for p in args.configs.split(",")]
  else:
    paths = sorted(
      p
      for d in REFERENCE_DIRS
      for p in glob.glob(os.path.join(_REPO, "ltjax", "configs", d, "*.py"))
    )
  platform = jax.devices()[0].platform
  rows = []
  header = (
    "| config | backbone | dtype | global batch | per device | params (M) | arguments (GB) "
    "| temporaries (GB) | total (GB) |"
  )
  split = args.split_over or args.devices
  print(
    f"{args.devices} of {len(jax.devices())} {platform} devices, global batches split over "
    f"{split}: per-device figures of the compiled train step"
  )
  print(header)
  print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
  seen: dict = {}  # Configs whose train steps are the same (samplers aside) compile once.
  for path in paths:
    config = config_lib.load_file(path)
    if args.dtype:
      config.model.dtype = args.dtype
    name = os.path.relpath(path, os.path.join(_REPO, "ltjax", "configs"))
    split = args.split_over or args.devices
    global_batch = config.batch_size
    config.batch_size = global_batch // split * args.devices
    signature = json.dumps(
      [
        config.stage,
        config.dataset.name,
        config.batch_size,
        config.model.to_dict(),
        config.oltr.to_dict(),
        list(config.optim.freeze),
        config.data.crop_size,
      ],
      sort_keys=True,
      default=str,
    )
    if signature not in seen:
      seen[signature] = plan(config, args.devices)
    result = seen[signature]
    row = {
      "config": name,
      "backbone": config.model.backbone,
      "dtype": config.model.dtype,
      "batch": global_batch,
      "per_device": global_batch // split,
      **result,
    }
    if args.fit:
      row["largest_per_device_batch"] = largest_batch(config, args.devices, args.fit)
    rows.append(row)
    print(
      f"| {name} | {row['backbone']} | {row['dtype']} | {row['batch']} | {row['per_device']} "
      f"| {row['params'] / 1e6:.1f} | {row['argument'] / GB:.2f} | {row['temp'] / GB:.2f} "
      f"| {row['total'] / GB:.2f} |",
      flush=True,
    )
  if args.fit:
    for row in rows:
      print(
        f"{row['config']}: largest per-device batch within {args.fit:g} GB: "
        f"{row['largest_per_device_batch']}"
      )
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump({"platform": platform, "devices": args.devices, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  main(ARGS)
