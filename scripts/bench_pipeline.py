"""Input-pipeline throughput for ImageNet-style training, from an image tree and from
ArrayRecord shards.

Generates ``--images`` synthetic JPEGs of ImageNet's typical size (500x375, smooth content
plus noise, quality 90: ~50-100 kB each, like ImageNet's), a split list over them, and the
ArrayRecord shards ``ltjax prepare`` would write; then times ltjax's training stream
(``TrainStream``: sampler indices -> read -> JPEG decode -> RandomResizedCrop 224 + flip +
colour jitter -> batch) per batch of 64:

* one core: ``stream(step)`` called in the main thread, one batch at a time;
* the training iterator (grain, ``--threads`` threads, prefetch 4), as ``ltjax train``
  uses it;
* for reference, the JPEG decode alone (Pillow) per image, one core.

With ``--decode_min_size 256`` JPEGs are decoded at reduced scale (PIL draft mode), the
``data.decode_min_size`` option.

  python scripts/bench_pipeline.py [--images 512 --batches 8 --threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

from ltjax.data import pipeline
from ltjax.data.image_ops import decode_image
from ltjax.data.packed import PackedSource, pack_split_list
from ltjax.data.splitlist import SplitListSource


def make_tree(root: str, n: int, num_classes: int = 10) -> str:
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:375, 0:500]
  lines = []
  for i in range(n):
    phase = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(0.005, 0.05, 3)
    base = 127 + 100 * np.sin(freq[:, None, None] * (xx + yy * 0.7)[None] + phase[:, None, None])
    image = np.clip(base.transpose(1, 2, 0) + rng.normal(0, 12, (375, 500, 3)), 0, 255)
    rel = f"img/{i % num_classes}/{i}.jpg"
    os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
    Image.fromarray(image.astype(np.uint8)).save(os.path.join(root, rel), quality=90)
    lines.append(f"{rel} {i % num_classes}")
  list_file = os.path.join(root, "train.txt")
  with open(list_file, "w") as f:
    f.write("\n".join(lines) + "\n")
  return list_file


def stream_for(source, batch: int) -> pipeline.TrainStream:
  return pipeline.TrainStream(
    source,
    sampler="instance",
    sampler_options={},
    seed=0,
    global_batch=batch,
    augment="imagenet",
    size=224,
  )


def images_per_s_one_core(stream, batches: int, batch: int) -> float:
  stream(0)  # warm-up
  t0 = time.perf_counter()
  for step in range(1, batches + 1):
    stream(step)
  return batches * batch / (time.perf_counter() - t0)


def images_per_s_iterator(stream, batches: int, batch: int, threads: int) -> float:
  it = pipeline.train_iterator(stream, batches + 2, num_threads=threads, prefetch=4)
  next(it)
  next(it)
  t0 = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch / (time.perf_counter() - t0)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--images", type=int, default=512)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--batches", type=int, default=8)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--decode_min_size", type=int, default=0)
  args = p.parse_args()
  min_size = args.decode_min_size or None
  with tempfile.TemporaryDirectory() as tmp:
    root = os.path.join(tmp, "tree")
    list_file = make_tree(root, args.images)
    packed = os.path.join(tmp, "packed")
    pack_split_list(list_file, root, packed, "train", 10)
    sources = {
      "image tree": SplitListSource(list_file, root, 10, min_size=min_size),
      "ArrayRecord": PackedSource(packed, "train", 10, min_size=min_size),
    }
    sizes = [os.path.getsize(os.path.join(root, path)) for path in sources["image tree"].paths]
    blobs = [open(os.path.join(root, path), "rb").read() for path in sources["image tree"].paths]
    t0 = time.perf_counter()
    for blob in blobs[:100]:
      decode_image(blob, min_size=min_size)
    decode = 100 / (time.perf_counter() - t0)
    print(
      f"{args.images} JPEGs 500x375 (mean {np.mean(sizes) / 1e3:.0f} kB), RandomResizedCrop 224 + "
      f"flip + jitter, batch {args.batch}, decode_min_size={args.decode_min_size}, "
      f"{os.cpu_count()} CPUs"
    )
    print("| source | one core, images/s | iterator, images/s |")
    print("|---|---:|---:|")
    for name, source in sources.items():
      stream = stream_for(source, args.batch)
      one = images_per_s_one_core(stream, args.batches, args.batch)
      many = images_per_s_iterator(stream, args.batches, args.batch, args.threads)
      print(f"| {name} | {one:.0f} | {many:.0f} ({args.threads} threads) |")
    print(f"JPEG decode alone (Pillow, from memory, one core): {decode:.0f} images/s")


if __name__ == "__main__":
  main()
