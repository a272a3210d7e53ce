"""The command line, run as a user runs it: clear errors, no traceback soup."""

import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds
from helpers import load_config

from ltjax.train import loop

REPO = os.path.dirname(os.path.dirname(__file__))
DIGITS = os.path.join(REPO, "configs", "digits", "joint.py")
CIFAR = os.path.join(REPO, "configs", "cifar10_lt", "joint.py")


def ltjax(*args, tmp_path):
  env = dict(os.environ, XLA_FLAGS="")
  return subprocess.run(
    [sys.executable, "-m", "ltjax.cli", *args],
    capture_output=True,
    text=True,
    cwd=tmp_path,
    env=env,
    timeout=300,
  )


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
    (["fly"], "unknown command 'fly'; valid: train, evaluate, demo"),
  ],
)
def test_bad_input_is_one_clear_error(args, message, tmp_path):
  result = ltjax(*args, tmp_path=tmp_path)
  assert result.returncode != 0
  assert message in result.stderr, result.stderr
  assert "Traceback" not in result.stderr, result.stderr


def test_train_then_evaluate_from_the_command_line(tmp_path):
  small = ["--config.num_epochs=1", "--config.batch_size=32", "--config.model.width=1"]
  result = ltjax("train", f"--config={DIGITS}", "--workdir=run", *small, tmp_path=tmp_path)
  assert result.returncode == 0, result.stderr
  assert "joint" in result.stdout and "many" in result.stdout
  os.remove(tmp_path / "run" / "results.json")
  result = ltjax("evaluate", f"--config={DIGITS}", "--workdir=run", *small, tmp_path=tmp_path)
  assert result.returncode == 0, result.stderr
  assert (tmp_path / "run" / "results.json").exists()
  result = ltjax(
    "evaluate", f"--config={DIGITS}", "--workdir=run", "--open_set", *small, tmp_path=tmp_path
  )
  assert result.returncode == 1 and "no open-set images" in result.stderr


def test_cifar10_lt_config_trains_on_mocked_tfds(tmp_path):
  config = load_config(CIFAR)
  config.dataset.n_max = 12
  config.dataset.imbalance_ratio = 4
  config.batch_size = config.eval.batch_size = 16
  config.num_epochs = 1
  config.model.backbone = "cifar_resnet8"
  with tfds.testing.mock_data(num_examples=200, policy=tfds.testing.MockPolicy.USE_CODE):
    summary = loop.train_and_evaluate(config, str(tmp_path))
  assert set(summary) == {"many", "medium", "few", "all", "mean_class"}
