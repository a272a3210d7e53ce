"""Your own data: an image-folder tree or list files of any number of classes, from the
command line, every stage; the errors a user meets first are one line each."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import run_ltjax

from ltjax import config as config_lib
from ltjax.data import datasets, example

SMALL = [
  "--config.data.crop_size=32",
  "--config.model.backbone=cifar_resnet8",
  "--config.batch_size=32",
  "--config.eval.batch_size=64",
  "--config.eval.many_threshold=40",
  "--config.eval.few_threshold=15",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """The example dataset (5 classes, imbalance 20, val, test, open set), both forms."""
  root = tmp_path_factory.mktemp("mine")
  example.write_example_dataset(str(root))
  return root


def config(name="folder", **dataset):
  c = config_lib.custom_data(config_lib.base_config())
  c.dataset.name = name
  c.dataset.update(dataset)
  return c


def lists_config(root, **dataset):
  fields = {"root": str(root), "train_list": "train.txt", "val_list": "val.txt"}
  return config("lists", **{**fields, "test_list": "test.txt", **dataset})


@pytest.mark.slow  # CI's 20 minutes: README's slow-set table names it.
def test_every_stage_runs_from_the_command_line_and_reports_per_shot(data, tmp_path):
  root = f"--config.dataset.root={data}"
  steps = [
    ["train", "--config=custom/joint.py", "--workdir=joint", "--config.num_epochs=2"],
    ["evaluate", "--workdir=joint", "--posthoc"],
    ["train", "--config=custom/crt.py", "--workdir=crt", "--config.init_from=joint"],
    ["train", "--config=custom/lws.py", "--workdir=lws", "--config.init_from=joint"],
    ["train", "--config=custom/oltr_stage1.py", "--workdir=oltr1", "--config.num_epochs=1"],
    [
      "train",
      "--config=custom/oltr_stage2.py",
      "--workdir=oltr2",
      "--config.init_from=oltr1",
      "--config.num_epochs=1",
      "--config.dataset.open_set=True",
    ],
  ]
  for args in steps:
    extra = [] if args[0] == "evaluate" else [root, *SMALL]
    out = run_ltjax(*args, *extra, cwd=tmp_path)
    assert out.returncode == 0, (args, out.stderr[-3000:])
    assert "| Many | Medium | Few | All |" in out.stdout, out.stdout
  results = json.loads((tmp_path / "joint" / "results.json").read_text())
  assert set(results) == {"joint", "ncm", "tau_norm", "logit_adjustment"}
  per_class = json.loads((tmp_path / "crt" / "per_class.json").read_text())["crt"]
  assert per_class["train_count"] == [100, 47, 22, 10, 5]  # Exactly the data's classes.
  meta = json.loads((tmp_path / "joint" / "meta.json").read_text())
  assert meta["dataset"] == "folder" and meta["class_names"] == list(example.CLASS_NAMES)
  oltr = json.loads((tmp_path / "oltr2" / "results.json").read_text())["oltr"]
  assert "open_f_measure" in oltr  # The open/ folder is the open set.
  report = run_ltjax("report", "--workdir=joint", cwd=tmp_path)
  assert report.returncode == 0
  text = (tmp_path / "joint" / "report.md").read_text()
  assert "Dataset: `folder`" in text and "Classes (5): 0-zero, 1-one" in text


def test_the_folder_form_and_the_list_form_give_the_same_splits(data):
  folder = datasets.build_splits(config(root=str(data)).dataset, 0)
  lists = datasets.build_splits(lists_config(data).dataset, 0)
  assert folder.num_classes == lists.num_classes == 5
  for split in ("train", "val", "test"):
    a, b = getattr(folder, split), getattr(lists, split)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert [os.path.normpath(p) for p in a.paths] == [os.path.normpath(p) for p in b.paths]
  images_a, _ = folder.train.get_batch(np.arange(5))
  images_b, _ = lists.train.get_batch(np.arange(5))
  for x, y in zip(images_a, images_b, strict=True):
    np.testing.assert_array_equal(x, y)
  assert folder.class_names == example.CLASS_NAMES
  named = datasets.build_splits(lists_config(data, class_names="classes.txt").dataset, 0)
  assert named.class_names == example.CLASS_NAMES
  assert lists.class_names == ("0", "1", "2", "3", "4")


def test_a_missing_validation_split_is_carved_from_train_never_from_test(data, caplog):
  import logging

  c = lists_config(data, val_list="", val_per_class=3)
  with caplog.at_level(logging.INFO, logger="ltjax"):
    splits = datasets.build_splits(c.dataset, 7)
  assert "carved 15 images (up to 3 per class, seed 7)" in caplog.text
  assert np.bincount(splits.val.labels).tolist() == [3, 3, 3, 3, 3]
  assert splits.train_counts.tolist() == [97, 44, 19, 7, 2]
  carved = {splits.val.source.paths[i] for i in splits.val.indices}
  assert not carved & set(splits.test.paths) and carved <= set(splits.val.source.paths)
  again = datasets.build_splits(c.dataset, 7)
  np.testing.assert_array_equal(again.val.indices, splits.val.indices)  # By seed.


def write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)


@pytest.mark.parametrize(
  "case, message",
  [
    ("absent_from_train", r"class\(es\) 2 \(2\) have no training images but appear in test"),
    ("label_gap", r"classes \[1\] of 0..2 have no image in any split \(a gap in the labels"),
    ("empty_split", r"holds no records"),
    ("no_test_list", r"dataset 'lists' needs --config.dataset.test_list"),
    ("too_few_classes", r"--config.dataset.num_classes=2, but the lists use class 2"),
  ],
)
def test_list_errors_are_one_line_naming_the_fix(data, tmp_path, case, message):
  root = tmp_path
  shutil.copytree(data / "train", root / "train")
  shutil.copytree(data / "test", root / "test")
  train = ["train/0-zero/000.jpg 0", "train/1-one/000.jpg 1", "train/2-two/000.jpg 2"]
  test = ["test/0-zero/000.jpg 0", "test/1-one/000.jpg 1", "test/2-two/000.jpg 2"]
  fields = {"num_classes": 0}
  if case == "absent_from_train":
    train = train[:2]
  elif case == "label_gap":
    train, test = [train[0], "train/2-two/000.jpg 2"], [test[0], "test/2-two/000.jpg 2"]
  elif case == "empty_split":
    test = []
  elif case == "too_few_classes":
    fields["num_classes"] = 2
  write(root / "train.txt", "\n".join(train) + "\n")
  write(root / "test.txt", "\n".join(test) + "\n")
  c = config(
    "lists",
    root=str(root),
    train_list="train.txt",
    test_list="" if case == "no_test_list" else "test.txt",
    **fields,
  )
  with pytest.raises(ValueError, match=message):
    datasets.build_splits(c.dataset, 0)


def test_folder_errors_are_one_line_naming_the_fix(data, tmp_path):
  shutil.copytree(data / "train", tmp_path / "train")
  shutil.copytree(data / "test", tmp_path / "test")
  (tmp_path / "val" / "5-five").mkdir(parents=True)
  shutil.copy(data / "val" / "0-zero" / "000.jpg", tmp_path / "val" / "5-five" / "x.jpg")
  with pytest.raises(ValueError, match=r"val has class folder\(s\) \['5-five'\] that the training"):
    datasets.build_splits(config(root=str(tmp_path)).dataset, 0)
  shutil.rmtree(tmp_path / "val")
  shutil.rmtree(tmp_path / "train" / "4-four")
  (tmp_path / "train" / "4-four").mkdir()  # A class folder without images.
  with pytest.raises(ValueError, match=r"class\(es\) 4 \(4-four\) have no training images"):
    datasets.build_splits(config(root=str(tmp_path)).dataset, 0)
  with pytest.raises(ValueError, match="set --config.dataset.root to the directory holding"):
    datasets.build_splits(config().dataset, 0)


def test_a_moved_dataset_root_names_the_flag_that_points_at_it(data, tmp_path):
  """The dataset moved after a run was configured: one line naming the missing directory and
  --config.dataset.root, for both forms, not a folder scan's "image folder ... does not
  exist"."""
  shutil.copytree(data, tmp_path / "mine")
  folder, lists = config(root=str(tmp_path / "mine")), lists_config(tmp_path / "mine")
  for c in (folder, lists):
    datasets.build_splits(c.dataset, 0)
  (tmp_path / "mine").rename(tmp_path / "moved")
  for c in (folder, lists):
    with pytest.raises(ValueError) as e:
      datasets.build_splits(c.dataset, 0)
    assert str(e.value) == (
      f"dataset.root={tmp_path / 'mine'}: {tmp_path / 'mine'} does not exist; if the dataset "
      "moved, pass --config.dataset.root=NEW_DIR."
    )
  # A root without the tree's train/ folder: the same flag, naming the folder.
  with pytest.raises(ValueError, match=r"moved/train does not exist \(dataset 'folder' reads its "):
    shutil.rmtree(tmp_path / "moved" / "train")
    datasets.build_splits(config(root=str(tmp_path / "moved")).dataset, 0)


@pytest.mark.slow  # CI's 20 minutes: README's slow-set table names it.
def test_evaluate_uses_the_runs_own_config_and_refuses_other_training_fields(data, tmp_path):
  root = f"--config.dataset.root={data}"
  out = run_ltjax(
    "train",
    "--config=custom/joint.py",
    "--workdir=run",
    root,
    *SMALL,
    "--config.num_epochs=1",
    cwd=tmp_path,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  before = json.loads((tmp_path / "run" / "results.json").read_text())
  # The run's own config, with an evaluation field changed: the same figures.
  ok = run_ltjax("evaluate", "--workdir=run", "--config.eval.batch_size=16", cwd=tmp_path)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert json.loads((tmp_path / "run" / "results.json").read_text()) == before
  # Another seed would redraw the carve-outs and the test images it saw: refused.
  bad = run_ltjax("evaluate", "--workdir=run", "--config.seed=1", cwd=tmp_path)
  assert bad.returncode == 1
  assert "was trained with another config" in bad.stderr and "seed: 0 -> 1" in bad.stderr
  # A copy of the run elsewhere evaluates (its data location may be given again).
  shutil.copytree(tmp_path / "run", tmp_path / "copy")
  moved = run_ltjax("evaluate", "--workdir=copy", root, cwd=tmp_path)
  assert moved.returncode == 0, moved.stderr[-2000:]


def test_an_installed_wheel_resolves_a_shipped_config(tmp_path):
  # Not a clone: the wheel alone, run from a directory without configs/.
  pytest.importorskip("setuptools")  # The wheel is built without network (no isolation).
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
  built = subprocess.run(
    [
      sys.executable,
      "-m",
      "pip",
      "wheel",
      "--no-deps",
      "--no-build-isolation",
      "-w",
      str(wheel_dir),
      repo,
    ],
    capture_output=True,
    text=True,
  )
  assert built.returncode == 0, built.stderr[-2000:]
  wheel = next(wheel_dir.glob("ltjax-*.whl"))
  installed = subprocess.run(
    [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
    capture_output=True,
    text=True,
  )
  assert installed.returncode == 0, installed.stderr[-2000:]
  env = dict(os.environ, PYTHONPATH=str(target), XLA_FLAGS="")
  out = subprocess.run(
    [sys.executable, "-m", "ltjax.cli", "train", "--config=imagenet_lt/crt.py", "--help"],
    capture_output=True,
    text=True,
    cwd=tmp_path,
    env=env,
  )
  assert out.returncode == 0, out.stderr
  assert f"config fields that {target}{os.sep}" in out.stdout  # The installed config.
  assert re.search(r"--config.stage='crt'", out.stdout)
  listed = subprocess.run(
    [sys.executable, "-m", "ltjax.cli", "train", "--help"],
    capture_output=True,
    text=True,
    cwd=tmp_path,
    env=env,
  )
  assert "  custom/joint.py" in listed.stdout and "  imagenet_lt/crt.py" in listed.stdout


def test_prepare_packs_an_image_folder_and_training_reads_the_shards(data, tmp_path):
  out = run_ltjax(
    "prepare",
    "--config=custom/joint.py",
    f"--config.dataset.root={data}",
    "--out=packed",
    cwd=tmp_path,
  )
  assert out.returncode == 0, out.stderr
  assert "train: packed 184 images" in out.stdout
  direct = datasets.build_splits(config(root=str(data)).dataset, 0)
  packed = datasets.build_splits(config(packed_dir=str(tmp_path / "packed")).dataset, 0)
  assert packed.class_names == direct.class_names == example.CLASS_NAMES
  for split in ("train", "val", "test"):
    np.testing.assert_array_equal(getattr(packed, split).labels, getattr(direct, split).labels)
  a, _ = packed.test.get_batch(np.arange(10))
  b, _ = direct.test.get_batch(np.arange(10))
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x, y)


def test_tfds_keeps_a_datasets_own_distribution_on_request():
  import tensorflow_datasets as tfds

  c = config_lib.base_config()
  c.dataset.name, c.dataset.tfds_name, c.dataset.val_per_class = "tfds", "cifar10", 1
  c.dataset.image_size = 8
  with tfds.testing.mock_data(num_examples=200, policy=tfds.testing.MockPolicy.USE_CODE):
    cut = datasets.build_splits(c.dataset, 0)
    c.dataset.longtail = "none"
    kept = datasets.build_splits(c.dataset, 0)
  # "none": every training image but the validation carve-out, in its own class counts.
  assert len(kept.train) + len(kept.val) == 200 and len(kept.val) == 10
  assert len(cut.train) < len(kept.train)


def test_plan_takes_any_config_with_overrides_and_says_what_it_cannot_plan(data, tmp_path):
  out = run_ltjax(
    "plan",
    "--config=custom/joint.py",
    f"--config.dataset.root={data}",
    *SMALL[:2],
    "--devices=2",
    cwd=tmp_path,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert re.search(r"\| custom/joint.py \| cifar_resnet8 \| float32 \| 64 \| 32 \|", out.stdout)
  missing = run_ltjax(
    "plan", "--config=cifar10_lt/joint.py", "--config.dataset.data_dir=/nowhere", cwd=tmp_path
  )
  assert missing.returncode == 1
  assert "cannot plan dataset 'tfds' without its data" in missing.stderr
