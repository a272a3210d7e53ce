"""Input-pipeline throughput for ImageNet-style training, from an image tree and from
ArrayRecord shards, and the JPEG decoders compared.

Generates ``--images`` synthetic JPEGs of ImageNet's typical size (500x375, smooth content
plus noise, quality 90: ~50-100 kB each, like ImageNet's), a split list over them, and the
ArrayRecord shards ``ltjax prepare`` would write; then times ltjax's training stream
(``TrainStream``: sampler indices -> read -> JPEG decode -> RandomResizedCrop 224 + flip +
colour jitter -> batch) per batch of 64:

* one core: ``stream(step)`` called in the main thread, one batch at a time;
* the training iterator (grain, ``--threads`` threads, prefetch 4), as ``ltjax train``
  uses it;
* the stages of one image on one core: decode, crop + resize, flip + jitter;
* with ``--baseline OLD.py``, the same stream with another version of
  ``ltjax/data/pp/image_ops.py`` (its decode and augmentation), interleaved with this one.

Every figure is the median over ``--rounds`` rounds, the variants interleaved in each round.
Rates are given per wall-clock second and per CPU-second of this process (``process_time``):
on a shared machine the second is the robust measure of one core's throughput. With
``--decode_min_size 256`` JPEGs are decoded at reduced scale, the ``data.decode_min_size``
option.

``--decoders`` instead compares JPEG decoders (one core, from memory, to an RGB uint8
array) on the synthetic JPEGs and on 500x375 crops of scikit-learn's two sample photos
(re-encoded at quality 90): Pillow as ltjax used it (``convert("RGB")`` + ``np.array``),
Pillow's own decode, Pillow draft 1/2, simplejpeg (ltjax's decoder) full and at 1/2 and at
libjpeg's smallest n/8 scale >= 224, and, when installed, OpenCV (full, IMREAD_REDUCED_*)
and PyTurboJPEG (full, 1/2).

  python scripts/bench_pipeline.py [--images 512 --batches 8 --threads 2 --rounds 3]
  git show a1cdd52:ltjax/data/pp/image_ops.py > /tmp/old_image_ops.py
  python scripts/bench_pipeline.py --baseline /tmp/old_image_ops.py --batches 4 --rounds 9
  python scripts/bench_pipeline.py --decoders [--rounds 7]
  python scripts/bench_pipeline.py --device_augment [--batches 4 --rounds 9]

``--device_augment`` compares the host work of ``data.augment`` "imagenet_device" (decode,
crop box, crop copied into the 448x448 buffer; the resize, flip and jitter run in the train
step) with "imagenet" (all on the host) and "none" (read + decode alone), one thread,
interleaved, images per CPU-second, from both sources; then times the device half
(``device_ops.resize_flip_jitter``, jitted) on this machine's default jax device for a batch of 64.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import tempfile
import time

import numpy as np
import simplejpeg
from PIL import Image

from ltjax.data import pipeline, samplers
from ltjax.data.pp import augment, image_ops
from ltjax.data.pp.rng import record_uniforms
from ltjax.data.prepare import pack_split_list
from ltjax.data.sources import decode, splitlist
from ltjax.data.sources import packed as packed_lib
from ltjax.data.sources.packed import PackedSource
from ltjax.data.sources.splitlist import SplitListSource


def synthetic_image(rng: np.random.Generator) -> np.ndarray:
  yy, xx = np.mgrid[0:375, 0:500]
  phase = rng.uniform(0, 2 * np.pi, 3)
  freq = rng.uniform(0.005, 0.05, 3)
  base = 127 + 100 * np.sin(freq[:, None, None] * (xx + yy * 0.7)[None] + phase[:, None, None])
  image = np.clip(base.transpose(1, 2, 0) + rng.normal(0, 12, (375, 500, 3)), 0, 255)
  return image.astype(np.uint8)


def encode(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, "JPEG", quality=90)
  return buf.getvalue()


def make_tree(root: str, n: int, num_classes: int = 10) -> str:
  rng = np.random.default_rng(0)
  lines = []
  for i in range(n):
    rel = f"img/{i % num_classes}/{i}.jpg"
    os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
    with open(os.path.join(root, rel), "wb") as f:
      f.write(encode(synthetic_image(rng)))
    lines.append(f"{rel} {i % num_classes}")
  list_file = os.path.join(root, "train.txt")
  with open(list_file, "w") as f:
    f.write("\n".join(lines) + "\n")
  return list_file


def stream_for(source, batch: int, kind: str = "imagenet") -> pipeline.TrainStream:
  return pipeline.TrainStream(
    source,
    sampler=samplers.get("instance")(),
    seed=0,
    global_batch=batch,
    augment=augment.from_config({"augment": kind, "crop_size": 224}),
  )


def _rates(n: int, t0: tuple[float, float]) -> tuple[float, float]:
  """(images per wall-clock second, images per CPU-second of this process) since t0."""
  return n / (time.perf_counter() - t0[0]), n / (time.process_time() - t0[1])


def _now() -> tuple[float, float]:
  return time.perf_counter(), time.process_time()


def images_per_s_one_core(stream, batches: int, batch: int, first_step: int):
  t0 = _now()
  for step in range(first_step, first_step + batches):
    stream(step)
  return _rates(batches * batch, t0)


def images_per_s_iterator(stream, batches: int, batch: int, threads: int):
  it = pipeline.train_iterator(stream, batches + 2, num_threads=threads, prefetch=4)
  next(it)
  next(it)
  t0 = _now()
  for _ in range(batches):
    next(it)
  return _rates(batches * batch, t0)


def per_image_us(fn, n: int) -> float:
  """CPU microseconds per call of fn(i), i < n (CPU time: robust to a shared machine)."""
  t0 = time.process_time()
  for i in range(n):
    fn(i)
  return (time.process_time() - t0) / n * 1e6


def stage_functions(blobs: list[bytes], min_size: int | None) -> dict:
  """Per-image callables for each stage of the training transform, on record i."""
  u = record_uniforms(0, np.arange(len(blobs)), image_ops.IMAGENET_TRAIN_DRAWS)
  images = [decode.decode_image(b, min_size=min_size) for b in blobs]
  boxes = [
    image_ops.random_resized_crop_params(*im.shape[:2], row)
    for im, row in zip(images, u, strict=True)
  ]
  crops = [image_ops._crop_resize(im, box, 224) for im, box in zip(images, boxes, strict=True)]
  return {
    "decode": lambda i: decode.decode_image(blobs[i], min_size=min_size),
    "crop + resize": lambda i: image_ops._crop_resize(images[i], boxes[i], 224),
    "flip + jitter": lambda i: image_ops._flip_jitter(crops[i], u[i], 0.4),
    "decode + augment": lambda i: image_ops.imagenet_train(
      decode.decode_image(blobs[i], min_size=min_size), u[i]
    ),
  }


@contextlib.contextmanager
def image_ops_from(path: str | None):
  """Runs the stream with the decode and augmentation of another image_ops.py (a baseline,
  e.g. ``git show COMMIT:ltjax/data/pp/image_ops.py > old.py``; its decode_image if it has
  one, as before decoding moved to ltjax/data/sources/decode.py); None: the current one."""
  if path is None:
    yield
    return
  spec = importlib.util.spec_from_file_location("baseline_image_ops", path)
  old = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(old)
  current = (splitlist.decode_image, image_ops.imagenet_train_batch)
  decode_image = getattr(old, "decode_image", decode.decode_image)
  splitlist.decode_image = packed_lib.decode_image = decode_image
  image_ops.imagenet_train_batch = old.imagenet_train_batch
  try:
    yield
  finally:
    splitlist.decode_image = packed_lib.decode_image = current[0]
    image_ops.imagenet_train_batch = current[1]


def make_sources(tmp: str, images: int, min_size: int | None = None) -> tuple[str, dict]:
  """(tree root, {"image tree": source, "ArrayRecord": source}) over the same JPEGs."""
  root = os.path.join(tmp, "tree")
  list_file = make_tree(root, images)
  packed = os.path.join(tmp, "packed")
  pack_split_list(list_file, root, packed, "train", 10)
  return root, {
    "image tree": SplitListSource(list_file, root, 10, min_size=min_size),
    "ArrayRecord": PackedSource(packed, "train", 10, min_size=min_size),
  }


def run_pipeline(args) -> None:
  min_size = args.decode_min_size or None
  with tempfile.TemporaryDirectory() as tmp:
    root, sources = make_sources(tmp, args.images, min_size)
    paths = [os.path.join(root, p) for p in sources["image tree"].paths]
    blobs = []
    for path in paths[:100]:
      with open(path, "rb") as f:
        blobs.append(f.read())
    variants = {"current": None} | ({"baseline": args.baseline} if args.baseline else {})
    streams = {
      (variant, name): stream_for(source, args.batch)
      for variant in variants
      for name, source in sources.items()
    }
    for (variant, _), stream in streams.items():
      with image_ops_from(variants[variant]):
        stream(0)  # Warm-up.
    stages = stage_functions(blobs, min_size)
    one = {key: [] for key in streams}
    many = {key: [] for key in streams}
    stage_us = {name: [] for name in stages}
    for r in range(args.rounds):
      for (variant, name), stream in streams.items():
        with image_ops_from(variants[variant]):
          one[variant, name].append(
            images_per_s_one_core(stream, args.batches, args.batch, 1 + r * args.batches)
          )
          many[variant, name].append(
            images_per_s_iterator(stream, args.batches, args.batch, args.threads)
          )
      for name, fn in stages.items():
        stage_us[name].append(per_image_us(fn, len(blobs)))
    sizes = [os.path.getsize(p) for p in paths]
    print(
      f"{args.images} JPEGs 500x375 (mean {np.mean(sizes) / 1e3:.0f} kB), RandomResizedCrop 224 + "
      f"flip + jitter, batch {args.batch}, decode_min_size={args.decode_min_size}, "
      f"{os.cpu_count()} CPUs, medians of {args.rounds} rounds"
    )
    print(
      f"| image_ops, source | one thread: images/s, per CPU-s | iterator ({args.threads} "
      "threads): images/s, per CPU-s |"
    )
    print("|---|---:|---:|")
    for variant, name in streams:
      wall, cpu = np.median(one[variant, name], axis=0)
      wall_many, cpu_many = np.median(many[variant, name], axis=0)
      print(f"| {variant}, {name} | {wall:.0f}, {cpu:.0f} | {wall_many:.0f}, {cpu_many:.0f} |")
    if args.baseline:
      print("\nper-round ratios current / baseline, median [min, max] (one thread: per CPU-s):")
      for name in sources:
        for label, runs, col in (("one thread", one, 1), ("iterator", many, 0)):
          ratio = np.array(runs["current", name])[:, col] / np.array(runs["baseline", name])[:, col]
          print(f"  {name}, {label}: {np.median(ratio):.2f} [{ratio.min():.2f}, {ratio.max():.2f}]")
    print("\n| one image, one core (CPU time) | us | images/s |")
    print("|---|---:|---:|")
    for name, values in stage_us.items():
      us = float(np.median(values))
      print(f"| {name} | {us:.0f} | {1e6 / us:.0f} |")


def device_apply_seconds(batch: int, rounds: int) -> tuple[float, float]:
  """Median (wall, CPU) seconds of the jitted ``device_ops.resize_flip_jitter`` on a batch."""
  import jax

  from ltjax.data.pp import device_ops

  rng = np.random.default_rng(0)
  images = [synthetic_image(rng) for _ in range(batch)]
  prepared = device_ops.prepare_batch(images, np.arange(batch), 0, size=224)
  prepared = jax.device_put(prepared)
  fn = jax.jit(device_ops.resize_flip_jitter)
  fn(prepared).block_until_ready()
  times = []
  for _ in range(rounds):
    t0 = _now()
    fn(prepared).block_until_ready()
    times.append((time.perf_counter() - t0[0], time.process_time() - t0[1]))
  return tuple(np.median(times, axis=0))


def host_stage_us(rel_paths, root: str, rounds: int) -> dict[str, float]:
  """CPU microseconds per image of the host stages of imagenet_device, on one batch."""
  from ltjax.data.pp import device_ops

  blobs = []
  for rel in rel_paths:
    with open(os.path.join(root, rel), "rb") as f:
      blobs.append(f.read())
  images = [decode.decode_image(b) for b in blobs]
  positions = np.arange(len(images))
  fns = {
    "decode": lambda: [decode.decode_image(b) for b in blobs],
    "crop into the buffer (prepare_batch)": lambda: device_ops.prepare_batch(
      images, positions, 0, size=224
    ),
    "imagenet: crop + resize + flip + jitter": lambda: image_ops.imagenet_train_batch(
      images, positions, 0, size=224
    ),
  }
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      t0 = time.process_time()
      fn()
      times[name].append((time.process_time() - t0) / len(images) * 1e6)
  return {name: float(np.median(v)) for name, v in times.items()}


def run_device_augment(args) -> None:
  kinds = ("none", "imagenet", "imagenet_device")
  with tempfile.TemporaryDirectory() as tmp:
    root, sources = make_sources(tmp, args.images)
    streams = {
      (kind, name): stream_for(source, args.batch, kind)
      for name, source in sources.items()
      for kind in kinds
    }
    for stream in streams.values():
      stream(0)  # Warm-up.
    cpu = {key: [] for key in streams}
    for r in range(args.rounds):
      for key, stream in streams.items():
        first = 1 + r * args.batches
        cpu[key].append(images_per_s_one_core(stream, args.batches, args.batch, first)[1])
    wall_s, cpu_s = device_apply_seconds(args.batch, args.rounds)
    stage_us = host_stage_us(sources["image tree"].paths[: args.batch], root, args.rounds)
  print(
    f"{args.images} JPEGs 500x375, batch {args.batch}, one thread, images per CPU-second "
    f"(medians of {args.rounds} rounds, interleaved), {os.cpu_count()} CPUs"
  )
  print("| host work | " + " | ".join(sources) + " |")
  print("|---|" + "---:|" * len(sources))
  labels = {
    "none": "read + decode alone",
    "imagenet": "imagenet (decode + crop + resize + flip + jitter)",
    "imagenet_device": "imagenet_device (decode + crop into 448^2 buffer)",
  }
  for kind in kinds:
    row = " | ".join(f"{np.median(cpu[kind, name]):.0f}" for name in sources)
    print(f"| {labels[kind]} | {row} |")
  for name in sources:
    ratio = np.array(cpu["imagenet_device", name]) / np.array(cpu["imagenet", name])
    print(
      f"  {name}: imagenet_device / imagenet per round, median {np.median(ratio):.2f} "
      f"[{ratio.min():.2f}, {ratio.max():.2f}]"
    )
  print("| one image, host, CPU time | us |")
  print("|---|---:|")
  for name, us in stage_us.items():
    print(f"| {name} | {us:.0f} |")
  import jax

  print(
    f"device half (jitted device_ops.resize_flip_jitter, batch {args.batch}, 448 -> 224) on "
    f"{jax.devices()[0].platform}: {wall_s * 1e3:.0f} ms wall, {cpu_s * 1e3:.0f} ms CPU "
    f"({args.batch / wall_s:.0f} images/s wall)"
  )


# ----------------------------------------------------------------------------- decoders


def photo_crops(n: int) -> list[np.ndarray]:
  from sklearn.datasets import load_sample_images

  rng = np.random.default_rng(0)
  photos = load_sample_images().images
  crops = []
  for i in range(n):
    photo = photos[i % len(photos)]
    top = rng.integers(0, photo.shape[0] - 375 + 1)
    left = rng.integers(0, photo.shape[1] - 500 + 1)
    crop = photo[top : top + 375, left : left + 500]
    crops.append(np.ascontiguousarray(crop[:, ::-1] if i % 4 >= 2 else crop))
  return crops


def _pil_as_before(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as img:
    return np.array(img.convert("RGB"))


def _pil_decode_only(data: bytes) -> np.ndarray:
  img = Image.open(io.BytesIO(data))
  img.load()
  return np.asarray(img)


def _pil_draft_half(data: bytes) -> np.ndarray:
  img = Image.open(io.BytesIO(data))
  img.draft("RGB", (img.size[0] // 2, img.size[1] // 2))
  img.load()
  return np.asarray(img)


def decoders() -> dict:
  """Name -> decode(bytes) of every decoder available here."""
  found = {
    "Pillow, as ltjax used it (convert + np.array)": _pil_as_before,
    "Pillow, decode + np.asarray only": _pil_decode_only,
    "Pillow draft 1/2": _pil_draft_half,
    "simplejpeg (ltjax's decode_image)": image_ops.decode_image,
    "simplejpeg, bare decode_jpeg": simplejpeg.decode_jpeg,
    "simplejpeg 1/2": lambda b: simplejpeg.decode_jpeg(b, min_height=188, min_width=250),
    "simplejpeg >= 224 (5/8)": lambda b: simplejpeg.decode_jpeg(b, min_height=224, min_width=224),
  }
  try:
    import cv2

    cv2.setNumThreads(1)
    flags = getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR)

    def cv(flag):
      return lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), flag)

    found["OpenCV"] = cv(flags)
    found["OpenCV IMREAD_REDUCED_COLOR_2"] = cv(cv2.IMREAD_REDUCED_COLOR_2)
    found["OpenCV IMREAD_REDUCED_COLOR_4"] = cv(cv2.IMREAD_REDUCED_COLOR_4)
  except ImportError:
    print("OpenCV (opencv-python-headless) not installed: skipped.")
  try:
    import turbojpeg

    tj = turbojpeg.TurboJPEG()
    found["PyTurboJPEG"] = lambda b: tj.decode(b, pixel_format=turbojpeg.TJPF_RGB)
    found["PyTurboJPEG 1/2"] = lambda b: tj.decode(
      b, pixel_format=turbojpeg.TJPF_RGB, scaling_factor=(1, 2)
    )
  except (ImportError, RuntimeError, OSError) as e:
    print(f"PyTurboJPEG unavailable ({type(e).__name__}: {str(e).splitlines()[0]}): skipped.")
  return found


def run_decoders(args) -> None:
  rng = np.random.default_rng(0)
  sets = {
    "synthetic": [encode(synthetic_image(rng)) for _ in range(32)],
    "photo crops": [encode(c) for c in photo_crops(32)],
  }
  found = decoders()
  rates = {(s, d): [] for s in sets for d in found}
  for _ in range(args.rounds):
    for set_name, blobs in sets.items():
      for name, fn in found.items():
        t0 = time.process_time()
        for blob in blobs:
          fn(blob)
        rates[set_name, name].append(len(blobs) / (time.process_time() - t0))
  print(f"JPEG decode to RGB uint8, images per CPU-second (medians of {args.rounds} rounds)")
  header = " | ".join(
    f"{s} ({np.mean([len(b) for b in blobs]) / 1e3:.0f} kB)" for s, blobs in sets.items()
  )
  print(f"| decoder | {header} |")
  print("|---|" + "---:|" * len(sets))
  for name in found:
    row = " | ".join(f"{np.median(rates[s, name]):.0f}" for s in sets)
    print(f"| {name} | {row} |")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--images", type=int, default=512)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--batches", type=int, default=8)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--decode_min_size", type=int, default=0)
  p.add_argument("--baseline", help="another image_ops.py to time, interleaved, against")
  p.add_argument("--decoders", action="store_true", help="compare JPEG decoders instead")
  p.add_argument(
    "--device_augment", action="store_true", help="imagenet_device's host work vs imagenet's"
  )
  args = p.parse_args()
  if args.decoders:
    run_decoders(args)
  elif args.device_augment:
    run_device_augment(args)
  else:
    run_pipeline(args)


if __name__ == "__main__":
  main()
