"""One-call check of ltjax on an accelerator: versions, train-step speed against PyTorch,
and the demo; writes ``device_check.json`` under ``--out``.

Run by ``scripts/device_check.sh`` (which installs the missing packages from a folder of
wheels and runs the ``accelerator`` tests first); it also runs on a CPU-only machine, where
``--quick`` keeps it short and the figures are CPU figures.

What it measures, for ResNet-10 and ResNeXt-50 at 224 px, in float32 and bfloat16:
* ltjax: the production train step (``ltjax.train.experiment.setup``: SGD momentum, BatchNorm,
  uint8 input normalised on the device, the state donated), compile time, median step time
  over rounds, images/s, XLA's memory analysis;
* PyTorch, the same model (``scripts/torch_resnet.py``), channels-last, in float32 and with
  autocast (AMP, bfloat16), same batch and optimiser;
each pair timed in alternating rounds, so a noisy neighbour slows both alike.

Examples::

  python scripts/device_check.py --out /tmp/check              # an accelerator machine
  python scripts/device_check.py --out /tmp/check --quick      # a CPU dry run (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True, help="directory for device_check.json")
  p.add_argument("--quick", action="store_true", help="tiny batches and few steps (CPU)")
  p.add_argument("--batch", type=int, default=0, help="global batch (default: 128, quick: 8)")
  p.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 5, quick: 1)")
  p.add_argument("--steps", type=int, default=0, help="steps per round (default: 10, quick: 1)")
  p.add_argument("--backbones", default="resnet10,resnext50_32x4d")
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--no_demo", action="store_true")
  p.add_argument("--no_torch", action="store_true")
  return p.parse_args(argv)


def versions() -> dict:
  import jax

  out = {"python": platform.python_version(), "machine": platform.machine()}
  for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "grain", "torch", "numpy"):
    try:
      module = __import__(name, fromlist=["__version__"])
      out[name] = getattr(module, "__version__", "?")
    except Exception as e:  # A missing package is a finding, not a crash.
      out[name] = f"missing ({type(e).__name__})"
  devices = jax.devices()
  out["backend"] = jax.default_backend()
  out["devices"] = [f"{d.platform}:{d.device_kind}" for d in devices]
  try:
    import torch

    out["torch_cuda"] = torch.cuda.is_available()
    if torch.cuda.is_available():
      out["torch_device"] = torch.cuda.get_device_name(0)
  except Exception:
    out["torch_cuda"] = False
  return out


class JaxStep:
  """ltjax's compiled production train step on synthetic data, on the default backend."""

  def __init__(self, backbone: str, dtype: str, batch: int, size: int, num_classes: int):
    import jax
    import numpy as np

    from ltjax import sharding
    from ltjax.config import base_config
    from ltjax.data.datasets import DataSplits
    from ltjax.data.sources import ArraySource
    from ltjax.train import experiment

    rng = np.random.default_rng(0)
    n = max(2 * batch, num_classes)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    source = ArraySource(images, np.arange(n) % num_classes, num_classes)
    splits = DataSplits(train=source, val=source, test=source, num_classes=num_classes)
    c = base_config()
    c.model.backbone, c.model.dtype = backbone, dtype
    c.batch_size = c.eval.batch_size = batch
    c.num_devices, c.num_epochs = 1, 1
    # The same optimiser as TorchStep: a constant rate, so the loss after the timed steps says
    # both trained (a one-epoch cosine would reach 0 after the first two steps).
    c.optim.schedule, c.optim.lr, c.optim.weight_decay = "constant", 0.1, 5e-4
    exp, self.state = experiment.setup(c, splits)
    local = {"image": images[:batch], "label": (np.arange(batch) % num_classes).astype(np.int32)}
    self.batch = sharding.to_global(local, sharding.batch_sharding(exp.mesh))
    t0 = time.perf_counter()
    self.compiled = exp.train_step.lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - t0
    self._jax = jax
    self.run(2)

  def run(self, n: int) -> float:
    t0 = time.perf_counter()
    metrics = None
    for _ in range(n):
      self.state, metrics = self.compiled(self.state, self.batch)
    self._jax.block_until_ready((self.state, metrics))
    self.loss = float(metrics["loss"])
    return time.perf_counter() - t0

  def memory(self) -> dict:
    m = self.compiled.memory_analysis()
    names = ("argument", "output", "temp", "alias", "generated_code")
    return {k: int(getattr(m, f"{k}_size_in_bytes", 0) or 0) for k in names}


class TorchStep:
  """The same step in PyTorch (channels-last), float32 or autocast bfloat16 (AMP)."""

  def __init__(self, backbone: str, amp: bool, batch: int, size: int, num_classes: int):
    import torch

    sys.path.insert(0, _HERE)
    import torch_resnet

    self.torch = torch
    self.device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    fmt = torch.channels_last
    self.model = torch_resnet.build(backbone, num_classes).to(self.device, memory_format=fmt)
    self.model.train()
    self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    self.images = images.to(self.device).contiguous(memory_format=fmt)
    self.labels = torch.randint(0, num_classes, (batch,), generator=g).to(self.device)
    self.mean = torch.tensor([0.485, 0.456, 0.406], device=self.device).view(1, 3, 1, 1)
    self.std = torch.tensor([0.229, 0.224, 0.225], device=self.device).view(1, 3, 1, 1)
    self.amp = amp
    self.run(2)

  def run(self, n: int) -> float:
    torch = self.torch
    if self.device == "cuda":
      torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
      x = (self.images.float() / 255.0 - self.mean) / self.std
      self.opt.zero_grad(set_to_none=True)
      with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.amp):
        logits = self.model(x)
      loss = torch.nn.functional.cross_entropy(logits.float(), self.labels)
      loss.backward()
      self.opt.step()
    if self.device == "cuda":
      torch.cuda.synchronize()
    self.loss = float(loss.detach())
    return time.perf_counter() - t0


def bench(args, backbone: str, dtype: str) -> dict:
  size, classes = 224, 1000
  out = {"backbone": backbone, "dtype": dtype, "batch": args.batch, "image_size": size}
  jstep = JaxStep(backbone, dtype, args.batch, size, classes)
  out["ltjax_compile_s"] = jstep.compile_s
  out["ltjax_memory_bytes"] = jstep.memory()
  contenders = {"ltjax": jstep}
  if not args.no_torch:
    name = "torch_amp_bf16" if dtype == "bfloat16" else "torch_fp32"
    contenders[name] = TorchStep(backbone, dtype == "bfloat16", args.batch, size, classes)
  times = {k: [] for k in contenders}
  for _ in range(args.rounds):
    for name, c in contenders.items():
      times[name].append(c.run(args.steps) / args.steps)
  for name, ts in times.items():
    out[f"{name}_step_s"] = statistics.median(ts)
    out[f"{name}_images_per_s"] = args.batch / statistics.median(ts)
    out[f"{name}_loss"] = contenders[name].loss
  if len(contenders) == 2:
    other = next(k for k in contenders if k != "ltjax")
    ratios = [t / j for j, t in zip(times["ltjax"], times[other], strict=True)]
    out["ltjax_speed_vs_torch"] = statistics.median(ratios)  # > 1: ltjax is faster.
  return out


def demo(args) -> dict:
  # Outside --out: the caller may fetch --out whole, and a run has hundreds of files.
  workdir = os.path.join(tempfile.mkdtemp(prefix="ltjax_device_check_"), "demo")
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  t0 = time.perf_counter()
  proc = subprocess.run(
    [sys.executable, "-m", "ltjax.cli", "demo", f"--workdir={workdir}"],
    capture_output=True,
    text=True,
    env=env,
    cwd=_REPO,
  )
  out = {"returncode": proc.returncode, "seconds": time.perf_counter() - t0}
  out["table"] = proc.stdout.strip().splitlines()[-8:]
  if proc.returncode:
    out["stderr_tail"] = proc.stderr.strip().splitlines()[-20:]
  results = os.path.join(workdir, "results.json")
  if os.path.exists(results):
    with open(results) as f:
      out["results"] = json.load(f)
  return out


def main(argv=None) -> int:
  args = parse_args(argv)
  args.batch = args.batch or (8 if args.quick else 128)
  args.rounds = args.rounds or (1 if args.quick else 5)
  args.steps = args.steps or (1 if args.quick else 10)
  os.makedirs(args.out, exist_ok=True)
  report: dict = {"args": vars(args), "errors": {}}
  path = os.path.join(args.out, "device_check.json")

  def save():
    with open(path, "w") as f:
      json.dump(report, f, indent=2, sort_keys=True, default=str)

  def attempt(name, fn, *fn_args):
    t0 = time.perf_counter()
    print(f"== {name}", flush=True)
    try:
      result = fn(*fn_args)
      print(json.dumps(result, indent=1, default=str)[:2000], flush=True)
      return result
    except Exception:  # One failing part must not cost the others' figures.
      report["errors"][name] = traceback.format_exc()[-4000:]
      print(report["errors"][name], flush=True)
      return None
    finally:
      print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
      save()

  report["versions"] = attempt("versions", versions)
  report["bench"] = []
  for backbone in args.backbones.split(","):
    for dtype in args.dtypes.split(","):
      result = attempt(f"bench {backbone} {dtype}", bench, args, backbone, dtype)
      if result:
        report["bench"].append(result)
  if not args.no_demo:
    report["demo"] = attempt("demo", demo, args)
  save()
  print(f"wrote {path}")
  return 1 if report["errors"] else 0


if __name__ == "__main__":
  sys.exit(main())
