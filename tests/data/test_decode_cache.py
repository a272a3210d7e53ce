"""Training speed on small images (issue 35), what a user sees: decoded images kept in memory
(data.decode_cache_mb), small same-size images with the array augmentations, compiled
programs kept on disk between commands, and no PyTorch import for TensorBoard."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import own_data_config

from ltjax.data import datasets, pipeline


def test_train_and_val_are_decoded_once_then_served_from_memory(mine, tmp_path):
  """The images of an epoch are decoded once: deleted files still give the same pixels
  (the cache is the only place they can come from); test, read once, keeps nothing."""
  root = tmp_path / "mine"
  shutil.copytree(mine, root)
  c = own_data_config(root)
  splits = datasets.build_splits(c.dataset, 0, c.data)
  n = len(splits.train)
  first, _ = splits.train.get_batch(np.arange(n))
  val, _ = splits.val.get_batch(np.arange(len(splits.val)))
  shutil.rmtree(root / "train")
  shutil.rmtree(root / "val")
  again, _ = splits.train.get_batch(np.arange(n)[::-1])
  for a, b in zip(first, again[::-1], strict=True):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="read-only"):  # Nothing can write into the cache.
    again[0][0, 0] = 0
  np.testing.assert_array_equal(splits.val.get_batch(np.array([3]))[0][0], val[3])
  assert splits.test._decoded is None
  # Without the cache the same read fails on the missing files: they are read each time.
  other = tmp_path / "other"
  shutil.copytree(mine, other)
  c = own_data_config(other, data=dict(decode_cache_mb=0))
  uncached = datasets.build_splits(c.dataset, 0, c.data)
  uncached.train.get_batch(np.arange(n))
  shutil.rmtree(other / "train")
  with pytest.raises(ValueError, match="image not found"):
    uncached.train.get_batch(np.arange(n))


def test_the_cache_keeps_no_more_than_its_budget(mine):
  c = own_data_config(mine, data=dict(decode_cache_mb=1))
  splits = datasets.build_splits(c.dataset, 0, c.data)
  cache = splits.train._decode_cache
  cache.budget = 10 * 32 * 32 * 3  # Ten 32x32 RGB images.
  splits.train.get_batch(np.arange(len(splits.train)))
  assert len(splits.train._decoded) == 10 and cache.used == cache.budget
  assert splits.val._decode_cache is cache  # One budget for the dataset.


def test_same_size_images_of_a_folder_train_with_the_array_augmentation(mine, tmp_path):
  """crop_flip and the plain eval transform take a folder of same-size images (a list of
  arrays from the files), as they take TFDS's arrays; other sizes are refused naming the
  augmentation that resizes."""
  from ltjax.data import samplers
  from ltjax.data.pp import augment

  c = own_data_config(mine, data=dict(augment="crop_flip", eval_transform="none"))
  splits = datasets.build_splits(c.dataset, 0, c.data)
  stream = pipeline.TrainStream(
    splits.train,
    sampler=samplers.from_config(c),
    seed=0,
    global_batch=8,
    augment=augment.CropFlip(),
  )
  assert stream(0)["image"].shape == (8, 32, 32, 3)
  batch = next(pipeline.eval_batches(splits.test, 8, transform=augment.NoTransform()))
  assert batch["image"].shape == (8, 32, 32, 3)
  mixed = [np.zeros((32, 32, 3), np.uint8), np.zeros((30, 32, 3), np.uint8)]
  with pytest.raises(ValueError, match="use --config.data.augment=imagenet"):
    augment.CropFlip()(mixed, np.arange(2), 0)


@pytest.mark.slow  # CI's 20 minutes: README's slow-set table names it.
def test_compiled_programs_are_kept_between_commands(mine, tmp_path):
  """`ltjax train` keeps its compiled programs in LTJAX_COMPILATION_CACHE; a second run of
  the same config loads them (no new files). Metrics rows carry their wall-clock time."""
  cache = tmp_path / "xla"
  args = [
    "train",
    "--config=custom/joint.py",
    f"--config.dataset.root={mine}",
    "--config.data.crop_size=32",
    "--config.model.backbone=cifar_resnet8",
    "--config.batch_size=32",
    "--config.num_epochs=1",
  ]
  env = dict(os.environ, XLA_FLAGS="", LTJAX_COMPILATION_CACHE=str(cache))
  run = lambda workdir, env: subprocess.run(
    [sys.executable, "-m", "ltjax.cli", *args, f"--workdir={workdir}"],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  out = run("a", env)
  assert out.returncode == 0, out.stderr[-2000:]
  programs = {f for f in os.listdir(cache) if f.endswith("-cache")}
  assert any(f.startswith("jit_train_step") for f in programs), programs
  assert any(f.startswith("jit_init") for f in programs), programs  # (Under 0.2 s: none.)
  steps = {
    f: os.stat(cache / f).st_mtime_ns
    for f in programs
    if f.startswith(("jit_train_step-", "jit_init-"))
  }
  out = run("b", env)
  assert out.returncode == 0, out.stderr[-2000:]
  # The same programs, found and not written again. (A small program that took under the
  # cache's 0.2 s to compile in one run may take longer in the other, and be added then.)
  again = {f for f in os.listdir(cache) if f.startswith(("jit_train_step-", "jit_init-"))}
  assert {f: os.stat(cache / f).st_mtime_ns for f in again} == steps
  rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
  assert all(isinstance(r["time"], float) for r in rows)


def test_tensorboard_does_not_import_pytorch():
  """tensorboardX imports torch when installed (a second of start-up); ltjax's writer loads
  it without, and torch still imports afterwards."""
  code = (
    "import sys, tempfile\n"
    "from ltjax.train.metric_writer import MetricWriter\n"
    "w = MetricWriter(tempfile.mkdtemp()); w.write(1, 'train', {'loss': 1.0}); w.close()\n"
    "assert w._tb is not None\n"
    "print('torch' in sys.modules)\n"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "False"


def test_the_cli_cache_directory_follows_the_environment(monkeypatch, tmp_path):
  from ltjax import cli

  monkeypatch.setenv("LTJAX_COMPILATION_CACHE", "off")
  assert cli.compilation_cache_dir() is None
  monkeypatch.setenv("LTJAX_COMPILATION_CACHE", "0")
  assert cli.compilation_cache_dir() is None
  monkeypatch.delenv("LTJAX_COMPILATION_CACHE")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert cli.compilation_cache_dir() == str(tmp_path / "ltjax" / "xla")


def test_the_compilation_cache_drops_its_oldest_programs_beyond_its_size(tmp_path):
  from ltjax import cli

  for i in range(6):
    path = tmp_path / f"jit_step-{i}-cache"
    path.write_bytes(b"x" * 100)
    os.utime(path, (1000 + i, 1000 + i))
  (tmp_path / "jit_step-0-atime").write_bytes(b"t")  # Other files are left alone.
  cli._prune_compilation_cache(str(tmp_path), max_bytes=500)
  left = sorted(p.name for p in tmp_path.iterdir())
  assert left == ["jit_step-0-atime", "jit_step-3-cache", "jit_step-4-cache", "jit_step-5-cache"]
  cli._prune_compilation_cache(str(tmp_path), max_bytes=500)  # Under the size: kept.
  assert len(list(tmp_path.iterdir())) == 4
