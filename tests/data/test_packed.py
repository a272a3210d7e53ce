"""Tests for ltjax.data.sources.packed and ``ltjax prepare``: packed shards read back exactly."""

import glob
import json
import logging
import os
import pickle
import re

import numpy as np
import pytest
from helpers import load_config, run_ltjax, set_num_classes, short_run
from PIL import Image

from ltjax.data import prepare
from ltjax.data.prepare import pack_split_list
from ltjax.data.sources import packed
from ltjax.data.sources.packed import PackedSource
from ltjax.data.sources.splitlist import SplitListSource

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
COUNTS = {"train": [12, 6, 4], "val": [2, 2, 2], "test": [2, 2, 2]}  # Images per class.


def make_tree(root) -> str:
  """ImageNet-LT-style lists over a JPEG tree of 3 classes (+ 3 open-set images).

  Returns the root. Images are 16x16 (some 20x12); the train list has a blank line, so
  record and line numbers differ.
  """
  root = str(root)
  rng = np.random.default_rng(0)
  for split, counts in COUNTS.items():
    lines = []
    for label, n in enumerate(counts):
      for i in range(n):
        rel = f"{split}/c{label}/{i}.jpg"
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        shape = (20, 12, 3) if i % 3 == 2 else (16, 16, 3)
        image = np.clip(60 * label + rng.normal(60, 40, shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(root, rel), quality=90)
        lines.append(f"{rel} {label}")
    if split == "train":
      lines.insert(3, "")
    with open(os.path.join(root, f"ImageNet_LT_{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")
  os.makedirs(os.path.join(root, "open"), exist_ok=True)
  for i in range(3):
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(image).save(os.path.join(root, f"open/{i}.jpg"))
  with open(os.path.join(root, "ImageNet_LT_open.txt"), "w") as f:
    f.write("".join(f"open/{i}.jpg -1\n" for i in range(3)))
  return root


@pytest.fixture
def tree(tmp_path):
  root = make_tree(tmp_path / "images")
  return os.path.join(root, "ImageNet_LT_train.txt"), root, str(tmp_path / "packed")


def pack(list_file, root, out, **kwargs):
  kwargs.setdefault("records_per_shard", 5)
  return pack_split_list(list_file, root, out, "train", 3, **kwargs)


def assert_same(packed_source, direct):
  """Every record of both sources, in a shuffled order, decodes to the same pixels."""
  assert len(packed_source) == len(direct)
  np.testing.assert_array_equal(packed_source.labels, direct.labels)
  assert packed_source.labels.dtype == np.int32
  np.testing.assert_array_equal(packed_source.lines, direct.lines)
  order = np.random.default_rng(1).permutation(len(direct))
  images, labels = packed_source.get_batch(order)
  want, want_labels = direct.get_batch(order)
  np.testing.assert_array_equal(labels, want_labels)
  assert len(images) == len(want)
  for image, expected in zip(images, want, strict=True):
    assert image.dtype == np.uint8 and image.shape == expected.shape
    np.testing.assert_array_equal(image, expected)


def shard_files(out, split="train"):
  return sorted(glob.glob(os.path.join(out, f"{split}.array_record-*")))


def leftovers(out):
  return glob.glob(os.path.join(out, "*.tmp")) + glob.glob(os.path.join(out, "*.pending.json"))


def age(paths):
  """Backdates the files, so a rewrite shows in their mtimes; returns the mtimes."""
  for path in paths:
    os.utime(path, ns=(10**18, 10**18))
  return {path: os.stat(path).st_mtime_ns for path in paths}


# --------------------------------------------------------------------- round trip


def test_round_trip_is_bit_identical(tree):
  list_file, root, out = tree
  summary = pack(list_file, root, out)
  assert summary["status"] == "packed" and summary["num_records"] == 22
  assert summary["num_shards"] == 5 and summary["reused_shards"] == 0
  assert [os.path.basename(p) for p in shard_files(out)] == [
    f"train.array_record-{i:05d}-of-00005" for i in range(5)
  ]
  assert leftovers(out) == []
  manifest = json.loads(open(packed.manifest_path(out, "train")).read())
  assert manifest["num_records"] == 22 and manifest["list_file"] == os.path.abspath(list_file)
  assert [s["num_records"] for s in manifest["shards"]] == [5, 5, 5, 5, 2]

  for min_size in (None, 8):
    source = PackedSource(out, "train", 3, min_size=min_size)
    direct = SplitListSource(list_file, root, 3, min_size=min_size)
    assert source.num_classes == 3
    assert_same(source, direct)
    assert_same(pickle.loads(pickle.dumps(source)), direct)  # For grain workers.
  assert source.lines[3] == 5  # After the blank line.
  empty, empty_labels = source.get_batch(np.array([], np.int64))
  assert empty == [] and empty_labels.shape == (0,)
  with pytest.raises(ValueError, match=r"\[0, 22\)"):
    source.get_batch(np.array([22]))
  with pytest.raises(ValueError, match="labels of packed split 'train'.*outside"):
    PackedSource(out, "train", 2)


def test_record_format_is_the_original_file_bytes(tree):
  list_file, root, out = tree
  pack(list_file, root, out)
  from array_record.python.array_record_module import ArrayRecordReader

  reader = ArrayRecordReader(shard_files(out)[3])
  record = reader.read([1])[0]  # Record 16 (the 5th of class 1), on line 18.
  reader.close()
  line, label = packed.HEADER.unpack_from(record)
  assert (line, label) == (18, 1) and packed.HEADER.size == 8
  with open(os.path.join(root, "train/c1/4.jpg"), "rb") as f:
    assert record[8:] == f.read()


def test_open_split(tree):
  _, root, out = tree
  open_list = os.path.join(root, "ImageNet_LT_open.txt")
  with pytest.raises(ValueError, match="allowed only in the open-set list"):
    pack_split_list(open_list, root, out, "open", 3)
  pack_split_list(open_list, root, out, "open", 3, allow_open=True)
  source = PackedSource(out, "open", 3, allow_open=True)
  assert_same(source, SplitListSource(open_list, root, 3, allow_open=True))
  with pytest.raises(ValueError, match=r"-1 is outside \[0, 3\)"):
    PackedSource(out, "open", 3)


# ---------------------------------------------------------------- crash safety


RealWriter = prepare.ArrayRecordWriter


class FailingWriter:
  """An ArrayRecordWriter that fails on the ``fail_at``-th record written overall."""

  fail_at = 7
  written = 0

  def __init__(self, path, options):
    self.writer = RealWriter(path, options)

  def write(self, record):
    FailingWriter.written += 1
    if FailingWriter.written == FailingWriter.fail_at:
      raise OSError("simulated crash")
    self.writer.write(record)

  def close(self):
    self.writer.close()


def test_an_interrupted_pack_resumes_from_its_complete_shards(tree, monkeypatch):
  list_file, root, out = tree
  monkeypatch.setattr(prepare, "ArrayRecordWriter", FailingWriter)
  monkeypatch.setattr(FailingWriter, "written", 0)
  with pytest.raises(OSError, match="simulated crash"):
    pack(list_file, root, out)  # Fails in the 2nd shard.
  monkeypatch.undo()
  first = os.path.join(out, "train.array_record-00000-of-00005")
  assert shard_files(out) == [first]
  assert not os.path.exists(packed.manifest_path(out, "train"))
  assert os.path.exists(os.path.join(out, "train.pending.json"))
  # A hard kill would also leave the shard being written under its temporary name.
  stale = os.path.join(out, "train.array_record-00001-of-00005.tmp")
  with open(stale, "wb") as f:
    f.write(b"partial")
  with pytest.raises(ValueError, match="not finished.*re-run 'ltjax prepare'"):
    PackedSource(out, "train", 3)

  mtimes = age([first])
  summary = pack(list_file, root, out)
  assert summary["status"] == "resumed" and summary["reused_shards"] == 1
  assert os.stat(first).st_mtime_ns == mtimes[first]  # Kept, not rewritten.
  assert len(shard_files(out)) == 5 and leftovers(out) == []
  assert_same(PackedSource(out, "train", 3), SplitListSource(list_file, root, 3))
  assert "resumed, kept 1 of 5 shards and wrote 4" in prepare.format_summary(summary)


def test_a_split_without_manifest_or_with_a_bad_shard_is_refused(tree):
  list_file, root, out = tree
  pack(list_file, root, out)
  manifest = packed.manifest_path(out, "train")
  os.rename(manifest, manifest + ".bak")
  with pytest.raises(ValueError, match=r"no manifest .*train.manifest.json.*'ltjax prepare'"):
    PackedSource(out, "train", 3)
  with pytest.raises(ValueError, match="packed split 'val' .* no manifest"):
    PackedSource(out, "val", 3)
  os.rename(manifest + ".bak", manifest)

  shards = shard_files(out)
  with open(shards[2], "r+b") as f:  # Truncated, e.g. by a full disk.
    f.truncate(os.path.getsize(shards[2]) // 2)
  with pytest.raises(ValueError, match=r"00002-of-00005 is short or damaged.*'ltjax prepare'"):
    PackedSource(out, "train", 3)
  os.remove(shards[3])
  with pytest.raises(ValueError, match=r"00002-of-00005 is short"):
    PackedSource(out, "train", 3)
  os.remove(shards[2])
  with pytest.raises(ValueError, match=r"00002-of-00005 is missing.*'ltjax prepare'"):
    PackedSource(out, "train", 3)

  # Re-running repairs the split, rewriting only the bad shards.
  mtimes = age([shards[0], shards[1], shards[4]])
  summary = pack(list_file, root, out)
  assert summary["status"] == "resumed" and summary["reused_shards"] == 3
  assert all(os.stat(p).st_mtime_ns == t for p, t in mtimes.items())
  assert leftovers(out) == []
  assert_same(PackedSource(out, "train", 3), SplitListSource(list_file, root, 3))


def test_rerunning_on_an_unchanged_list_does_nothing(tree):
  list_file, root, out = tree
  pack(list_file, root, out)
  files = [*shard_files(out), packed.manifest_path(out, "train")]
  mtimes = age(files)
  summary = pack(list_file, root, out)
  assert summary["status"] == "up to date" and summary["bytes"] == 0
  assert {p: os.stat(p).st_mtime_ns for p in files} == mtimes
  assert "train: up to date, 22 images in 5 shards" in prepare.format_summary(summary)


def test_a_changed_list_is_repacked(tree):
  list_file, root, out = tree
  pack(list_file, root, out)
  with open(list_file) as f:
    lines = f.read().splitlines()
  # Fewer records (one shard less), and a relabelled image.
  lines = [line for line in lines if line][:20]
  lines[0] = lines[0].replace(" 0", " 2")
  with open(list_file, "w") as f:
    f.write("\n".join(lines) + "\n")
  summary = pack(list_file, root, out)
  assert summary["status"] == "packed" and summary["num_shards"] == 4
  assert len(shard_files(out)) == 4 and leftovers(out) == []
  source = PackedSource(out, "train", 3)
  assert source.labels[0] == 2
  assert_same(source, SplitListSource(list_file, root, 3))


def test_a_missing_image_names_the_list_file_and_line(tree):
  list_file, root, out = tree
  os.remove(os.path.join(root, "train/c0/7.jpg"))  # Record 7, line 9.
  with pytest.raises(ValueError, match=r"image not found: .*train/c0/7.jpg .*_train.txt, line 9"):
    pack(list_file, root, out)
  assert not os.path.exists(packed.manifest_path(out, "train"))
  assert len(shard_files(out)) == 1 and glob.glob(os.path.join(out, "*.tmp")) == []


def test_a_corrupt_record_names_the_list_line(tree):
  list_file, root, out = tree
  with open(os.path.join(root, "train/c2/0.jpg"), "wb") as f:  # Record 18, line 20.
    f.write(b"not a jpeg")
  pack(list_file, root, out)
  with pytest.raises(ValueError, match=r"corrupt image \(record 3 of .*00003-of-00005.*line 20"):
    PackedSource(out, "train", 3).get_batch(np.array([18]))
  source = PackedSource(out, "train", 3, skip_corrupt=True)
  images, labels = source.get_batch(np.array([18]))
  want = SplitListSource(list_file, root, 3).get_batch(np.array([19]))[0][0]
  np.testing.assert_array_equal(images[0], want)  # The next image of class 2.
  assert labels[0] == 2 and source.num_skipped == 1


# ------------------------------------------------------------------------ the CLI


def test_prepare_command(tmp_path):
  root = make_tree(tmp_path / "images")
  args = ["prepare", "--dataset=imagenet_lt", f"--root={root}", "--out=packed"]
  result = run_ltjax(*args, "--records_per_shard=4", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert [line.split(":")[0] for line in lines] == ["train", "val", "test", "open"]
  assert lines[0].startswith("train: packed 22 images into 6 shards")
  assert lines[3].startswith("open: packed 3 images into 1 shard")
  out = str(tmp_path / "packed")
  for split, list_name in (("val", "val"), ("open", "open")):
    list_file = os.path.join(root, f"ImageNet_LT_{list_name}.txt")
    assert_same(
      PackedSource(out, split, 1000, allow_open=split == "open"),
      SplitListSource(list_file, root, 1000, allow_open=split == "open"),
    )
  result = run_ltjax(*args, "--splits=train,val", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[0].startswith("train: up to date, 22 images in 6 shards")

  # Lists in their own directory; the open list is optional unless asked for.
  lists = tmp_path / "lists"
  lists.mkdir()
  for split in ("train", "val", "test"):
    os.rename(os.path.join(root, f"ImageNet_LT_{split}.txt"), lists / f"ImageNet_LT_{split}.txt")
  result = run_ltjax(*args, f"--lists_dir={lists}", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert "open: no " in result.stdout and "train: up to date" in result.stdout


@pytest.mark.parametrize(
  "extra, message",
  [
    (["--dataset=cifar"], "unknown --dataset 'cifar'; valid: imagenet_lt, places_lt, inat2018"),
    (["--dataset=places_lt"], "split list images/Places_LT_train.txt does not exist"),
    (["--dataset=imagenet_lt", "--splits=train,open"], "ImageNet_LT_open.txt does not exist"),
    (["--dataset=imagenet_lt", "--splits=train,tset"], "bad --splits 'train,tset'"),
    (["--dataset=imagenet_lt", "--records_per_shard=0"], "--records_per_shard must be >= 1"),
    (["--dataset=imagenet_lt", "--missing-image"], "image not found: images/train/c0/1.jpg"),
    (["--dataset=imagenet_lt", "--root=nowhere"], "--root 'nowhere' is not a directory"),
    (["--root=images"], "--dataset is required"),
  ],
)
def test_prepare_bad_input_is_one_clear_error(tmp_path, extra, message):
  make_tree(tmp_path / "images")
  os.remove(tmp_path / "images" / "ImageNet_LT_open.txt")
  if "--missing-image" in extra:
    os.remove(tmp_path / "images" / "train" / "c0" / "1.jpg")
    extra = [e for e in extra if e != "--missing-image"]
  args = ["prepare", "--root=images", "--out=packed"]
  result = run_ltjax(*args, *extra, cwd=tmp_path)  # A later --root wins.
  assert result.returncode != 0
  errors = [line for line in result.stderr.splitlines() if line.startswith("ltjax: error: ")]
  assert len(errors) == 1 and message in errors[0], result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  if "image not found" in message:
    assert "ImageNet_LT_train.txt, line 2" in errors[0]


# ------------------------------------------------------------------ end to end


def test_training_from_packed_shards_matches_the_image_tree(tmp_path, monkeypatch):
  from ltjax.train import experiment, loop

  root = make_tree(tmp_path / "images")
  out = str(tmp_path / "packed")
  for split in ("train", "val", "test", "open"):
    list_file = os.path.join(root, f"ImageNet_LT_{split}.txt")
    pack_split_list(list_file, root, out, split, 3, allow_open=split == "open")
  set_num_classes(monkeypatch, "imagenet_lt", 3)

  def run(name, **dataset):
    config = load_config(os.path.join(REPO, "configs", "imagenet_lt", "joint_sqrt.py"))
    config.dataset.update(dataset)
    config.dataset.open_set = True
    config.model.backbone = "cifar_resnet8"
    config.data.crop_size = 16
    config.data.num_threads = 1
    config.batch_size = config.eval.batch_size = 16
    config.num_epochs = 1  # 22 images: 2 steps.
    config.log_every_steps = 1
    config.eval_every_epochs = 0
    config.eval.select = "final"
    short_run(config)
    exp, state = experiment.setup(config)
    assert exp.total_steps == 2
    stream = experiment.make_stream(exp)
    batches = [stream(step) for step in range(2)]
    loop.train(exp, state, str(tmp_path / name))
    with open(tmp_path / name / "metrics.jsonl") as f:
      losses = [row["loss"] for row in map(json.loads, f) if row["split"] == "train"]
    return exp, batches, losses

  exp_packed, batches_packed, losses_packed = run("packed", packed_dir=out, root="")
  exp_direct, batches_direct, losses_direct = run("direct", root=root)
  assert isinstance(exp_packed.splits.train, PackedSource)
  assert isinstance(exp_direct.splits.train, SplitListSource)
  np.testing.assert_array_equal(exp_packed.splits.test.labels, exp_direct.splits.test.labels)
  assert (exp_packed.splits.test.labels == -1).sum() == 3
  for got, want in zip(batches_packed, batches_direct, strict=True):
    assert got["image"].shape == (16, 16, 16, 3)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])
  assert len(losses_packed) == 2 and losses_packed == losses_direct


def test_packed_open_split_with_known_labels_is_a_clear_error(tmp_path, monkeypatch):
  from ltjax.data.datasets import build_splits

  root = make_tree(tmp_path / "images")
  out = str(tmp_path / "packed")
  with open(os.path.join(root, "ImageNet_LT_open.txt"), "w") as f:
    f.write("open/0.jpg -1\n\nopen/1.jpg 2\n")
  for split in ("train", "val", "test", "open"):
    list_file = os.path.join(root, f"ImageNet_LT_{split}.txt")
    pack_split_list(list_file, root, out, split, 3, allow_open=split == "open")
  set_num_classes(monkeypatch, "imagenet_lt", 3)
  config = load_config(os.path.join(REPO, "configs", "imagenet_lt", "oltr_stage2.py"))
  config.dataset.packed_dir = out
  with pytest.raises(ValueError, match=r"ImageNet_LT_open.txt has 1 record.*line 3, label 2"):
    build_splits(config.dataset, 0, config.data)
  config.dataset.packed_dir = str(tmp_path / "empty")
  with pytest.raises(ValueError, match="packed split 'test' .* no manifest"):
    build_splits(config.dataset, 0, config.data)


def test_two_prepare_runs_on_one_output_directory_do_not_race(tmp_path):
  # A second `ltjax prepare` into the same --out while one runs is refused at once (the
  # loser would otherwise fail on a rename half-way); a lock left by a dead one is taken over.
  import subprocess
  import sys

  from ltjax.data import prepare

  root = make_tree(tmp_path / "images")
  out = tmp_path / "packed"
  out.mkdir()
  # A prepare process that holds the lock while it "packs" (here: sleeps).
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import sys, time; from ltjax import locks; "
      "lock = locks.DirectoryLock(sys.argv[1], 'ltjax prepare', 'output directory', 'wait'); "
      "lock.__enter__(); print('held', flush=True); time.sleep(60)",
      str(out / prepare.LOCK_NAME),
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "held"
    result = run_ltjax(
      "prepare", "--dataset=imagenet_lt", f"--root={root}", f"--out={out}", cwd=tmp_path
    )
    assert result.returncode == 1
    assert f"another ltjax prepare is using this output directory: process {holder.pid}" in (
      result.stderr
    )
  finally:
    holder.kill()
    holder.wait()
  result = run_ltjax(
    "prepare", "--dataset=imagenet_lt", f"--root={root}", f"--out={out}", cwd=tmp_path
  )
  assert result.returncode == 0, result.stderr
  assert "is stale" in result.stderr and not (out / prepare.LOCK_NAME).exists()


def test_flipped_bytes_in_a_shard_name_the_record_and_are_skipped_on_request(tree, caplog):
  # 16 bytes flipped inside a complete shard (bit rot, a bad copy): its size is right, so
  # the manifest's checks pass, and ArrayRecord's chunk hash fails on reading that record.
  list_file, root, out = tree
  packed_all = run_ltjax(
    "prepare",
    "--dataset=imagenet_lt",
    f"--root={root}",
    f"--out={out}",
    "--records_per_shard=5",
    cwd=root,
  )
  assert packed_all.returncode == 0, packed_all.stderr
  shard = os.path.join(out, "train.array_record-00001-of-00005")
  data = bytearray(open(shard, "rb").read())
  middle = len(data) // 2
  data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
  open(shard, "wb").write(bytes(data))
  source = PackedSource(out, "train", 3)
  bad = []
  for i in range(len(source)):
    try:
      source.get_batch(np.array([i]))
    except ValueError as e:
      bad.append((i, str(e)))
  assert bad, "the flipped bytes went unnoticed"
  i, message = bad[0]
  assert re.match(rf"corrupt record \(record \d+ of {re.escape(shard)}, from .*line \d+\)", message)
  assert "skip_corrupt" in message and "RuntimeError" not in message
  with pytest.raises(ValueError, match="corrupt record"):  # In a batch too.
    source.get_batch(np.arange(len(source)))
  skipping = PackedSource(out, "train", 3, skip_corrupt=True)
  with caplog.at_level(logging.WARNING):
    images, labels = skipping.get_batch(np.arange(len(skipping)))
  assert len(images) == len(skipping) and skipping.num_skipped == len(bad)
  assert f"skip_corrupt: replacing record {i - 5} of {shard}" in caplog.text
  # `ltjax verify` lists it with its shard and record, and fails.
  config = os.path.join(REPO, "configs", "imagenet_lt", "joint_sqrt.py")
  result = run_ltjax(
    "verify", f"--config={config}", f"--config.dataset.packed_dir={out}", "--splits=train", cwd=root
  )
  assert result.returncode == 1
  assert f"train: 22 images, {len(bad)} unreadable" in result.stdout
  assert f"corrupt record (record {i - 5} of {shard}" in result.stdout


def test_reference_lists_take_their_class_names_from_dataset_class_names(tmp_path, monkeypatch):
  """The lists number classes without naming them; CLIP's text features need names, which
  dataset.class_names gives (refused when it names another count)."""
  from ltjax.data.datasets import build_splits

  root = make_tree(tmp_path / "images")
  set_num_classes(monkeypatch, "imagenet_lt", 3)
  config = load_config(os.path.join(REPO, "configs", "imagenet_lt", "joint_sqrt.py"))
  config.dataset.root = root
  assert build_splits(config.dataset, 0, config.data).class_names is None
  (tmp_path / "names.txt").write_text("tench\ngoldfish\ngreat white shark\n")
  config.dataset.class_names = str(tmp_path / "names.txt")
  splits = build_splits(config.dataset, 0, config.data)
  assert splits.class_names == ("tench", "goldfish", "great white shark")
  (tmp_path / "names.txt").write_text("tench\ngoldfish\n")
  with pytest.raises(ValueError, match=r"names 2 classes, but the data has 3"):
    build_splits(config.dataset, 0, config.data)
