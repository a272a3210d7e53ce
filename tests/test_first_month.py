"""The smaller traps of a user's first month (issue 31), each fixed at its cause."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from helpers import load_config, run_ltjax, tiny_config, tiny_splits

from ltjax import config as config_lib
from ltjax import demo
from ltjax.stop import STOP, Interrupted
from ltjax.train import experiment, loop, memory_plan, optim
from ltjax.train import workdir as workdir_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_of_another_dtype_in_the_same_directory_names_only_demos_flags(tmp_path):
  """`ltjax demo --dtype=bfloat16` after `ltjax demo`: ltjax_demo holds a float32 demo. The
  refusal comes before any training and names --workdir, not the resume check's
  --allow_config_change, which `ltjax demo` does not have."""
  (tmp_path / "ltjax_demo" / "joint").mkdir(parents=True)
  workdir_lib.write_config(str(tmp_path / "ltjax_demo" / "joint"), demo.joint_config())
  result = run_ltjax("demo", "--dtype=bfloat16", cwd=tmp_path)
  assert result.returncode == 1, result.stderr[-2000:]
  assert (
    f"{tmp_path / 'ltjax_demo'} holds a demo of other settings (joint/: model.dtype: "
    "'float32' -> 'bfloat16'): pass --workdir=OTHER_DIR" in result.stderr
  )
  named = set(re.findall(r"--[a-z_]+", result.stderr))
  assert named <= {"--workdir", "--dtype"}, named
  assert "demo: joint" not in result.stderr  # Refused before the first stage started.


def test_rerunning_a_finished_run_says_it_trains_nothing(tmp_path, caplog):
  config = tiny_config()
  loop.train(*experiment.setup(config, tiny_splits()), str(tmp_path))
  exp, state = experiment.setup(config, tiny_splits())
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    loop.train(exp, state, str(tmp_path))
  n = exp.total_steps
  assert (
    f"{tmp_path} holds a finished run (step {n} of {n}): nothing to train; evaluating it "
    "again. Use another --workdir to train anew." in caplog.messages
  )
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger="ltjax"):  # The demo says it once, itself.
    loop.train(exp, state, str(tmp_path), warn_if_finished=False)
  assert not [m for m in caplog.messages if "finished run" in m]


def test_rerunning_the_demo_says_once_that_it_reuses_its_stages(tmp_path, monkeypatch, caplog):
  for config in (demo.joint_config(), demo.crt_config(str(tmp_path / "joint"))):
    (tmp_path / config.method).mkdir()
    workdir_lib.write_config(str(tmp_path / config.method), config)

  def first_stage(config, stage_dir, workdir):
    raise RuntimeError("stop after the first stage")

  monkeypatch.setattr(demo, "_train_stage", first_stage)
  with caplog.at_level(logging.WARNING, logger="ltjax"), pytest.raises(RuntimeError):
    demo.run(str(tmp_path))
  assert caplog.messages == [
    f"{tmp_path} holds an earlier demo (joint, crt): finished stages are reused and evaluated "
    "again, unfinished ones resume. Use another --workdir for a fresh demo."
  ]


def test_plan_prints_the_configs_global_batch_and_the_per_device_one(tmp_path):
  """One device standing for one of 4 (--split_over=4): the config's global batch is 64 (the
  digits joint run), 16 per device; the table printed the compiled 16 as the global one."""
  result = run_ltjax(
    "plan", "--config=digits/joint.py", "--devices=1", "--split_over=4", cwd=tmp_path
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "| digits/joint.py | cifar_resnet8 | float32 | 64 | 16 |" in result.stdout


def _doubling_search(totals: dict, limit: float) -> int:
  """The exhaustive search largest_batch replaced: 8, 16, ... until one does not fit."""
  best = 0
  for size in sorted(totals):
    if totals[size] > limit:
      break
    best = size
  return best


def test_largest_batch_compiles_at_most_four_times_and_agrees_with_the_doubling_search(
  monkeypatch,
):
  real_plan = memory_plan.plan
  config = tiny_config()
  spec = memory_plan.data_spec(config)
  totals = {}
  for size in memory_plan.BATCH_SIZES:  # Every size compiled, once.
    config.batch_size = size
    totals[size] = real_plan(config, 1, spec)["total"]
  compiled = []

  def spy(config, devices, spec=None):
    compiled.append(config.batch_size)
    return real_plan(config, devices, spec)

  monkeypatch.setattr(memory_plan, "plan", spy)
  limit = (totals[128] + totals[256]) / 2
  assert memory_plan.largest_batch(config, 1, limit / memory_plan.GB, spec) == 128
  assert len(compiled) <= 4, compiled

  def recorded(config, devices, spec=None):
    compiled.append(config.batch_size)
    return {"total": totals[config.batch_size]}

  monkeypatch.setattr(memory_plan, "plan", recorded)
  limits = [totals[8] - 1, *totals.values(), *(t - 1 for t in totals.values()), 1e12]
  sizes = sorted(totals)
  limits += [(totals[a] + totals[b]) / 2 for a, b in zip(sizes, sizes[1:], strict=False)]
  for limit in limits:
    compiled.clear()
    got = memory_plan.largest_batch(config, 1, limit / memory_plan.GB, spec)
    assert got == _doubling_search(totals, limit), (limit, compiled)
    assert len(compiled) <= 4 and len(set(compiled)) == len(compiled), (limit, compiled)


def test_a_signal_stops_largest_batch_before_its_next_compile(monkeypatch):
  compiled = []

  def plan(config, devices, spec=None):
    compiled.append(config.batch_size)
    if len(compiled) == 2:
      STOP.signum = signal.SIGTERM  # As the handler records it, during the second compile.
    return {"total": 1000 * config.batch_size}

  monkeypatch.setattr(memory_plan, "plan", plan)
  with pytest.raises(Interrupted):
    memory_plan.largest_batch(tiny_config(), 1, 1.0, spec=object())
  assert compiled == [8, 16]


def test_a_wrong_config_path_is_one_line_with_the_closest_packaged_configs(tmp_path):
  result = run_ltjax("train", "--config=custom/jont.py:x", "--workdir=run", cwd=tmp_path)
  assert result.returncode == 2
  assert result.stderr == (
    "ltjax: error: --config=custom/jont.py: no such file, nor a config that ships with ltjax; "
    "did you mean custom/joint.py? `ltjax train --help` lists the packaged configs.\n"
  )
  far = run_ltjax("plan", "--config=nothing/here.py", cwd=tmp_path)
  assert far.returncode == 2 and "config_config" not in far.stderr
  assert "nothing/here.py: no such file" in far.stderr and "did you mean" not in far.stderr
  assert "`ltjax plan --help` lists the packaged configs." in far.stderr


def test_model_width_on_a_resnet_is_refused_like_cifar_shortcut():
  """model.width is the cifar_resnet backbones' channel multiplier; ResNet / ResNeXt have no
  such option (it was a TypeError traceback when the model was built): the backbone registry
  refuses another backbone's option, naming it."""
  checked = lambda config: experiment.checked(config, check_start=False)
  checked(tiny_config(**{"model.backbone": "cifar_resnet20", "model.width": 2}))
  for backbone in ("resnet10", "resnext50_32x4d"):
    with pytest.raises(ValueError) as e:
      checked(tiny_config(**{"model.backbone": backbone, "model.width": 2}))
    assert str(e.value) == (
      "--config.model.width=2 is an option of the cifar_resnet backbones (a channel "
      f"multiplier), not of {backbone}: leave it 1."
    )


@pytest.mark.parametrize(
  "overrides, advice, not_advised",
  [
    (  # lr 0 set explicitly, stepped per step: only the rate can fix it.
      {"optim.lr": 0.0, "num_epochs": 2},
      "optim.lr=0.0: set --config.optim.lr to a positive rate.",
      "lr_update",
    ),
    (
      {"optim.lr": 0.0, "optim.schedule": "constant", "optim.lr_update": "epoch_end"},
      "optim.lr=0.0: set --config.optim.lr to a positive rate.",
      "lr_update=step",
    ),
    (  # The references' per-epoch cosine over one epoch: its one epoch is the last.
      {"optim.lr_update": "epoch_start"},
      "for a short run use --config.num_epochs=2 or more, or --config.optim.lr_update=step.",
      "set --config.optim.lr",
    ),
  ],
)
def test_the_lr_0_refusal_gives_only_the_advice_that_applies(overrides, advice, not_advised):
  exp, state = experiment.setup(tiny_config(**overrides), tiny_splits())
  with pytest.raises(ValueError, match="the learning rate is 0 on every step") as e:
    loop.train(exp, state, "/nonexistent/never-made")
  assert str(e.value).endswith(advice), str(e.value)
  assert not_advised not in str(e.value).split("): it would train nothing.")[1]


@pytest.mark.parametrize("name, select", [("crt", "best_val"), ("lws", "final")])
def test_custom_crt_and_lws_train_no_epoch_at_lr_0(name, select):
  """Not reference reproductions: the cosine set every step (the references' per-epoch one
  spends the last epoch at lr 0), and LWS, which starts as the joint classifier, tests its
  final model rather than a best validation on a tiny carved split (often its first epoch)."""
  config = load_config(os.path.join(REPO, "ltjax", "configs", "custom", f"{name}.py"))
  assert config.optim.lr_update == "step"
  for num_train in (184, 1_000, 50_000):  # The example dataset's training split, and more.
    assert optim.from_config(config).zero_lr_epochs(num_train)[0] == []
  assert config.eval.select == select


@pytest.mark.parametrize("name, num_train", [("cifar10", 12_406), ("cifar100", 10_847)])
def test_logit_adjusted_configs_state_their_step_count_against_the_official_code(name, num_train):
  """google-research/logit_adjustment runs int(N / 128) steps per epoch (main.py's
  batches_per_epoch; batches of 128, remainder dropped); ltjax N / 128. The config's docstring
  and the README state both totals and how late the decays come, as computed here."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  path = os.path.join(REPO, "ltjax", "configs", f"{name}_lt", "logit_adjusted.py")
  config = load_config(path)
  epochs, warmup, milestones = config_lib.LOGIT_ADJUSTMENT_SCHEDULES[name]
  _, total = optim.from_config(config).run_length(num_train)
  official = int(num_train / 128)
  lrs = np.asarray(jax.vmap(optim.from_config(config).lr_schedule(num_train))(jnp.arange(total)))
  after_warmup = int(round(warmup * num_train / 128)) + 1
  decays = [
    after_warmup + int(np.argmax(lrs[after_warmup:] < config.optim.lr * 0.1**k * 1.001))
    for k in (1, 2, 3)
  ]
  late = [d - m * official for d, m in zip(decays, milestones, strict=True)]
  with open(path) as f:
    doc = " ".join(f.read().split('"""')[1].split())
  with open(os.path.join(REPO, "README.md")) as f:
    readme = " ".join(f.read().split())
  for text in (doc, readme):
    assert re.search(f"{total:,} (steps )?against {epochs * official:,}", text)
    assert "2 px of mid-grey" in text and "4 px of black" in text
  assert f"decays {late[0]:,}, {late[1]:,} and {late[2]:,} steps later" in doc


def test_a_double_ctrl_c_before_the_first_checkpoint_leaves_no_stale_metrics(tmp_path):
  """Two SIGINTs before any checkpoint: the second exits at once (os._exit), leaving
  config.json, the lock, metrics rows and an event file. The next run starts at step 0 and
  takes the stale lock over: its metrics.jsonl has each step once, tensorboard/ one file."""
  digits = os.path.join(REPO, "ltjax", "configs", "digits", "joint.py")
  args = [sys.executable, "-m", "ltjax.cli", "train", f"--config={digits}", "--workdir=run"]
  args += ["--config.model.width=1", "--config.log_every_steps=1"]
  args += ["--config.checkpoint_every_steps=100000", "--config.eval_every_epochs=0"]
  env = dict(os.environ, XLA_FLAGS="")
  proc = subprocess.Popen(
    [*args, "--config.num_epochs=400"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env
  )
  metrics = tmp_path / "run" / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
      break
    time.sleep(0.1)
  proc.send_signal(signal.SIGINT)
  lines = []
  for line in proc.stderr:  # The second as soon as the first is acknowledged: mid-step/save.
    lines.append(line)
    if "ltjax: signal 2: stopping after the current step" in line:
      proc.send_signal(signal.SIGINT)
      break
  stderr = "".join(lines) + proc.stderr.read()
  proc.wait(timeout=120)
  assert proc.returncode == 130, stderr
  assert "stopped at once by a second signal (2): no checkpoint had been saved." in stderr, stderr
  assert (tmp_path / "run" / "ltjax.lock").exists() and len(metrics.read_text().splitlines()) >= 2
  again = subprocess.run(
    [*args, "--config.num_epochs=1"], cwd=tmp_path, capture_output=True, text=True, env=env
  )
  assert again.returncode == 0, again.stderr[-3000:]
  steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
  assert steps == sorted(set(steps)) and steps[0] == 1, steps  # Each step once, in order.
  assert len(os.listdir(tmp_path / "run" / "tensorboard")) == 1
  assert not (tmp_path / "run" / "ltjax.lock").exists()


def test_evaluating_a_directory_that_is_not_a_run_is_one_line(tmp_path):
  (tmp_path / "notarun").mkdir()
  result = run_ltjax("evaluate", "--workdir=notarun", cwd=tmp_path)
  assert result.returncode == 2
  assert "Traceback" not in result.stderr, result.stderr
  assert "--workdir: " in result.stderr and "has no config.json" in result.stderr
  assert "--config=FILE" in result.stderr  # The way out: the run's config file.
  (tmp_path / "notarun" / "config.json").write_text("{truncated")
  result = run_ltjax("evaluate", "--workdir=notarun", cwd=tmp_path)
  assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
  assert "config.json is not valid JSON" in result.stderr
