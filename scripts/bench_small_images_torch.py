"""The PyTorch side of ``scripts/bench_small_images.py``: classifier-balancing's joint
training loop, restated with only torch, torchvision and Pillow (run it with a Python that
has torchvision; ltjax need not be installed there).

As the reference (``data/dataloader.py``, ``run_networks.py``): an ``LT_Dataset`` reading
``root/path`` from a ``path label`` list with PIL (``convert('RGB')``), torchvision's
RandomResizedCrop(crop) + RandomHorizontalFlip + ColorJitter(0.4, 0.4, 0.4, 0) + ToTensor +
Normalize for training, Resize(crop * 256 / 224) + CenterCrop(crop) for evaluation, a
``DataLoader`` with ``--workers`` worker processes (shuffle, no dropped last batch), SGD
momentum 0.9, weight decay 5e-4, cosine over the epochs stepped at each epoch's start,
cross-entropy; after every epoch an evaluation pass over the validation list, then one over
the test list. The network is the same ResNet-10 as ltjax's (``scripts/torch_resnet.py``,
torchvision's layout).

Prints one JSON line: the wall time of each epoch (training, and validation apart), the
test pass, the whole run, and the images per second.

  python scripts/bench_small_images_torch.py --root DIR --epochs 3 [--crop 32 --batch 128]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_resnet import build  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]


class LTDataset(Dataset):
  """classifier-balancing's ``LT_Dataset``: images of a ``path label`` list under root; with
  ``in_memory``, decoded once up front, as torchvision's ``CIFAR10`` holds its arrays."""

  def __init__(self, root: str, txt: str, transform, in_memory: bool = False):
    self.paths, self.labels, self.transform = [], [], transform
    with open(txt) as f:
      for line in f:
        path, label = line.split()
        self.paths.append(os.path.join(root, path))
        self.labels.append(int(label))
    self.arrays = [self._open(p) for p in self.paths] if in_memory else None

  @staticmethod
  def _open(path: str):
    import numpy as np

    with open(path, "rb") as f:
      return np.asarray(Image.open(f).convert("RGB"))

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int):
    if self.arrays is not None:
      sample = Image.fromarray(self.arrays[index])
    else:
      with open(self.paths[index], "rb") as f:
        sample = Image.open(f).convert("RGB")
    return self.transform(sample), self.labels[index], index


def transforms_of(kind: str, crop: int):
  """(train, eval) transforms: classifier-balancing's ImageNet ones at ``crop``, or the
  CIFAR-LT code's (LDAM-DRW ``cifar_train.py``: pad-4 crop + flip)."""
  if kind == "cifar":
    norm = transforms.Normalize(CIFAR_MEAN, CIFAR_STD)
    train = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    return (
      transforms.Compose([*train, transforms.ToTensor(), norm]),
      transforms.Compose([transforms.ToTensor(), norm]),
    )
  norm = transforms.Normalize(MEAN, STD)
  train = transforms.Compose(
    [
      transforms.RandomResizedCrop(crop),
      transforms.RandomHorizontalFlip(),
      transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0),
      transforms.ToTensor(),
      norm,
    ]
  )
  resize = [transforms.Resize(round(crop * 256 / 224)), transforms.CenterCrop(crop)]
  return train, transforms.Compose([*resize, transforms.ToTensor(), norm])


def loaders(root: str, crop: int, batch: int, workers: int, kind: str, in_memory: bool):
  train_t, eval_t = transforms_of(kind, crop)

  def make(split, transform, shuffle):
    data = LTDataset(root, os.path.join(root, f"{split}.txt"), transform, in_memory)
    return DataLoader(data, batch_size=batch, shuffle=shuffle, num_workers=workers)

  return make("train", train_t, True), make("val", eval_t, False), make("test", eval_t, False)


def evaluate(model, loader) -> float:
  model.eval()
  correct = total = 0
  with torch.no_grad():
    for images, labels, _ in loader:
      correct += (model(images).argmax(1) == labels).sum().item()
      total += len(labels)
  return correct / max(total, 1)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--root", required=True)
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--crop", type=int, default=32)
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--lr", type=float, default=0.05)
  p.add_argument("--wd", type=float, default=5e-4)
  p.add_argument("--model", default="resnet10", help="a scripts/torch_resnet.py network")
  p.add_argument("--transform", choices=("imagenet", "cifar"), default="imagenet")
  p.add_argument("--in_memory", action="store_true", help="decode every image once, first")
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
  p.add_argument("--classes", type=int, default=10)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args()
  t_start = time.perf_counter()
  torch.manual_seed(args.seed)
  if args.threads:
    torch.set_num_threads(args.threads)
  train, val, test = loaders(
    args.root, args.crop, args.batch, args.workers, args.transform, args.in_memory
  )
  model = build(args.model, args.classes)
  optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.wd)
  epochs, train_s, val_s, accuracy = [], [], [], []
  for epoch in range(args.epochs):
    # Cosine to 0 stepped at each epoch's start (coslr, endlr 0), as the reference.
    for group in optimizer.param_groups:
      group["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * epoch / args.epochs))
    t0 = time.perf_counter()
    model.train()
    for images, labels, _ in train:
      loss = torch.nn.functional.cross_entropy(model(images), labels)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()
    t1 = time.perf_counter()
    accuracy.append(evaluate(model, val))
    t2 = time.perf_counter()
    train_s.append(t1 - t0)
    val_s.append(t2 - t1)
    epochs.append(t2 - t0)
  t0 = time.perf_counter()
  test_accuracy = evaluate(model, test)
  test_s = time.perf_counter() - t0
  n = len(train.dataset)
  print(
    json.dumps(
      {
        "framework": "pytorch",
        "train_images": n,
        "epoch_s": epochs,
        "train_s": train_s,
        "val_s": val_s,
        "test_s": test_s,
        "wall_s": time.perf_counter() - t_start,
        "images_per_s": [n / e for e in epochs],
        "train_images_per_s": [n / t for t in train_s],
        "val_accuracy": accuracy,
        "test_accuracy": test_accuracy,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
      }
    )
  )


if __name__ == "__main__":
  main()
