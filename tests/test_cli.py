"""The command line, run as a user runs it: clear errors, no traceback soup."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import tensorflow_datasets as tfds
from helpers import CLOSED_SET_KEYS, TOP5_KEYS, load_config, run_ltjax

from ltjax import config as config_lib
from ltjax.train import experiment, loop

REPO = os.path.dirname(os.path.dirname(__file__))
DIGITS = os.path.join(REPO, "configs", "digits", "joint.py")
CIFAR = os.path.join(REPO, "configs", "cifar10_lt", "joint.py")


@pytest.mark.parametrize(
  "args, message",
  [
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.optim.lrr=1"],
      "unknown config field optim.lrr (did you mean optim.lr?)",
    ),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.optimm.lr=1"],
      "unknown config field optimm.lr (did you mean optim.lr?)",
    ),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.batch_size=0"],
      "--config.batch_size must be an integer >= 1, got 0",
    ),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.batch_size=-8"],
      "--config.batch_size must be an integer >= 1, got -8",
    ),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.num_epochs=0"],
      "--config.num_epochs must be a number > 0, got 0",
    ),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.optim.lr=-0.1"],
      "--config.optim.lr must be a number >= 0, got -0.1",
    ),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.eval.open_threshold=2.0"],
      "--config.eval.open_threshold must be a number in [0, 1], got 2.0",
    ),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.batch_size=abc"],
      "flag --config.batch_size=abc",
    ),
    (["train", "--config=missing.py", "--workdir=w"], "--config=missing.py: no such file, nor a"),
    (["train", f"--config={DIGITS}"], "--workdir is required"),
    (["evaluate", f"--config={DIGITS}", "--workdir=empty"], "has no config.json and no checkpoint"),
    (
      ["train", f"--config={CIFAR}", "--workdir=w", "--config.dataset.data_dir=/nonexistent"],
      "cifar10",
    ),
    (
      ["train", f"--config={DIGITS}", "--workdir=w", "--config.checkpoint_every_steps=0"],
      "--config.checkpoint_every_steps must be an integer >= 1, got 0",
    ),
    (["fly"], "unknown command 'fly'; valid: train, evaluate, demo"),
    (
      ["verify", f"--config={DIGITS}", "--split=val"],
      "--split is not a flag of `ltjax verify`; its flags: --config, --splits.",
    ),
    (
      ["evaluate", f"--config={DIGITS}", "--workdir=w", "--allow_config_change"],
      "--allow_config_change is not a flag of `ltjax evaluate`",
    ),
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


@pytest.mark.slow  # CI's 20 minutes: README's slow-set table names it.
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
  assert set(results) == {"joint", "ncm", "tau_norm", "logit_adjustment"}
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
  # The mock's records are random (no CIFAR order): the seeded exponential cut here; the
  # configs' published cut trains on a real TFDS build in tests/data/test_cifar_lt.py.
  config.dataset.longtail = "exponential"
  config.dataset.n_max, config.dataset.val_per_class = 6, 1
  config.dataset.imbalance_ratio = 3
  config.batch_size = config.eval.batch_size = 16
  config.num_epochs = 1
  config.model.backbone = "cifar_resnet8"
  with tfds.testing.mock_data(num_examples=examples, policy=tfds.testing.MockPolicy.USE_CODE):
    summary = loop.train_and_evaluate(config, str(tmp_path))
    exp, _ = experiment.setup(config)
  assert set(summary) == CLOSED_SET_KEYS | TOP5_KEYS  # 10 classes: top-5 means something.
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


def start_train(tmp_path, *extra):
  args = [sys.executable, "-m", "ltjax.cli", "train", f"--config={DIGITS}", "--workdir=run"]
  return subprocess.Popen(
    [*args, "--config.model.width=1", *extra],
    cwd=tmp_path,
    stderr=subprocess.PIPE,
    text=True,
    env=dict(os.environ, XLA_FLAGS=""),
  )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_training_exits_cleanly_and_claims_nothing(tmp_path, signum):
  proc = start_train(tmp_path)
  lines = []
  for line in proc.stderr:  # Signalled as soon as the command says it has started.
    lines.append(line)
    if "ltjax train: work directory run" in line:
      proc.send_signal(signum)
      break
  rest = proc.stderr.read()
  proc.wait(timeout=120)
  stderr = "".join(lines) + rest
  assert proc.returncode == 130, stderr
  assert f"signal {int(signum)} before training started: nothing was saved" in stderr
  assert "Traceback" not in stderr and "checkpointed" not in stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.6, 1.5])
def test_a_signal_at_any_moment_is_honoured_with_a_true_message(tmp_path, delay):
  # The moments after setup (initialisation, compilation, JAX's garbage-collector
  # callbacks, the first steps): a handler that raised could land in a callback that
  # swallows the exception, and the run trained on and exited 0.
  proc = start_train(tmp_path, "--config.num_epochs=400", "--config.checkpoint_every_steps=50")
  lines = []
  for line in proc.stderr:
    lines.append(line)
    if "train images" in line:  # train_and_evaluate's line once setup is done.
      time.sleep(delay)
      proc.send_signal(signal.SIGTERM)
      break
  rest = proc.stderr.read()
  proc.wait(timeout=120)
  stderr = "".join(lines) + rest
  assert proc.returncode == 130, stderr
  assert "Exception ignored" not in stderr and "Traceback" not in stderr, stderr
  last = stderr.strip().splitlines()[-1]
  saved = re.search(r"stopped by signal 15 after step (\d+): saved checkpoint step \1", last)
  if saved:
    assert (tmp_path / "run" / "checkpoints" / saved.group(1)).is_dir()
  else:
    assert "signal 15 before training started: nothing was saved" in last, last
    assert not list((tmp_path / "run").glob("checkpoints/[0-9]*"))


def test_ctrl_c_stops_a_single_process_run_after_the_current_step(tmp_path):
  proc = start_train(
    tmp_path,
    "--config.num_epochs=400",
    "--config.log_every_steps=1000",
    "--config.checkpoint_every_steps=5",
  )
  first = tmp_path / "run" / "checkpoints" / "5"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None and not first.exists():
    time.sleep(0.2)
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr
  m = re.search(r"stopped by signal 2 after step (\d+): saved checkpoint step \1", stderr)
  assert m, stderr
  saved = max(int(d) for d in os.listdir(tmp_path / "run" / "checkpoints") if d.isdigit())
  assert saved == int(m.group(1)) < 100  # After that step, not at the next logging step.
  assert "Traceback" not in stderr


def test_a_second_signal_stops_at_once_naming_the_intact_checkpoint(tmp_path):
  proc = start_train(tmp_path, "--config.num_epochs=400", "--config.checkpoint_every_steps=2")
  first = tmp_path / "run" / "checkpoints" / "4"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None and not first.exists():
    time.sleep(0.1)
  proc.send_signal(signal.SIGINT)  # Two at once: the second lands mid-step or mid-save.
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr
  assert "Traceback" not in stderr and "Exception" not in stderr, stderr
  last = stderr.strip().splitlines()[-1]
  m = re.search(r"the latest complete checkpoint, step (\d+) in \S+, is intact", last) or re.search(
    r"stopped by signal 2 after step (\d+): saved checkpoint step", last
  )
  assert m, stderr
  assert (tmp_path / "run" / "checkpoints" / m.group(1)).is_dir()


def test_verify_lists_every_unreadable_image_at_once(tmp_path):
  from PIL import Image

  root = tmp_path / "images"
  root.mkdir()
  for i in range(4):
    Image.new("RGB", (40, 30), (i * 60, 0, 0)).save(root / f"{i}.jpg")
  (root / "bad.jpg").write_bytes(b"not a jpeg")
  lines = ["0.jpg 0", "1.jpg 1", "missing.jpg 0", "2.jpg 1", "bad.jpg 0", "3.jpg 1"]
  (root / "ImageNet_LT_train.txt").write_text("\n".join(lines) + "\n")
  for split in ("val", "test"):  # Other images: splits never share one.
    for i in range(2):
      Image.new("RGB", (40, 30), (0, i * 60, 0)).save(root / f"{split}{i}.jpg")
    (root / f"ImageNet_LT_{split}.txt").write_text(f"{split}0.jpg 0\n{split}1.jpg 1\n")
  config = os.path.join(REPO, "configs", "imagenet_lt", "joint_instance.py")
  result = run_ltjax(
    "verify", f"--config={config}", f"--config.dataset.root={root}", "--splits=train", cwd=tmp_path
  )
  assert result.returncode == 1, result.stderr
  assert "train: 6 images, 2 unreadable" in result.stdout
  assert "missing.jpg" in result.stdout and "line 3" in result.stdout
  assert "bad.jpg" in result.stdout and "line 5" in result.stdout
  assert "ltjax verify" not in result.stdout  # Not told to run the command it ran.
  assert "2 unreadable image(s)" in result.stderr and "skip_corrupt=True" in result.stderr


def test_a_config_file_with_an_error_names_its_line(tmp_path):
  (tmp_path / "bad.py").write_text("def get_config(:\n  pass\n")
  (tmp_path / "undefined.py").write_text("def get_config():\n\n  return undefined_name\n")
  for name, message in (
    ("bad.py", "bad.py line 1: invalid syntax"),
    ("undefined.py", "undefined.py line 3: NameError: name 'undefined_name' is not defined"),
  ):
    result = run_ltjax("train", f"--config={tmp_path / name}", "--workdir=w", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


MULTI_PROCESS = ["--coordinator_address", "--num_processes", "--process_id", "--distributed"]


@pytest.mark.parametrize(
  "command, flag_names",
  [
    ("train", ["--config", "--workdir", "--allow_config_change", *MULTI_PROCESS]),
    ("evaluate", ["--config", "--workdir", "--posthoc", "--open_set", *MULTI_PROCESS]),
    ("demo", ["--workdir", "--dtype"]),
    ("report", ["--workdir", "--compare"]),
    ("stats", ["--split", "--num_classes", "--config"]),
    (
      "prepare",
      ["--dataset", "--root", "--out", "--lists_dir", "--splits", "--records_per_shard"]
      + ["--config"],
    ),
    ("verify", ["--config", "--splits"]),
    ("import-torch", ["--config", "--workdir", "--allow_pickle"]),
    ("plan", ["--config", "--devices", "--split_over", "--fit"]),
    ("example-data", ["--out"]),
  ],
)
def test_every_command_answers_help_with_its_own_flags(command, flag_names, tmp_path):
  for option in ("--help", "-h"):
    result = run_ltjax(command, option, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ltjax {command}: ")
    listed = re.findall(r"^  (--\w+):", result.stdout, re.M)
    assert listed == flag_names


def test_help_with_a_config_lists_its_fields(tmp_path):
  result = run_ltjax("train", f"--config={DIGITS}", "--help", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert "  --config.optim.lr=0.05" in result.stdout
  assert "  --config.sampler.name='instance'" in result.stdout
  result = run_ltjax("--help", cwd=tmp_path)
  assert result.returncode == 0 and "ltjax verify" in result.stdout


def test_report_compare_from_the_command_line(tmp_path):
  for name, acc in (("a", 0.5), ("b", 0.75)):
    (tmp_path / name).mkdir()
    row = {"many": acc, "medium": acc, "few": acc, "all": acc, "mean_class": acc}
    (tmp_path / name / "results.json").write_text(json.dumps({"joint": row}))
  result = run_ltjax("report", "--workdir=cmp", "--compare", "a", "b", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert "| joint@a | 50.0 |" in result.stdout and "| joint@b | 75.0 |" in result.stdout
  assert (tmp_path / "cmp" / "report.md").exists()
  result = run_ltjax("report", "--workdir=a", "--compare", "a", "b", cwd=tmp_path)
  assert result.returncode != 0 and "its own directory" in result.stderr
  assert "Traceback" not in result.stderr


NO_JAX = """
import sys
from ltjax import cli
try:
  cli.main(["ltjax", *sys.argv[1:]])
except SystemExit:
  pass
print("jax imported" if "jax" in sys.modules else "no jax")
"""


@pytest.mark.parametrize(
  "args",
  [
    ["--help"],
    ["report", "--help"],
    ["report", "--workdir=RUN"],
    ["stats", "--split=LIST"],
    ["prepare", "--dataset=imagenet_lt", "--root=/nonexistent", "--out=OUT"],
    ["verify", f"--config={DIGITS}", "--splits=test"],
    ["train", f"--config={DIGITS}", "--help"],
  ],
  ids=lambda a: " ".join(a)[:40],
)
def test_commands_that_need_no_jax_do_not_import_it(args, tmp_path):
  # JAX, orbax and grain take over a second to import: only the commands that run a model
  # pay for them.
  run = tmp_path / "run"
  run.mkdir()
  (run / "results.json").write_text(json.dumps({"joint": {"many": 1.0, "all": 0.5}}))
  (tmp_path / "list.txt").write_text("a/1.jpg 0\na/2.jpg 1\n")
  args = [
    a.replace("RUN", str(run)).replace("LIST", str(tmp_path / "list.txt"))
    for a in (x.replace("OUT", str(tmp_path / "out")) for x in args)
  ]
  out = subprocess.run(
    [sys.executable, "-c", NO_JAX, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
  )
  assert out.stdout.strip().splitlines()[-1] == "no jax", out.stdout + out.stderr


def test_a_full_disk_is_one_line_naming_the_step_and_the_run_resumes(small_disk):
  args = [
    "train",
    f"--config={DIGITS}",
    f"--workdir={small_disk / 'run'}",
    "--config.checkpoint_every_steps=5",
    "--config.keep_checkpoints=5",
  ]
  out = run_ltjax(*args, cwd=small_disk.parent)
  assert out.returncode == 1, out.stderr
  errors = [line for line in out.stderr.splitlines() if not re.match(r"\d\d:\d\d:\d\d ", line)]
  assert re.fullmatch(
    r"ltjax: error: could not (?:save checkpoint step|write the metrics of step) (\d+) "
    r"(?:in|to) \S+: no space left on device\. The "
    r"checkpoints saved before it are intact; .* run the same command again to resume from "
    r"the latest one\.",
    errors[0],
  ), out.stderr
  assert len(errors) == 2 and "LTJAX_DEBUG" in errors[1], out.stderr  # No tracebacks.
  failed = int(re.search(r"step (\d+)", errors[0]).group(1))
  saved = [int(d) for d in os.listdir(small_disk / "run" / "checkpoints") if d.isdigit()]
  assert saved and max(saved) < failed
  remounted = subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)])
  assert remounted.returncode == 0
  again = run_ltjax(*args, cwd=small_disk.parent)
  assert again.returncode == 0, again.stderr
  assert f"resumed from step {max(saved)}" in again.stderr
  assert (small_disk / "run" / "results.json").exists()


@pytest.mark.parametrize(
  "override, message",
  [
    ("--config.optim.lrr=1", "unknown config field optim.lrr (did you mean optim.lr?)"),
    ("--config.eval.ece_binz=3", "(did you mean eval.ece_bins?)"),
    # The closest block would not hold the rest of the path: no suggestion, the listing.
    ("--config.evall.x=3", f"evall.x; `ltjax train --config={DIGITS} --help` lists the fields"),
    ("--config.batch_size.x=1", "unknown config field batch_size.x; `ltjax train --config="),
    ("--config.optim.lr=1", None),  # A field: nothing to say.
  ],
)
def test_an_unknown_override_is_found_in_the_config_itself(override, message):
  from ltjax.cli import parse

  args = [f"--config={DIGITS}", "--workdir=w", override]
  got = parse._unknown_field("train", args)
  assert got == message if message is None else message in got


def test_an_unknown_override_of_a_runs_own_config_names_its_config_json(tmp_path):
  from ltjax.cli import config_files, parse

  run = str(tmp_path / "run")
  os.makedirs(run)
  with open(os.path.join(run, "config.json"), "w") as f:
    json.dump(config_lib.base_config().to_dict(), f)
  args = [f"--config={config_files.RUN_CONFIG}:{run}", "--config.evall.batch_size=3"]
  assert parse._unknown_field("evaluate", args) == (
    "unknown config field evall.batch_size (did you mean eval.batch_size?)"
  )
  args[1] = "--config.evall.x=3"
  assert parse._unknown_field("evaluate", args) == (
    f"unknown config field evall.x; {run}/config.json has the fields"
  )
