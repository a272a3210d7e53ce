"""Throughput benchmark of ltjax's production train step, side by side with PyTorch.

Times the real jitted, state-donating ``train_step`` that ``ltjax.train.experiment.setup`` builds
(SGD momentum + weight decay, BatchNorm, uint8 -> normalised input on device) on synthetic
in-memory data, and an equivalent PyTorch model with the same batch, image size and
optimiser: the ResNets written out in ``scripts/torch_resnet.py``, the ViTs (``clip_*``,
``openclip_*``, ``vit_*``) the reference implementations themselves, open_clip's image tower
and timm's ViT (``scripts/torch_vit.py``). With ``--torch_compile`` the PyTorch model is
also timed ``torch.compile``d (default inductor backend; the first steps, untimed, compile
it), as one more contender; where compiling fails, the report says why and times nothing.
JAX and PyTorch are timed *interleaved* in one process: each round runs k JAX steps, then
k PyTorch steps (per contender), then a large matmul in each framework, so a noisy
neighbour slows every contender alike; the figures reported are medians over rounds and
the ltjax/torch ratio is the median of the per-round ratios.

Also reported: XLA's FLOP count of the compiled step and the achieved FLOP/s as a fraction
of a same-run 2048^3 f32 matmul; XLA's buffer sizes of the compiled step and the process
max RSS; optionally the input pipeline alone (``--pipeline``) and images/s over simulated
CPU devices (``--devices 1,2,4``, run in a child process that forces that many host
devices before importing jax).

Examples::

  python scripts/benchmark.py                       # resnet10, 112 px, batch 64, fp32
  python scripts/benchmark.py --pipeline --devices 1,2,4
  python scripts/benchmark.py --image_size 224 --batch 32 --rounds 5
  python scripts/benchmark.py --backbone clip_vit_b16 --image_size 224 --batch 8 --torch_compile
  python scripts/benchmark.py --backbone clip_vit_b16 --image_size 224 --batch 8 --peft adaptformer
  python scripts/benchmark.py --xla_flags=--xla_cpu_use_onednn=true
  python scripts/benchmark.py --malloc_hugepages   # GLIBC_TUNABLES=glibc.malloc.hugetlb=1
  python scripts/benchmark.py --malloc_reuse       # malloc keeps freed memory: no page faults
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import glibc_tunables  # scripts/, on sys.path when run as a script

_HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--backbone", default="resnet10")
  p.add_argument("--batch", type=int, default=64, help="global batch size")
  p.add_argument("--image_size", type=int, default=112)
  p.add_argument("--num_classes", type=int, default=1000)
  p.add_argument("--steps", type=int, default=5, help="timed steps per round")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  p.add_argument(
    "--peft",
    default="",
    help="a ViT's model.peft (LIFT's recipe: cosine head at scale 25 on the class token "
    "before CLIP's projection, logit-adjusted loss, SGD lr 0.01 over the tuned parameters "
    "and the head), against a PyTorch restatement of LIFT's own forward and optimizer "
    "(tests/interop/lift_reference.py)",
  )
  p.add_argument(
    "--devices", default="", help="comma-separated simulated CPU device counts, e.g. 1,2,4,8"
  )
  p.add_argument("--torch", dest="torch", action="store_true", default=True)
  p.add_argument("--no_torch", dest="torch", action="store_false")
  p.add_argument(
    "--torch_layout",
    choices=("", "nchw", "channels_last", "both"),
    default="",
    help="PyTorch memory format(s) to time; default: both for a ResNet, nchw for a ViT (whose "
    "only convolution is the patch embedding)",
  )
  p.add_argument(
    "--torch_compile",
    action="store_true",
    help="also time the PyTorch model torch.compile'd (per layout); reported as not run, with "
    "the reason, where compiling fails",
  )
  p.add_argument("--torch_threads", type=int, default=2)
  p.add_argument("--pipeline", action="store_true", help="also time the input pipeline alone")
  p.add_argument("--pipeline_batches", type=int, default=20)
  p.add_argument("--no_donate", action="store_true", help="re-jit the step without donation")
  p.add_argument("--matmul_n", type=int, default=2048)
  p.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS before jax starts")
  p.add_argument(
    "--malloc_hugepages",
    action="store_true",
    help="re-run with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (transparent huge pages for "
    "malloc's large blocks: XLA's per-step temp buffer and PyTorch's tensors)",
  )
  p.add_argument(
    "--malloc_reuse",
    action="store_true",
    help=f"re-run with GLIBC_TUNABLES={glibc_tunables.REUSE} (one malloc arena, no mmap, no "
    "trimming: freed memory is reused, so buffers are not page-faulted afresh every step; "
    "applies to JAX and PyTorch alike)",
  )
  p.add_argument("--json_out", default="", help="also write the results here as JSON")
  p.add_argument("--_scaling_worker", action="store_true", help=argparse.SUPPRESS)
  return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.malloc_hugepages:
  glibc_tunables.reexec_with(glibc_tunables.HUGEPAGES)
if ARGS is not None and ARGS.malloc_reuse:
  glibc_tunables.reexec_with(glibc_tunables.REUSE)
_USER_XLA_FLAGS = os.environ.get("XLA_FLAGS")
if ARGS is not None:
  _flags = [os.environ.get("XLA_FLAGS", ""), ARGS.xla_flags]
  if ARGS._scaling_worker:
    counts = [int(d) for d in ARGS.devices.split(",") if d]
    _flags.append(f"--xla_force_host_platform_device_count={max(counts)}")
  os.environ["XLA_FLAGS"] = " ".join(f for f in _flags if f).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ltjax import sharding  # noqa: E402
from ltjax.config import base_config  # noqa: E402
from ltjax.data import pipeline, samplers  # noqa: E402
from ltjax.data.datasets import DataSplits  # noqa: E402
from ltjax.data.pp import augment  # noqa: E402
from ltjax.data.sources import ArraySource  # noqa: E402
from ltjax.models.vit import VIT_CONFIGS  # noqa: E402
from ltjax.train import experiment, optim  # noqa: E402

# ------------------------------------------------------------------------------------------
# Setup.


def check_args(args) -> None:
  """SystemExit for a ViT input whose side is not a multiple of its patch (ltjax's patch
  convolution would drop the remainder without a word)."""
  if args.backbone in VIT_CONFIGS:
    patch = VIT_CONFIGS[args.backbone]["patch_size"]
    if args.image_size % patch:
      raise SystemExit(
        f"--image_size {args.image_size}: {args.backbone} takes {patch} px patches; use a "
        f"multiple of {patch} (224 for the B/16 and L/16 towers, 32 for the tiny ones)."
      )


def torch_layouts(args) -> list[str]:
  """The PyTorch memory formats to time: ``--torch_layout``, or its backbone's default."""
  layout = args.torch_layout or ("nchw" if args.backbone in VIT_CONFIGS else "both")
  return ["nchw", "channels_last"] if layout == "both" else [layout]


def synthetic_source(n: int, size: int, num_classes: int, seed: int = 0) -> ArraySource:
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
  return ArraySource(images, np.arange(n) % num_classes, num_classes)


def synthetic_splits(args) -> DataSplits:
  n = max(2 * args.batch, args.num_classes)
  train = synthetic_source(n, args.image_size, args.num_classes)
  small = synthetic_source(args.batch, args.image_size, args.num_classes, seed=1)
  return DataSplits(train=train, val=small, test=small, num_classes=args.num_classes)


def make_config(args, num_devices: int):
  c = base_config()
  c.model.backbone = args.backbone
  c.model.dtype = args.dtype
  c.batch_size = args.batch
  c.eval.batch_size = args.batch
  c.num_devices = num_devices
  c.num_epochs = 1
  if args.peft:  # LIFT's recipe (ltjax.config.recipes.lift) on the benchmark's data.
    c.model.peft, c.model.head, c.model.head_scale = args.peft, "cosine", 25.0
    if args.backbone.startswith(("clip_", "openclip_")):
      c.model.clip_projection = False
    c.loss.name, c.optim.lr = "logit_adjusted", 0.01
  return c


class JaxStep:
  """ltjax's compiled production train step with its state and one device batch."""

  def __init__(self, args, splits: DataSplits, num_devices: int):
    config = make_config(args, num_devices)
    t0 = time.perf_counter()
    exp, self.state = experiment.setup(config, splits)
    self.mesh_size = exp.mesh.size
    self.num_params = sum(x.size for x in jax.tree.leaves(self.state.params))
    fn = exp.train_step
    if args.no_donate:
      repl = sharding.replicated(exp.mesh)
      fn = jax.jit(
        experiment.train_step_fn(exp, optim.frozen_mask(exp.freeze)),
        in_shardings=(exp.state_sharding, sharding.batch_sharding(exp.mesh)),
        out_shardings=(exp.state_sharding, repl),
      )
    images, labels = splits.train.get_batch(np.arange(args.batch))
    local = {"image": images, "label": labels.astype(np.int32)}
    self.batch = sharding.to_global(local, sharding.batch_sharding(exp.mesh))
    t1 = time.perf_counter()
    self.compiled = fn.lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - t1
    self.setup_s = t1 - t0
    self.run(args.warmup)

  def run(self, n: int) -> float:
    """Runs ``n`` steps, blocking only at the end; returns the wall time."""
    t0 = time.perf_counter()
    metrics = None
    for _ in range(n):
      self.state, metrics = self.compiled(self.state, self.batch)
    jax.block_until_ready((self.state, metrics))
    return time.perf_counter() - t0

  def flops(self) -> float:
    cost = self.compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # Older jax: one dict per computation.
      cost = cost[0]
    return float(cost.get("flops", float("nan")))

  def memory(self) -> dict:
    m = self.compiled.memory_analysis()
    names = ("argument", "output", "temp", "alias", "generated_code")
    out = {k: int(getattr(m, f"{k}_size_in_bytes", 0) or 0) for k in names}
    out["peak_reported"] = int(getattr(m, "peak_memory_in_bytes", 0) or 0)
    return out


class JaxMatmul:
  def __init__(self, n: int):
    self.n = n
    k1, k2 = jax.random.split(jax.random.key(0))
    self.a = jax.random.normal(k1, (n, n), jnp.float32)
    self.b = jax.random.normal(k2, (n, n), jnp.float32)
    self.f = jax.jit(jnp.matmul).lower(self.a, self.b).compile()
    self.run(1)

  def run(self, reps: int) -> float:
    t0 = time.perf_counter()
    out = None
    for _ in range(reps):
      out = self.f(self.a, self.b)
    jax.block_until_ready(out)
    return time.perf_counter() - t0


def torch_model(args):
  """The PyTorch twin of ``args.backbone`` with a linear head (float32, train mode)."""
  sys.path.insert(0, _HERE)
  if args.backbone in VIT_CONFIGS:
    import torch_vit

    return torch_vit.build(args.backbone, args.num_classes, args.image_size)
  import torch_resnet

  return torch_resnet.build(args.backbone, args.num_classes)


def lift_step(args):
  """LIFT's model and optimizer for ``--peft``: ``(PeftViT, {"modules": (tuner, head),
  "loss", "counts"}, SGD over the tuner and head)``, from the PyTorch restatement of LIFT's
  code the tests check ltjax against (tests/interop/lift_reference.py): its own forward
  (``Peft_ViT``: the blocks by hand, ``F.scaled_dot_product_attention``), its tuner modules,
  cosine head (scale 25) and logit-adjusted loss, the tower without gradient."""
  import torch

  sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "tests", "interop"))
  import lift_reference as lift

  cfg = VIT_CONFIGS[args.backbone]
  tower = lift.tower(cfg, args.image_size // cfg["patch_size"])
  model = lift.PeftViT(tower)
  tuner = lift.ViTTuner(args.peft, tower, args.num_classes)
  head = lift.CosineClassifier(cfg["width"], args.num_classes, scale=25.0)
  holder = torch.nn.ModuleDict({"model": model, "tuner": tuner, "head": head})
  opt = lift.sgd(holder, tuner, head, 0.01, 0.9, 5e-4)
  counts = [args.num_classes - k for k in range(args.num_classes)]  # Any long tail.
  extra = {"modules": (tuner, head), "loss": lift.logit_adjusted_loss, "counts": counts}
  return model, extra, opt


class TorchStep:
  """The PyTorch twin of the step: uint8 -> normalise, forward, CE, backward, SGD.

  With ``compile_model=True`` the model (forward and, through AOTAutograd, backward) is
  ``torch.compile``d; the normalisation, loss and optimiser stay eager, as they are for
  the eager model. Compiling happens in the untimed warm-up steps (at least one): any
  failure raises from the constructor.
  """

  def __init__(self, args, layout: str, compile_model: bool = False):
    import torch

    self.torch = torch
    torch.manual_seed(0)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    self.lift = None
    if args.peft:
      self.model, self.lift, self.opt = lift_step(args)
    else:
      self.model = torch_model(args).to(memory_format=fmt)
      self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    self.model.train()
    modules = [self.model, *(self.lift["modules"] if self.lift else ())]
    unique = {id(p): p for m in modules for p in m.parameters()}  # A tuner may hold the tower's.
    self.num_params = sum(p.numel() for p in unique.values())
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.image_size, args.image_size)
    self.images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g).contiguous(
      memory_format=fmt
    )
    self.labels = torch.randint(0, args.num_classes, (args.batch,), generator=g)
    cfg = base_config().dataset
    self.mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    self.std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    self.bf16 = args.dtype == "bfloat16"
    self.is_compiled = compile_model
    self.warmup_s, self.graph_breaks, self.graphs = 0.0, 0, 0
    if compile_model:
      from torch._dynamo.utils import counters

      breaks0 = sum(counters["graph_break"].values())
      graphs0 = counters["stats"]["unique_graphs"]
      self.model = torch.compile(self.model)
      self.warmup_s = self.run(max(args.warmup, 1))
      self.graph_breaks = sum(counters["graph_break"].values()) - breaks0
      self.graphs = counters["stats"]["unique_graphs"] - graphs0
    else:
      self.run(args.warmup)

  def step(self):
    torch = self.torch
    x = (self.images.float() / 255.0 - self.mean) / self.std
    self.opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
      logits = self.model(x) if self.lift is None else self.model(x, *self.lift["modules"])
    if self.lift is None:
      loss = torch.nn.functional.cross_entropy(logits.float(), self.labels)
    else:
      loss = self.lift["loss"](logits.float(), self.labels, self.lift["counts"])
    loss.backward()
    self.opt.step()
    return loss.detach(), (logits.argmax(-1) == self.labels).float().mean()

  def run(self, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
      loss, _ = self.step()
    float(loss)  # PyTorch CPU is synchronous; this is just a use of the result.
    return time.perf_counter() - t0


class TorchMatmul:
  def __init__(self, n: int):
    import torch

    g = torch.Generator().manual_seed(0)
    self.a = torch.randn(n, n, generator=g)
    self.b = torch.randn(n, n, generator=g)
    self.torch = torch
    self.run(1)

  def run(self, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
      self.torch.mm(self.a, self.b)
    return time.perf_counter() - t0


def max_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux.


def minor_faults() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ------------------------------------------------------------------------------------------
# Measurements.


def interleaved(args) -> dict:
  """The main run: ltjax vs PyTorch (and matmul peaks), alternating rounds."""
  splits = synthetic_splits(args)
  jstep = JaxStep(args, splits, num_devices=1)
  rss_after_jax = max_rss_bytes()
  contenders = {"ltjax": jstep}
  not_run = {}
  if args.torch:
    import torch

    torch.set_num_threads(args.torch_threads)
    layouts = torch_layouts(args)
    for layout in layouts:
      contenders[f"torch_{layout}"] = TorchStep(args, layout)
    for layout in layouts if args.torch_compile else ():
      name = f"torch_compile_{layout}"
      try:
        contenders[name] = TorchStep(args, layout, compile_model=True)
      except Exception as e:  # Whatever stops compiling (no compiler, inductor): say so.
        lines = str(e).strip().splitlines()
        reason = f"{type(e).__name__}: {lines[0] if lines else ''}"
        not_run[name] = reason
        print(f"{name}: torch.compile failed, not timed: {reason}", file=sys.stderr)
  mm_reps = 3
  matmuls = {"jax_matmul": JaxMatmul(args.matmul_n)}
  if args.torch:
    matmuls["torch_matmul"] = TorchMatmul(args.matmul_n)

  times = {k: [] for k in [*contenders, *matmuls]}
  faults = {k: [] for k in contenders}
  for _ in range(args.rounds):
    for name, c in contenders.items():
      f0 = minor_faults()
      times[name].append(c.run(args.steps))
      faults[name].append((minor_faults() - f0) / args.steps)
    for name, m in matmuls.items():
      times[name].append(m.run(mm_reps))

  res = {"step_s": {}, "images_per_s": {}, "ratio": {}, "matmul_gflops": {}}
  res["page_faults_per_step"] = {k: statistics.median(v) for k, v in faults.items()}
  for name in contenders:
    per_step = [t / args.steps for t in times[name]]
    res["step_s"][name] = statistics.median(per_step)
    res["images_per_s"][name] = statistics.median(args.batch / s for s in per_step)
  for name in contenders:
    if name == "ltjax":
      continue
    r = [t / j for j, t in zip(times["ltjax"], times[name], strict=True)]
    res["ratio"][name] = {"median": statistics.median(r), "min": min(r), "max": max(r)}
  mm_flops = 2.0 * args.matmul_n**3
  for name in matmuls:
    res["matmul_gflops"][name] = (
      statistics.median(mm_reps * mm_flops / t for t in times[name]) / 1e9
    )
  flops = jstep.flops()
  step_s = res["step_s"]["ltjax"]
  res["flops_per_step"] = flops
  res["achieved_gflops"] = flops / step_s / 1e9
  res["fraction_of_matmul_peak"] = res["achieved_gflops"] / res["matmul_gflops"]["jax_matmul"]
  res["memory"] = jstep.memory()
  res["max_rss_after_jax"] = rss_after_jax
  res["max_rss_end"] = max_rss_bytes()
  res["compile_s"] = jstep.compile_s
  res["setup_s"] = jstep.setup_s
  res["params"] = {name: c.num_params for name, c in contenders.items()}
  res["torch_compile"] = {
    name: {"warmup_s": c.warmup_s, "graph_breaks": c.graph_breaks, "graphs": c.graphs}
    for name, c in contenders.items()
    if getattr(c, "is_compiled", False)
  }
  res["not_run"] = not_run
  res["rounds_s"] = times
  return res


def time_pipeline(args) -> dict:
  """Batches/s of TrainStream + train_iterator (crop_flip) over synthetic uint8 images."""
  config = make_config(args, 1)
  source = synthetic_source(
    max(4 * args.batch, args.num_classes), args.image_size, args.num_classes
  )
  stream = pipeline.TrainStream(
    source,
    sampler=samplers.get("instance")(),
    seed=0,
    global_batch=args.batch,
    augment=augment.CropFlip(pad=config.data.pad, flip=config.data.flip),
  )
  n, warm = args.pipeline_batches, 3
  out = {"num_threads": config.data.num_threads, "prefetch": config.data.prefetch}
  it = pipeline.train_iterator(
    stream, n + warm, num_threads=config.data.num_threads, prefetch=config.data.prefetch
  )
  for _ in range(warm):
    next(it)
  t0 = time.perf_counter()
  for _ in range(n):
    next(it)
  out["iterator_images_per_s"] = n * args.batch / (time.perf_counter() - t0)
  t0 = time.perf_counter()
  for step in range(n):
    stream(step)
  out["single_call_images_per_s"] = n * args.batch / (time.perf_counter() - t0)
  return out


def scaling_worker(args) -> dict:
  """Runs in a child process with max(--devices) forced host devices: rounds interleaved."""
  counts = [int(d) for d in args.devices.split(",") if d]
  splits = synthetic_splits(args)
  runs = {n: JaxStep(args, splits, num_devices=n) for n in counts}
  times = {n: [] for n in counts}
  for _ in range(args.rounds):
    for n, r in runs.items():
      times[n].append(r.run(args.steps))
  return {
    str(n): {
      "images_per_s": statistics.median(args.steps * args.batch / t for t in times[n]),
      "compile_s": runs[n].compile_s,
    }
    for n in counts
  }


def run_scaling(args) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), "--_scaling_worker", *sys.argv[1:]]
  env = dict(os.environ)
  env.pop("XLA_FLAGS")
  if _USER_XLA_FLAGS is not None:
    env["XLA_FLAGS"] = _USER_XLA_FLAGS
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
  if proc.returncode:
    sys.stderr.write(proc.stderr)
    raise RuntimeError(f"scaling worker failed with exit code {proc.returncode}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------
# Report.


def _mib(b: float) -> str:
  return f"{b / 2**20:,.0f} MiB"


def environment() -> dict:
  env = {
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jax_devices": f"{len(jax.devices())} x {jax.devices()[0].platform}",
    "cpu_count": os.cpu_count(),
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
    "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", ""),
  }
  try:
    with open("/proc/cpuinfo") as f:
      env["cpu"] = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
  except (OSError, StopIteration):
    env["cpu"] = platform.processor()
  return env


def report(args, env: dict, res: dict) -> str:
  lines = []
  add = lines.append
  peft = f", model.peft={args.peft} (LIFT)" if args.peft else ""
  size = f"{args.image_size} px, batch {args.batch}"
  add(f"## ltjax train-step benchmark: {args.backbone}{peft}, {size}")
  add("")
  add(
    f"{env['cpu']}, {env['cpu_count']} CPUs; jax {env['jax']} ({env['jax_devices']})"
    + (f", torch {env['torch']} ({args.torch_threads} threads)" if "torch" in env else "")
    + f"; dtype {args.dtype}; {args.rounds} rounds x {args.steps} steps, interleaved"
    + ("; no donation" if args.no_donate else "")
    + (f"; XLA_FLAGS=`{env['XLA_FLAGS']}`" if env["XLA_FLAGS"] else "")
    + (f"; GLIBC_TUNABLES=`{env['GLIBC_TUNABLES']}`" if env.get("GLIBC_TUNABLES") else "")
  )
  add("")
  if "main" in res:
    m = res["main"]
    add(
      "| contender | step (ms) | images/s | ltjax / this (median [min, max] of rounds) "
      "| page faults / step |"
    )
    add("|---|---:|---:|---:|---:|")
    for name, ips in m["images_per_s"].items():
      ratio = m["ratio"].get(name)
      rtxt = f"{ratio['median']:.2f} [{ratio['min']:.2f}, {ratio['max']:.2f}]" if ratio else ""
      add(
        f"| {name} | {1e3 * m['step_s'][name]:.0f} | {ips:.1f} | {rtxt} "
        f"| {m['page_faults_per_step'][name]:,.0f} |"
      )
    add("")
    mem = m["memory"]
    flops = m["flops_per_step"]
    mm = m["matmul_gflops"]
    add("| ltjax step figure | value |")
    add("|---|---:|")
    add(f"| FLOPs per step (XLA cost analysis) | {flops / 1e9:.1f} GFLOP |")
    add(f"| achieved | {m['achieved_gflops']:.1f} GFLOP/s |")
    add(f"| jax f32 matmul {args.matmul_n}^3 (same run) | {mm['jax_matmul']:.1f} GFLOP/s |")
    if "torch_matmul" in mm:
      add(f"| torch f32 matmul {args.matmul_n}^3 (same run) | {mm['torch_matmul']:.1f} GFLOP/s |")
    add(f"| achieved / jax matmul peak | {100 * m['fraction_of_matmul_peak']:.0f}% |")
    add(
      f"| XLA buffers: arguments + outputs + temps | "
      f"{_mib(mem['argument'] + mem['output'] + mem['temp'])} |"
    )
    add(
      f"| (arguments {_mib(mem['argument'])}, outputs {_mib(mem['output'])}, "
      f"temps {_mib(mem['temp'])}, aliased by donation {_mib(mem['alias'])}) | |"
    )
    add(
      f"| XLA live-buffer estimate: arguments + outputs + temps - aliased | "
      f"{_mib(mem['argument'] + mem['output'] + mem['temp'] - mem['alias'])} |"
    )
    add(f"| process max RSS after JAX compile + warmup | {_mib(m['max_rss_after_jax'])} |")
    add(f"| process max RSS at the end (JAX + PyTorch + data) | {_mib(m['max_rss_end'])} |")
    add(f"| compile time (excluded from timings) | {m['compile_s']:.1f} s |")
    params = ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in m["params"].items())
    add(f"| parameters (the same architecture: the same count) | {params} |")
    for name, tc in m["torch_compile"].items():
      add(
        f"| {name}: warm-up incl. compiling ({args.warmup or 1} steps, excluded) "
        f"| {tc['warmup_s']:.1f} s, {tc['graphs']} graphs, {tc['graph_breaks']} graph breaks |"
      )
    add("")
    for name, reason in m["not_run"].items():
      add(f"Not run: {name}, torch.compile failed: {reason}")
      add("")
  if "pipeline" in res:
    p = res["pipeline"]
    add(
      f"Input pipeline alone (TrainStream + train_iterator, crop_flip, "
      f"{p['num_threads']} threads, prefetch {p['prefetch']}): "
      f"**{p['iterator_images_per_s']:.0f} images/s**; "
      f"one `stream(step)` call at a time: {p['single_call_images_per_s']:.0f} images/s."
    )
    add("")
  if "scaling" in res:
    add(
      "Device-count scaling on *simulated* CPU devices (`--xla_force_host_platform_device_count`"
      "): they all share the same cores, so this measures the overhead of sharding the same "
      "global batch, not real scaling."
    )
    add("")
    add("| devices | per-device batch | images/s | vs 1 device |")
    add("|---:|---:|---:|---:|")
    base = res["scaling"].get("1", {}).get("images_per_s")
    for n, r in res["scaling"].items():
      rel = f"{r['images_per_s'] / base:.2f}" if base else ""
      add(f"| {n} | {args.batch // int(n)} | {r['images_per_s']:.1f} | {rel} |")
    add("")
  return "\n".join(lines)


def main(args) -> None:
  if args._scaling_worker:
    print(json.dumps(scaling_worker(args)))
    return
  check_args(args)
  env = environment()
  if args.torch:
    import torch

    env["torch"] = torch.__version__
  res = {"args": vars(args), "env": env}
  res["main"] = interleaved(args)
  if args.pipeline:
    res["pipeline"] = time_pipeline(args)
  if args.devices:
    res["scaling"] = run_scaling(args)
  print(report(args, env, res))
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump(res, f, indent=1)


if __name__ == "__main__":
  main(ARGS)
