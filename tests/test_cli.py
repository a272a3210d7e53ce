"""The command line, run as a user runs it: clear errors, no traceback soup."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds
from helpers import load_config, run_ltjax

from ltjax.train import loop

REPO = os.path.dirname(os.path.dirname(__file__))
DIGITS = os.path.join(REPO, "configs", "digits", "joint.py")
CIFAR = os.path.join(REPO, "configs", "cifar10_lt", "joint.py")


@pytest.mark.parametrize(
  "args, message",
  [
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.optim.lrr=1"],
      "bad --config or override: 'lrr' Did you mean \"lr\"",
    ),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.batch_size=abc"],
      "flag --config.batch_size=abc",
    ),
    (["train", "--config=missing.py", "--workdir=w"], "No such file or directory: 'missing.py'"),
    (["train", f"--config={DIGITS}"], "--workdir is required"),
    (["evaluate", f"--config={DIGITS}", "--workdir=empty"], "no checkpoint directory"),
    (
      ["train", f"--config={CIFAR}", "--workdir=w", "--config.dataset.data_dir=/nonexistent"],
      "cifar10",
    ),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.checkpoint_every_steps=0"],
      "checkpoint_every_steps must be an integer >= 1, got 0",
    ),
    (["fly"], "unknown command 'fly'; valid: train, evaluate, demo"),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--process_id=1", "--num_processes=2"],
      "missing: coordinator_address",
    ),
  ],
)
def test_bad_input_is_one_clear_error(args, message, tmp_path):
  result = run_ltjax(*args, cwd=tmp_path)
  assert result.returncode != 0
  assert message in result.stderr, result.stderr
  assert "Traceback" not in result.stderr, result.stderr


def test_train_then_evaluate_from_the_command_line(tmp_path):
  small = ["--config.num_epochs=1", "--config.batch_size=32", "--config.model.width=1"]
  result = run_ltjax("train", f"--config={DIGITS}", "--workdir=run", *small, cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert "| joint |" in result.stdout and "| Many |" in result.stdout
  os.remove(tmp_path / "run" / "results.json")
  result = run_ltjax(
    "evaluate", f"--config={DIGITS}", "--workdir=run", "--posthoc", *small, cwd=tmp_path
  )
  assert result.returncode == 0, result.stderr
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert set(results) == {"joint", "ncm", "tau_norm"}
  assert "| ncm |" in result.stdout and "| tau_norm |" in result.stdout
  assert (tmp_path / "run" / "tau_sweep.json").exists()
  assert set(json.loads((tmp_path / "run" / "weight_norms.json").read_text())) == {
    "joint",
    "tau_norm",
  }
  # digits-LT holds digits 8 and 9 out as the open set: --open_set reports on them ...
  result = run_ltjax(
    "evaluate", f"--config={DIGITS}", "--workdir=run", "--open_set", *small, cwd=tmp_path
  )
  assert result.returncode == 0, result.stderr
  joint = json.loads((tmp_path / "run" / "results.json").read_text())["joint"]
  # With 8 known classes the max softmax is >= 1/8 > 0.1: nothing is rejected, so of the 240
  # known test images (30 per class) the correct ones are TP, the others FP, and the 60 open
  # ones (digits 8, 9) are all FN.
  tp = joint["all"] * 240
  precision, recall = tp / 240, tp / (tp + 60)
  assert joint["open_f_measure"] == pytest.approx(2 * precision * recall / (precision + recall))
  assert 0.5 < joint["open_auroc"] <= 1
  # ... and is a clear error on a test split without open-set images.
  closed = [*small, "--config.dataset.open_classes=()"]
  result = run_ltjax("train", f"--config={DIGITS}", "--workdir=closed", *closed, cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  result = run_ltjax(
    "evaluate", f"--config={DIGITS}", "--workdir=closed", "--open_set", *closed, cwd=tmp_path
  )
  assert result.returncode == 1 and "no open-set images" in result.stderr


@pytest.mark.parametrize("name, examples", [("cifar10_lt", 300), ("cifar100_lt", 1500)])
def test_cifar_lt_config_trains_on_mocked_tfds(name, examples, tmp_path):
  config = load_config(os.path.join(REPO, "configs", name, "joint.py"))
  config.dataset.n_max, config.dataset.val_per_class = 6, 1
  config.dataset.imbalance_ratio = 3
  config.batch_size = config.eval.batch_size = 16
  config.num_epochs = 1
  config.model.backbone = "cifar_resnet8"
  with tfds.testing.mock_data(num_examples=examples, policy=tfds.testing.MockPolicy.USE_CODE):
    summary = loop.train_and_evaluate(config, str(tmp_path))
    exp, _ = loop.setup(config)
  assert set(summary) == {"many", "medium", "few", "all", "mean_class"}
  assert exp.splits.train_counts[0] == 6 and exp.splits.train_counts[-1] == 2
  assert len(exp.splits.val) == exp.splits.num_classes


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path):
  import signal
  import time

  args = [
    sys.executable,
    "-m",
    "ltjax.cli",
    "train",
    f"--config={DIGITS}",
    "--workdir=run",
    "--config.num_epochs=400",
    "--config.checkpoint_every_steps=100000",
    "--config.log_every_steps=1",
    "--config.model.width=1",
  ]
  proc = subprocess.Popen(
    args, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=dict(os.environ, XLA_FLAGS="")
  )
  metrics = tmp_path / "run" / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
      break
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr
  assert "run the same command again to resume" in stderr
  saved = [int(d) for d in os.listdir(tmp_path / "run" / "checkpoints") if d.isdigit()]
  assert saved and max(saved) >= 3  # Saved at the interruption, not a periodic step.
  last_logged = max(json.loads(line)["step"] for line in metrics.read_text().splitlines())
  assert max(saved) >= last_logged
