"""End-to-end training speed: ``ltjax train`` against the reference's PyTorch loop on the
same generated images (issue 35), and where ltjax's time goes.

Modes (``--mode``), each a generated, long-tailed 10-class tree of ``path label`` lists
(``train.txt``, 20 ``val`` and 50 ``test`` images per class):

* ``small`` (default, the issue's case): 2,238 28-px grayscale PNGs made from scikit-learn's
  digits (upscaled, shifted, noised); ``imagenet_lt/joint_instance.py`` with
  ``dataset.name=lists``, ResNet-10, 32 px RandomResizedCrop + flip + colour jitter,
  batch 128, lr 0.05, validation after every epoch (``best_val``), ``data.num_threads=2``.
* ``cifar``: 5,000 32-px colour PNGs; ``cifar10_lt/joint.py`` (pad-4 crop + flip on uint8
  arrays, ResNet-32, batch 128) with 1x1-conv shortcuts on both sides and validation after
  every epoch; PyTorch keeps the decoded images in memory as torchvision's ``CIFAR10``
  does, ltjax in its decode cache (``data.decode_cache_mb``).
* ``jpeg224``: 512 500x375 JPEGs (smooth content and noise, quality 90, as
  ``scripts/bench_pipeline.py``), the ``small`` recipe at 224 px (ImageNet-LT's sizes).

The PyTorch side is ``scripts/bench_small_images_torch.py`` (classifier-balancing's
``LT_Dataset`` + torchvision transforms, a ``DataLoader`` with 2 worker processes, the same
network from ``scripts/torch_resnet.py``), run by ``--torch_python`` (a Python with torch and
torchvision). Rounds alternate the two (ltjax, PyTorch, ltjax, ...), each a fresh process and
work directory, ``--epochs`` epochs then a test pass. Reported per framework, median over the
rounds: the wall time of the whole command (start-up and compilation included), the time of
an epoch after the first (training and validation), training images per second with and
without the validation passes, and the ratio ltjax / PyTorch. ltjax keeps compiled programs
in ``LTJAX_COMPILATION_CACHE`` (set by this script to a directory of its own, emptied before
round 1 with ``--cold``, so that round's wall time includes every compilation).

``--profile`` instead times ltjax's stages one by one in this process on the same data:
read + decode, the augmentation, the whole batch (the stream), host -> device, the train
step (dispatch and compute apart), a validation pass, a checkpoint and a metrics row.

  python scripts/bench_small_images.py --torch_python /path/to/venv/bin/python [--rounds 5]
  python scripts/bench_small_images.py --mode cifar --torch_python ... [--epochs 3]
  python scripts/bench_small_images.py --mode jpeg224 --torch_python ... [--epochs 3]
  python scripts/bench_small_images.py --profile [--mode small]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

SCRIPTS = os.path.dirname(os.path.abspath(__file__))


def class_counts(total: int, classes: int = 10, ratio: float = 28.0) -> list[int]:
  """An exponential long tail over ``classes`` with head/tail ``ratio`` summing to ``total``."""
  shape = ratio ** (-np.arange(classes) / (classes - 1))
  counts = np.floor(shape / shape.sum() * total).astype(int)
  counts[0] += total - counts.sum()
  return counts.tolist()


def write_lists(root: str, wanted: dict[str, list[int]], image, ext: str) -> dict[str, int]:
  """Writes ``wanted[split][k]`` files ``split/k/NNNNN.ext`` (``image(k)`` gives each one's
  bytes) and a ``split.txt`` list of ``path label`` lines; returns the split sizes."""
  sizes = {}
  for split, counts in wanted.items():
    lines = []
    for k, n in enumerate(counts):
      os.makedirs(os.path.join(root, split, str(k)), exist_ok=True)
      for i in range(n):
        path = os.path.join(split, str(k), f"{i:05d}.{ext}")
        with open(os.path.join(root, path), "wb") as f:
          f.write(image(k))
        lines.append(f"{path} {k}\n")
    with open(os.path.join(root, f"{split}.txt"), "w") as f:
      f.writelines(lines)
    sizes[split] = len(lines)
  return sizes


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
  import io

  from PIL import Image

  out = io.BytesIO()
  Image.fromarray(array, mode).save(out, format="PNG")
  return out.getvalue()


def _digits():
  from sklearn.datasets import load_digits

  digits = load_digits()
  return digits.images, [np.flatnonzero(digits.target == k) for k in range(10)]


def make_dataset(root: str, total: int, size: int, seed: int = 0) -> dict[str, int]:
  """The PNG tree: digits upscaled to ``size - 6``, shifted on a ``size`` canvas, noised."""
  from PIL import Image

  images, by_class = _digits()
  rng = np.random.default_rng(seed)

  def image(k):
    digit = Image.fromarray((images[rng.choice(by_class[k])] * (255 / 16)).astype(np.uint8))
    big = np.asarray(digit.resize((size - 6, size - 6), Image.BILINEAR))
    canvas = np.zeros((size, size), np.float32)
    dy, dx = rng.integers(0, 7, 2)
    canvas[dy : dy + size - 6, dx : dx + size - 6] = big
    return _png(np.clip(canvas + rng.normal(0, 12, canvas.shape), 0, 255).astype(np.uint8), "L")

  wanted = {"train": class_counts(total), "val": [20] * 10, "test": [50] * 10}
  return write_lists(root, wanted, image, "png")


def make_cifar(root: str, total: int = 5000, seed: int = 0) -> dict[str, int]:
  """``total`` 32-px colour PNGs (digits upscaled, coloured per class, noised) as lists."""
  from PIL import Image

  images, by_class = _digits()
  rng = np.random.default_rng(seed)
  colours = rng.uniform(0.3, 1.0, (10, 3))

  def image(k):
    digit = Image.fromarray((images[rng.choice(by_class[k])] * 15).astype(np.uint8))
    grey = np.asarray(digit.resize((32, 32), Image.BILINEAR), np.float32)
    pixels = grey[..., None] * colours[k] + rng.normal(0, 10, (32, 32, 3))
    return _png(np.clip(pixels, 0, 255).astype(np.uint8))

  wanted = {"train": class_counts(total), "val": [20] * 10, "test": [50] * 10}
  return write_lists(root, wanted, image, "png")


def make_jpegs(root: str, total: int = 512, seed: int = 0) -> dict[str, int]:
  """``total`` ImageNet-sized JPEGs (``scripts/bench_pipeline.py``'s) as lists."""
  from bench_pipeline import encode, synthetic_image

  rng = np.random.default_rng(seed)
  wanted = {"train": class_counts(total, ratio=10.0), "val": [4] * 10, "test": [10] * 10}
  return write_lists(root, wanted, lambda k: encode(synthetic_image(rng)), "jpg")


_LISTS = [
  "--config.dataset.name=lists",
  "--config.dataset.train_list=train.txt",
  "--config.dataset.val_list=val.txt",
  "--config.dataset.test_list=test.txt",
  "--config.batch_size=128",
  "--config.eval.batch_size=128",
  "--config.data.num_threads=2",
  "--config.eval.many_threshold=100",
  "--config.eval.few_threshold=20",
]
#: mode -> (the ltjax config and its overrides, the PyTorch script's flags).
MODES = {
  "small": (
    [
      "--config=imagenet_lt/joint_instance.py",
      *_LISTS,
      "--config.model.backbone=resnet10",
      "--config.data.crop_size=32",
      "--config.optim.lr=0.05",
    ],
    ["--crop", "32", "--model", "resnet10", "--transform", "imagenet"],
  ),
  "cifar": (
    [
      "--config=cifar10_lt/joint.py",
      *_LISTS,
      "--config.model.cifar_shortcut=conv",
      "--config.eval_every_epochs=1",
      "--config.optim.warmup_epochs=0",
      "--config.dataset.longtail=none",
      "--config.dataset.val_per_class=0",
    ],
    [
      "--crop",
      "32",
      "--model",
      "cifar_resnet32",
      "--transform",
      "cifar",
      "--in_memory",
      "--lr",
      "0.1",
      "--wd",
      "2e-4",
    ],
  ),
  "jpeg224": (
    [
      "--config=imagenet_lt/joint_instance.py",
      *_LISTS,
      "--config.model.backbone=resnet10",
      "--config.data.crop_size=224",
      "--config.optim.lr=0.05",
    ],
    ["--crop", "224", "--model", "resnet10", "--transform", "imagenet"],
  ),
}
MAKERS = {
  "small": lambda root, args: make_dataset(root, args.train, args.size),
  "cifar": lambda root, args: make_cifar(root),
  "jpeg224": lambda root, args: make_jpegs(root),
}


def ltjax_args(mode: str, root: str, workdir: str, epochs: int) -> list[str]:
  config, _ = MODES[mode]
  return [
    "train",
    *config,
    f"--workdir={workdir}",
    f"--config.dataset.root={root}",
    f"--config.num_epochs={epochs}",
  ]


def _val_times_from_log(stderr: str) -> list[float]:
  """Seconds of the console's validation lines (``HH:MM:SS INFO step N val accuracy``): an
  ltjax from before metrics rows had a time (``--ltjax_path`` of an older commit)."""
  import re

  times = []
  for m in re.finditer(r"^(\d\d):(\d\d):(\d\d) INFO step \d+ val accuracy", stderr, re.M):
    h, mi, se = map(int, m.groups())
    times.append(3600 * h + 60 * mi + se)
  return [float(t) for t in times]


def run_ltjax(
  mode: str, root: str, epochs: int, extra: tuple[str, ...] = (), path: str | None = None
) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    workdir = os.path.join(tmp, "run")
    env = dict(os.environ, XLA_FLAGS="")
    if path:  # Another ltjax (e.g. a worktree of an older commit) ahead of the installed one.
      env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t0 = time.perf_counter()
    out = subprocess.run(
      [sys.executable, "-m", "ltjax.cli", *ltjax_args(mode, root, workdir, epochs), *extra],
      capture_output=True,
      text=True,
      env=env,
      cwd=tmp,  # `python -m` puts the working directory first on sys.path, before PYTHONPATH.
    )
    wall = time.perf_counter() - t0
    if out.returncode:
      raise SystemExit(f"ltjax failed:\n{out.stderr[-3000:]}")
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  # Epoch boundaries: the validation rows (one per epoch), timed by their "time" field.
  ends = [r["time"] for r in rows if r["split"] == "val" and "time" in r]
  if not ends:
    ends = _val_times_from_log(out.stderr)
  epoch_s = [b - a for a, b in zip(ends, ends[1:], strict=False)]
  return {"framework": "ltjax", "wall_s": wall, "epoch_s": epoch_s}


def _ltjax_location(path: str | None) -> str:
  """Where the rounds' ``ltjax`` is imported from, run as they run it."""
  env = dict(os.environ)
  if path:
    env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  with tempfile.TemporaryDirectory() as tmp:
    code = "import os, ltjax; print(os.path.dirname(ltjax.__file__))"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp, capture_output=True)
  return out.stdout.decode().strip()


def run_torch(mode: str, python: str, root: str, epochs: int) -> dict:
  script = os.path.join(SCRIPTS, "bench_small_images_torch.py")
  _, flags = MODES[mode]
  t0 = time.perf_counter()
  out = subprocess.run(
    [python, script, "--root", root, "--epochs", str(epochs), *flags],
    capture_output=True,
    text=True,
  )
  wall = time.perf_counter() - t0
  if out.returncode:
    raise SystemExit(f"the PyTorch loop failed:\n{out.stderr[-3000:]}")
  result = json.loads(out.stdout.strip().splitlines()[-1])
  result["wall_s"] = wall
  result["epoch_s"] = result["epoch_s"][1:]  # As ltjax's: the epochs after the first.
  return result


def summarize(runs: list[dict], n_train: int) -> dict:
  steady = [statistics.median(r["epoch_s"]) for r in runs]
  out = {
    "wall_s": statistics.median(r["wall_s"] for r in runs),
    "epoch_s": statistics.median(steady),
    "images_per_s": n_train / statistics.median(steady),
  }
  if all("train_s" in r for r in runs):
    out["train_only_images_per_s"] = statistics.median(
      n_train / statistics.median(r["train_s"][1:]) for r in runs
    )
  return out


def data_dir(args) -> str:
  root = args.data or os.path.join(tempfile.gettempdir(), f"ltjax-bench-{args.mode}")
  if not os.path.exists(os.path.join(root, "test.txt")):
    print(f"data: {root} {MAKERS[args.mode](root, args)}", flush=True)
  return root


def compare(args) -> None:
  root = data_dir(args)
  n_train = sum(1 for _ in open(os.path.join(root, "train.txt")))
  os.environ.setdefault("LTJAX_COMPILATION_CACHE", os.path.join(root, "..", "ltjax-bench-xla"))
  if args.cold:
    import shutil

    shutil.rmtree(os.environ["LTJAX_COMPILATION_CACHE"], ignore_errors=True)
  runs: dict[str, list] = {"ltjax": [], "pytorch": []}
  extra = tuple(args.ltjax_arg)
  print(f"ltjax: {_ltjax_location(args.ltjax_path)}", flush=True)
  for r in range(args.rounds):
    runs["ltjax"].append(run_ltjax(args.mode, root, args.epochs, extra, args.ltjax_path))
    line = f"round {r + 1}: ltjax {runs['ltjax'][-1]['wall_s']:.1f} s (epochs "
    line += ", ".join(f"{e:.2f}" for e in runs["ltjax"][-1]["epoch_s"]) + ")"
    if not args.ltjax_only:
      runs["pytorch"].append(run_torch(args.mode, args.torch_python, root, args.epochs))
      line += f", pytorch {runs['pytorch'][-1]['wall_s']:.1f} s (epochs "
      line += ", ".join(f"{e:.2f}" for e in runs["pytorch"][-1]["epoch_s"]) + ")"
    print(line, flush=True)
  table = {name: summarize(rs, n_train) for name, rs in runs.items() if rs}
  walls = {name: [round(r["wall_s"], 1) for r in rs] for name, rs in runs.items() if rs}
  print(json.dumps({"mode": args.mode, "rounds": args.rounds, "epochs": args.epochs, **table}))
  print(f"wall times (s), round by round: {walls}")
  if "pytorch" in table:
    ratio = table["ltjax"]["images_per_s"] / table["pytorch"]["images_per_s"]
    print(f"ltjax / pytorch, epochs after the first (training + validation): {ratio:.2f}x")


def _timed(fn, repeats: int) -> tuple[float, object]:
  """Median seconds of ``fn()`` over ``repeats`` calls, and its last result."""
  times, out = [], None
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), out


def profile(args) -> None:
  """Where one training step's time goes in ltjax, stage by stage, on this process's cores."""
  import jax

  import ltjax
  from ltjax import config as config_lib
  from ltjax import sharding
  from ltjax.evaluate import runner
  from ltjax.train import checkpoint as ckpt_lib
  from ltjax.train import experiment
  from ltjax.train.metric_writer import MetricWriter

  root = data_dir(args)
  args_ = ltjax_args(args.mode, root, "x", args.epochs)
  name = next(a for a in args_ if a.startswith("--config=")).split("=", 1)[1]
  c = config_lib.load_file(os.path.join(os.path.dirname(ltjax.__file__), "configs", name))
  for key, value in (a.split("=", 1) for a in args_ if a.startswith("--config.")):
    node = c
    *parents, leaf = key.removeprefix("--config.").split(".")
    for p in parents:
      node = node[p]
    old = node[leaf]
    node[leaf] = (
      value
      if isinstance(old, str)
      else (value == "True" if isinstance(old, bool) else type(old)(value))
    )
  exp, state = experiment.setup(c)
  stream = experiment.make_stream(exp)
  data = sharding.batch_sharding(exp.mesh)
  n, batch = len(exp.splits.train), c.batch_size
  idx = np.arange(batch) % n
  reps = 5
  rows = {}
  from ltjax.data import datasets

  with c.unlocked():
    c.data.decode_cache_mb = 0
  fresh = datasets.build_splits(c.dataset, exp.split_seed, c.data).train  # Decodes each time.
  rows["read + decode, every time (no decode cache)"], (images, _) = _timed(
    lambda: fresh.get_batch(idx), reps
  )
  exp.splits.train.get_batch(idx)
  rows["read, decode cache warm (epochs after the first)"], _ = _timed(
    lambda: exp.splits.train.get_batch(idx), reps
  )
  rows[f"augmentation ({c.data.augment}, host)"], _ = _timed(
    lambda: exp.augmentation(images, idx, 0), reps
  )
  stream_cold = experiment.make_stream(exp)
  stream_cold.source = fresh
  rows["whole batch (sampler, read, decode, augment, stack), no cache"], _ = _timed(
    lambda: stream_cold(0), reps
  )
  rows["whole batch, decode cache warm"], host = _timed(lambda: stream(0), reps)
  rows["host -> device (to_global)"], batch_arrays = _timed(
    lambda: jax.block_until_ready(sharding.to_global(host, data)), reps
  )
  state, m = exp.train_step(state, batch_arrays)  # Compiles.
  jax.block_until_ready(m)
  dispatch, compute = [], []
  for _ in range(reps):
    t0 = time.perf_counter()
    state, m = exp.train_step(state, batch_arrays)
    t1 = time.perf_counter()
    jax.block_until_ready((state, m))
    dispatch.append(t1 - t0)
    compute.append(time.perf_counter() - t0)
  rows["train step: dispatch (returns)"] = statistics.median(dispatch)
  rows["train step: dispatch + compute"] = statistics.median(compute)
  runner.evaluate_split(exp, state, exp.splits.val)  # Compiles.
  val_s, _ = _timed(lambda: runner.evaluate_split(exp, state, exp.splits.val), 3)
  with tempfile.TemporaryDirectory() as tmp:
    meta = experiment.run_metadata(exp)
    step = [0]

    def save():
      step[0] += 1
      ckpt = ckpt_lib.Checkpointer(os.path.join(tmp, "checkpoints"), 2)
      ckpt.save(step[0], state, {"next_index": step[0]}, meta)
      ckpt.close()

    ckpt_s, _ = _timed(save, 3)
    writer = MetricWriter(tmp)
    metric_s, _ = _timed(lambda: writer.write(1, "train", {"loss": 1.0}), 20)
    writer.close()
  steps_per_epoch = n / batch
  print(f"{n} training images, batch {batch}: {steps_per_epoch:.1f} steps per epoch; per step:")
  for name, t in rows.items():
    print(f"  {name:64s} {1000 * t:8.1f} ms   {batch / t:8.0f} img/s")
  print(
    f"  {'validation pass (' + str(len(exp.splits.val)) + ' images), per epoch':64s} "
    f"{1000 * val_s:8.1f} ms   = {1000 * val_s / steps_per_epoch:.1f} ms per step"
  )
  print(
    f"  {'checkpoint save (' + str(c.checkpoint_every_steps) + ' steps apart)':64s} "
    f"{1000 * ckpt_s:8.1f} ms"
  )
  print(f"  {'metrics row write':64s} {1000 * metric_s:8.3f} ms")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--torch_python", help="a Python with torch and torchvision")
  p.add_argument("--data", help="an existing (or to be made) data directory")
  p.add_argument("--train", type=int, default=2238)
  p.add_argument("--size", type=int, default=28)
  p.add_argument("--mode", choices=tuple(MODES), default="small")
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--profile", action="store_true")
  p.add_argument(
    "--ltjax_arg", action="append", default=[], help="an extra ltjax flag (repeatable)"
  )
  p.add_argument("--ltjax_only", action="store_true", help="time ltjax alone")
  p.add_argument("--cold", action="store_true", help="empty ltjax's compilation cache first")
  p.add_argument("--ltjax_path", help="run the ltjax found here (a checkout of another commit)")
  args = p.parse_args()
  if args.profile:
    profile(args)
    return
  if not args.torch_python and not args.ltjax_only:
    raise SystemExit("--torch_python is needed (a Python with torch and torchvision).")
  compare(args)


if __name__ == "__main__":
  sys.path.insert(0, SCRIPTS)
  main()
