"""Every number knows what it was computed on: a finished run evaluated after its data
moved, changed or was replaced, from another directory, under other settings; a later
stage under another seed. The faults are caused for real (files moved and relabelled,
directories changed), on the example dataset (5 classes, 32-px JPEGs)."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
from helpers import _override

import ltjax
from ltjax import config as config_lib
from ltjax.data import example
from ltjax.train import loop

SMALL = {
  "data.crop_size": 32,
  "model.backbone": "cifar_resnet8",
  "batch_size": 32,
  "eval.batch_size": 64,
  "eval.many_threshold": 40,
  "eval.few_threshold": 15,
  "num_epochs": 2,
  "data.num_threads": 1,
  "eval_every_epochs": 1,
}


def custom(stage_file: str, root, **overrides):
  path = os.path.join(os.path.dirname(ltjax.__file__), "configs", "custom", stage_file)
  return _override(config_lib.load_file(path), {**SMALL, "dataset.root": str(root), **overrides})


def of_run(workdir, **overrides):
  """The run's own config (config.json), with evaluation overrides, as `ltjax evaluate`."""
  return _override(config_lib.of_run(str(workdir)), overrides)


def read(workdir, name="results"):
  return json.loads((workdir / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A finished joint run (best_val) on a copy of the example dataset, with --posthoc rows."""
  base = tmp_path_factory.mktemp("provenance")
  root = base / "mine"
  example.write_example_dataset(str(root))
  workdir = base / "joint"
  c = custom("joint.py", root, **{"eval.select": "best_val"})
  loop.train_and_evaluate(c, str(workdir))
  loop.evaluate_run(of_run(workdir), str(workdir), posthoc=True)
  return root, workdir


def fresh(run, tmp_path):
  """A copy of the run and its data, for a test that changes them."""
  root, workdir = run
  shutil.copytree(root, tmp_path / "mine")
  shutil.copytree(workdir, tmp_path / "joint")
  c = json.loads((tmp_path / "joint" / "config.json").read_text())
  c["dataset"]["root"] = str(tmp_path / "mine")
  (tmp_path / "joint" / "config.json").write_text(json.dumps(c))
  return tmp_path / "mine", tmp_path / "joint"


def test_posthoc_rows_are_recomputed_after_a_test_image_moved(run, tmp_path, caplog):
  root, workdir = fresh(run, tmp_path)
  before = read(workdir)
  test = root / "test"
  a, b = sorted(p.name for p in test.iterdir())[:2]
  image = sorted((test / a).iterdir())[0]
  shutil.move(str(image), str(test / b / f"moved-{image.name}"))  # Counts unchanged.
  with caplog.at_level(logging.INFO, logger="ltjax"):
    loop.evaluate_run(of_run(workdir), str(workdir), posthoc=True)
  assert "the data differs from what" in caplog.text  # Said, not silent.
  assert "test.npz is of other data" in caplog.text  # The cache is not reused.
  after = read(workdir)
  digests = {m: row["computed_with"]["data"]["test"] for m, row in after.items()}
  assert len(set(digests.values())) == 1  # Every row of the new test data...
  assert digests["ncm"] != before["ncm"]["computed_with"]["data"]["test"]  # ...NCM's too.
  assert set(after) == set(before)


def test_another_dataset_under_the_root_is_refused(run, tmp_path):
  root, workdir = fresh(run, tmp_path)
  other = tmp_path / "other"
  shutil.copytree(root, other)
  next((other / "train" / "0-zero").iterdir()).unlink()  # Another training set.
  with pytest.raises(ValueError, match="was trained on other data than dataset.root=") as e:
    loop.evaluate_run(of_run(workdir, **{"dataset.root": str(other)}), str(workdir))
  assert "train: 184 records" in str(e.value) and "183 records" in str(e.value)
  assert "--config.dataset.root" in str(e.value)
  # A moved copy of the same data evaluates: the identity is relative to the root.
  moved = tmp_path / "moved"
  shutil.move(str(root), str(moved))
  out = loop.evaluate_run(of_run(workdir, **{"dataset.root": str(moved)}), str(workdir))
  assert out["joint"]["all"] == read(run[1])["joint"]["all"]


def test_a_relative_root_is_stored_resolved(run, tmp_path, monkeypatch):
  """A run trained with a relative dataset.root and evaluated from another directory that
  holds another dataset of the same name reads the data it was trained on."""
  root, _ = run
  first, second = tmp_path / "first", tmp_path / "second"
  shutil.copytree(root, first / "mine")
  shutil.copytree(root, second / "mine")
  for image in list((second / "mine" / "test" / "2-two").iterdir())[:5]:
    image.unlink()  # Another dataset under the same relative path.
  monkeypatch.chdir(first)
  c = custom("joint.py", "mine", **{"num_epochs": 1, "eval_every_epochs": 0})
  loop.train_and_evaluate(c, str(first / "run"))
  saved = json.loads((first / "run" / "config.json").read_text())
  assert saved["dataset"]["root"] == str(first / "mine")
  trained = read(first / "run")["joint"]
  monkeypatch.chdir(second)
  again = loop.evaluate_run(of_run(first / "run"), str(first / "run"))["joint"]
  assert again["computed_with"] == trained["computed_with"]
  assert again["all"] == trained["all"]


def test_other_thresholds_remove_the_rows_of_the_old_ones_and_say_so(run, tmp_path, caplog):
  _, workdir = fresh(run, tmp_path)
  assert set(read(workdir)) == {"joint", "ncm", "tau_norm", "logit_adjustment"}
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    loop.evaluate_run(of_run(workdir, **{"eval.many_threshold": 60}), str(workdir))
  assert set(read(workdir)) == {"joint"}
  assert "removed the rows of logit_adjustment, ncm, tau_norm" in caplog.text
  assert "shot thresholds many > 40 / few < 15, now 60 / 15" in caplog.text
  for name in ("per_class", "calibration", "weight_norms"):
    assert set(read(workdir, name)) == {"joint"}, name
  assert not (workdir / "tau_sweep.json").exists()
  assert read(workdir)["joint"]["computed_with"]["many_threshold"] == 60


def test_another_selection_replaces_the_tested_row_and_says_so(run, tmp_path, caplog):
  _, workdir = fresh(run, tmp_path)
  before = read(workdir)
  assert before["joint"]["selection"] == "best_val"
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    loop.evaluate_run(of_run(workdir, **{"eval.select": "final"}), str(workdir))
  after = read(workdir)
  assert after["joint"]["selection"] == "final"
  assert "joint's row tested the best_val model of step" in caplog.text
  if before["joint"]["computed_with"]["step"] != after["joint"]["computed_with"]["step"]:
    assert set(after) == {"joint"}  # The post-hoc rows were of the other model.
    assert "computed from joint's model of step" in caplog.text


def test_crt_under_another_seed_reuses_the_joint_runs_carve(run, tmp_path):
  """No val/ folder: 5 images per class are carved out of train by seed. cRT with seed 1
  over a joint run of seed 0 validates (and selects its model) on the joint's carve, never
  on the backbone's training images."""
  from ltjax.train import experiment

  root, _ = run
  data = tmp_path / "noval"
  shutil.copytree(root, data)
  shutil.rmtree(data / "val")
  joint = custom("joint.py", data, **{"num_epochs": 1, "eval_every_epochs": 0})
  loop.train_and_evaluate(joint, str(tmp_path / "joint"))
  exp_joint, _ = experiment.setup(joint)
  crt = custom("crt.py", data, **{"init_from": str(tmp_path / "joint"), "seed": 1})
  exp_crt, _ = experiment.setup(crt)
  assert exp_crt.split_seed == 0
  np.testing.assert_array_equal(exp_crt.splits.val.indices, exp_joint.splits.val.indices)
  trained = set(exp_joint.splits.train.record_keys())
  assert not trained & set(exp_crt.splits.val.record_keys())
  # Data changed under the joint run since: refused, naming the split.
  next((data / "train" / "4-four").iterdir()).unlink()
  with pytest.raises(ValueError, match="was trained on other splits of this dataset"):
    experiment.setup(crt)


def test_a_finished_own_data_run_is_evaluated_on_its_open_set(run, tmp_path):
  """The open set is only test images: `ltjax evaluate --open_set` adds the folder's open/
  images to a run trained without them, and reports the open-set figures."""
  from helpers import run_ltjax

  _, workdir = fresh(run, tmp_path)
  out = run_ltjax("evaluate", f"--workdir={workdir}", "--open_set", cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-2000:]
  joint = read(workdir)["joint"]
  assert "open_f_measure" in joint and "open_auroc" in joint
  assert "Open F" in out.stdout


def test_evaluate_takes_evaluation_fields_and_refuses_training_ones(run, tmp_path):
  """The in-process twin of the command-line walk-through in test_own_data.py (slow): an
  evaluation field changed gives the same figures; another seed would redraw the carve-outs
  and the test images the run saw, and is refused, naming the change."""
  _, workdir = fresh(run, tmp_path)
  before = read(workdir)
  loop.evaluate_run(of_run(workdir, **{"eval.batch_size": 16}), str(workdir))
  assert read(workdir) == before
  with pytest.raises(ValueError, match=r"was trained with another config(.|\n)*seed: 0 -> 1"):
    loop.evaluate_run(of_run(workdir, seed=1), str(workdir))
  assert read(workdir) == before
