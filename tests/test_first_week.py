"""The traps a new user met in the first week past the demo, each fixed at its cause."""

import io
import logging
import os
import re

import numpy as np
import pytest
from helpers import run_ltjax, tiny_config, tiny_splits

from ltjax.train import experiment, loop

REPO = os.path.dirname(os.path.dirname(__file__))
DIGITS = os.path.join(REPO, "configs", "digits", "joint.py")
IMAGENET = os.path.join(REPO, "configs", "imagenet_lt", "joint_instance.py")


def test_a_run_that_would_train_at_lr_0_throughout_is_refused_and_leaves_nothing(tmp_path):
  """num_epochs=1 with a per-epoch cosine set before each epoch (the references' coslr):
  every step at lr 0. Refused before the work directory exists."""
  config = tiny_config(num_epochs=1, **{"optim.lr_update": "epoch_start"})
  exp, state = experiment.setup(config, tiny_splits())
  with pytest.raises(ValueError, match="learning rate is 0 on every step.*--config.num_epochs=2"):
    loop.train(exp, state, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_a_last_epoch_at_lr_0_is_said(tmp_path, caplog):
  config = tiny_config(num_epochs=3, **{"optim.lr_update": "epoch_start"})
  exp, state = experiment.setup(config, tiny_splits())
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    loop.train(exp, state, str(tmp_path / "run"))
  assert "1 of the run's 3 epochs train at learning rate 0 (epoch 3;" in caplog.text


def test_a_failed_run_leaves_no_work_directory_it_created(tmp_path):
  """A run that fails before its first checkpoint (here its second step raises) removes the
  directory it made; a directory that existed is left as it was."""
  exp, state = experiment.setup(tiny_config(num_epochs=2), tiny_splits())
  real_step = exp.train_step

  def failing_step(*args):
    raise ValueError("a corrupt image")

  exp.train_step = failing_step
  with pytest.raises(ValueError, match="a corrupt image"):
    loop.train(exp, state, str(tmp_path / "new"))
  assert not (tmp_path / "new").exists()
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("keep")
  with pytest.raises(ValueError, match="a corrupt image"):
    loop.train(exp, state, str(tmp_path / "mine"))
  assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
  exp.train_step = real_step


def test_help_lists_only_the_fields_the_components_read_and_setting_another_warns(caplog):
  result = run_ltjax("train", f"--config={IMAGENET}", "--help", cwd=REPO)
  assert result.returncode == 0, result.stderr
  lines = {line.split("=")[0].strip(): line for line in result.stdout.splitlines()}
  for unread in ("image_size", "imbalance_ratio", "n_max", "train_split", "val_per_class"):
    assert f"--config.dataset.{unread}" not in lines
  assert not any(name.startswith("--config.oltr.") for name in lines)  # Joint: no OLTR option.
  assert "the image directory the list paths are relative to" in " ".join(result.stdout.split())
  for read in ("root", "lists_dir", "open_set", "optim.lr", "sampler.name"):
    name = f"--config.{read}" if "." in read else f"--config.dataset.{read}"
    assert name in lines, name
  config = tiny_config()
  config.dataset.name, config.dataset.image_size = "imagenet_lt", 32
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    experiment.checked(config, check_start=False)
  assert "dataset.image_size=32 (data.crop_size sets the image side" in caplog.text


def test_a_missing_list_names_the_first_list_and_the_field(tmp_path):
  (tmp_path / "lists").mkdir()
  (tmp_path / "lists" / "ImageNet_LT_test.txt").write_text("a.jpg 0\n")
  result = run_ltjax(
    "train",
    f"--config={IMAGENET}",
    "--workdir=run",
    f"--config.dataset.root={tmp_path}",
    "--config.dataset.lists_dir=lists",
    cwd=tmp_path,
  )
  assert result.returncode == 1
  lists = tmp_path / "lists" / "ImageNet_LT_train.txt"  # Stored resolved: absolute.
  assert f"its train list '{lists}' does not exist" in result.stderr
  assert "2 of its 3 lists are missing" in result.stderr
  assert "set --config.dataset.lists_dir" in result.stderr
  assert not (tmp_path / "run").exists()


def test_a_corrupt_image_is_named_by_its_file(tmp_path):
  from ltjax.data.sources.decode import decode_image

  with pytest.raises(ValueError) as e:
    decode_image(b"not an image at all")
  assert "BytesIO" not in str(e.value) and "not a format PIL reads (19 bytes" in str(e.value)
  result = run_ltjax("example-data", "--out=ex", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  bad = sorted((tmp_path / "ex" / "train").rglob("*.jpg"))[0]
  bad.write_bytes(b"\x00" * 64)
  result = run_ltjax(
    "verify", "--config=custom/joint.py", "--config.dataset.root=ex", "--splits=train", cwd=tmp_path
  )
  assert os.path.relpath(bad, tmp_path) in result.stdout + result.stderr
  assert "BytesIO" not in result.stdout + result.stderr


def test_console_lines_are_time_level_message(tmp_path):
  result = run_ltjax(
    "train", f"--config={DIGITS}", "--workdir=run", "--config.num_epochs=1", cwd=tmp_path
  )
  assert result.returncode == 0, result.stderr
  logged = [line for line in result.stderr.splitlines() if line.strip()]
  assert logged
  for line in logged:
    assert re.match(r"^\d\d:\d\d:\d\d (INFO|WARNING) \S", line), line
  assert "loop.py:" not in result.stderr


def test_log_lines_clear_and_redraw_a_progress_bar():
  """A line logged while a bar is drawn on the same stream goes through tqdm.write: the bar
  is cleared first and redrawn after, so the line is never glued to the bar."""
  import sys

  import tqdm

  from ltjax import cli

  stream = io.StringIO()
  handler = cli._ConsoleHandler()
  handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
  real = sys.stderr
  sys.stderr = stream
  try:
    bar = tqdm.tqdm(total=10, file=stream, ascii=True, mininterval=0)
    bar.update(3)
    handler.emit(logging.LogRecord("ltjax", logging.INFO, __file__, 1, "hello", None, None))
    bar.close()
  finally:
    sys.stderr = real
  text = stream.getvalue()
  assert "\nINFO hello\n" in text.replace("\r", "\n"), repr(text)
  before = text[: text.index("INFO hello")]
  assert before.endswith("\r") or before.endswith("\n"), repr(text)  # The bar was cleared.


def test_runs_are_ignored_by_git():
  with open(os.path.join(REPO, ".gitignore")) as f:
    assert "runs/" in f.read().split()


# ------------------------------------------------------------------------------ figures


def capture_figures(monkeypatch):
  from ltjax.evaluate.report import plots

  saved = {}

  def keep(fig, path):
    saved[os.path.basename(path)] = fig

  monkeypatch.setattr(plots, "_save", keep)
  return saved


def results_files(tmp_path, counts, methods=("joint", "crt", "lws", "oltr")):
  """Results of a run with these training counts (two with equal accuracies per class)."""
  import json

  from ltjax.evaluate import metrics

  k = len(counts)
  rng = np.random.default_rng(0)
  acc = rng.uniform(0.2, 1.0, k)
  entry = {"accuracy": acc, "test_count": np.full(k, 10), "train_count": counts}
  norm = np.where(np.asarray(counts) > 0, 1.0 + 1e-4 * np.arange(k), 50.0)  # Empty: huge.
  t = np.linspace(0, 1, 41)
  curve = {"thresholds": t, "f_measure": np.where(t < 1, 0.9 + 0.05 * t, 0.0)}
  files = {
    "results": {m: {"all": 0.5} for m in methods},
    "per_class": {m: entry for m in methods},
    "weight_norms": {m: norm for m in ("joint", "crt")},
    "open_set_curve": {m: curve for m in methods},
  }
  for name, obj in files.items():
    (tmp_path / f"{name}.json").write_text(json.dumps(metrics.to_jsonable(obj)))
  return acc


def test_figures_with_five_classes(tmp_path, monkeypatch):
  from matplotlib.ticker import ScalarFormatter

  from ltjax.evaluate import report

  acc = results_files(tmp_path, [100, 47, 22, 10, 5])
  figs = capture_figures(monkeypatch)
  report.write_report(str(tmp_path))
  ax = figs["per_class_accuracy.png"].axes[0]
  lines = [line for line in ax.get_lines() if line.get_label() in ("Joint", "OLTR", "cRT", "LWS")]
  assert len(lines) == 4
  order = np.argsort([100, 47, 22, 10, 5])
  for line in lines:  # No moving average over 3 of 5 classes: the classes themselves.
    np.testing.assert_allclose(line.get_ydata(), 100 * acc[order])
  assert len({line.get_marker() for line in lines}) == 4  # Equal curves stay told apart.
  assert "lines join the classes" in ax.get_title()
  assert isinstance(ax.xaxis.get_major_formatter(), ScalarFormatter)  # "10", not "10^1".
  open_set = figs["open_set_f_measure.png"].axes[0]
  low, high = open_set.get_ylim()
  assert low > 0.8 and high <= 1.0 and "axis zoomed: 0.90" in open_set.get_ylabel()


def test_figures_with_a_thousand_classes_and_empty_ones(tmp_path, monkeypatch):
  from ltjax.evaluate import report

  counts = np.floor(1280 * (1 / 256) ** (np.arange(1000) / 999)).astype(int)
  counts[-20:] = 0
  results_files(tmp_path, counts)
  figs = capture_figures(monkeypatch)
  report.write_report(str(tmp_path))
  norms = figs["weight_norms.png"].axes[0]
  assert "20 classes without training images left out" in norms.get_title()
  for line in norms.get_lines():
    if line.get_label() in ("Joint", "cRT"):
      assert len(line.get_xdata()) == 980 and max(line.get_ydata()) <= 1.0
      assert min(line.get_ydata()) > 0.9  # The empty classes' huge norms do not squash it.
  per_class = figs["per_class_accuracy.png"].axes[0]
  assert "moving average over 98" in per_class.get_title()
  assert per_class.get_xscale() == "log"
