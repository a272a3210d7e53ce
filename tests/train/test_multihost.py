"""Multi-process training: 2 processes x 2 devices == 1 process x 4 devices.

The two processes run tests/train/multihost_worker.py on 127.0.0.1 (jax.distributed,
gloo collectives on CPU); the reference runs here, on 4 of the 8 simulated devices.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers import flat_state, stop_config, tiny_config, tiny_splits, tiny_stage2_config

from ltjax.train import distributed, experiment, loop, restore

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")
STOP_WORKER = os.path.join(os.path.dirname(__file__), "multihost_stop_worker.py")
TIMEOUT_S = 400


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_two_processes(worker: str, out) -> None:
  """Runs ``worker OUT 2`` as processes 0 and 1; both end even on failure."""
  address = f"127.0.0.1:{free_port()}"
  procs, logs = [], []
  try:
    for i in range(2):
      env = {
        **os.environ,
        "JAX_COORDINATOR_ADDRESS": address,
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": str(i),
      }
      log = open(out / f"process{i}.log", "w")
      logs.append(log)
      procs.append(
        subprocess.Popen(
          [sys.executable, worker, str(out), "2"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
      )
    deadline = time.monotonic() + TIMEOUT_S
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
      if any(p.returncode not in (None, 0) for p in procs):
        break  # One failed: the other would wait for it until the timeout.
      time.sleep(0.5)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()
    for log in logs:
      log.close()
  for i, p in enumerate(procs):
    if p.returncode != 0:
      text = (out / f"process{i}.log").read_text()
      pytest.fail(f"process {i} exited with {p.returncode}:\n{text[-4000:]}")


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  """Output directory of the 2-process run of multihost_worker.py."""
  out = tmp_path_factory.mktemp("two_processes")
  run_two_processes(WORKER, out)
  return out


def assert_same(got: dict, want, what: str) -> None:
  assert sorted(got) == sorted(want), what
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=f"{what} {key}")


def test_two_processes_match_one_process_with_as_many_devices(two_process_run, tmp_path):
  joint_dir, oltr_dir = str(tmp_path / "joint"), str(tmp_path / "oltr")
  for name, config, workdir in (
    ("joint", tiny_config(num_devices=4), joint_dir),
    ("oltr", tiny_stage2_config(joint_dir, num_devices=4), oltr_dir),
  ):
    exp, state = experiment.setup(config, tiny_splits())
    assert exp.mesh.size == 4
    state = loop.train(exp, state, workdir)
    assert int(state.step) == 3
    assert_same(np.load(two_process_run / f"{name}.npz"), flat_state(state), name)
    state, selected = restore.tested_model(exp, state, workdir)
    loop.runner.evaluate_and_write(exp, state, workdir, extra=selected)
    # Process 0 wrote the results, from the test predictions of both processes.
    with open(two_process_run / name / "results.json") as f, open(f"{workdir}/results.json") as g:
      two, one = json.load(f), json.load(g)
    # Accuracies exactly; ECE and NLL sum float32 probabilities that two compiled programs
    # may round in the last bit.
    assert two.keys() == one.keys()
    for method in two:
      assert two[method].keys() == one[method].keys()
      for key, value in two[method].items():
        if key in ("ece", "nll"):
          assert value == pytest.approx(one[method][key], rel=1e-5), (method, key)
        else:
          assert value == one[method][key], (method, key)
  with open(two_process_run / "joint" / "metrics.jsonl") as f:
    assert [json.loads(line)["step"] for line in f] == [1, 2, 3]
  names = sorted(os.listdir(two_process_run / "joint" / "checkpoints"))
  assert names == [
    "2",
    "3",
    "ltjax-checksums-2.json",
    "ltjax-checksums-3.json",
    "ltjax-health.json",
  ]


def test_checkpoint_of_two_processes_restores_in_one(two_process_run):
  for name, config in (
    ("joint", tiny_config()),
    ("oltr", tiny_stage2_config(str(two_process_run / "joint"))),
  ):
    exp, state = restore.restore_trained(config, str(two_process_run / name), tiny_splits())
    assert exp.mesh.size == jax.device_count() == 8
    assert_same(flat_state(state), np.load(two_process_run / f"{name}.npz"), name)


@pytest.mark.slow  # CI's 20 minutes: README's slow-set table names it.
def test_signal_to_one_process_stops_all_at_the_same_step_and_resumes(tmp_path):
  """SIGTERM reaches process 1 only, during step 2: both processes stop at the next
  logging step (4), save one checkpoint together and resume to the same final state as
  an uninterrupted run (here: 1 process, as many devices)."""
  out = tmp_path / "stop"
  out.mkdir()
  run_two_processes(STOP_WORKER, out)
  reports = [json.loads((out / f"process{i}.json").read_text()) for i in range(2)]
  for report in reports:
    assert report["interrupted"], report
    assert report["steps_run"] == 4, report
    assert report["checkpoints"] == [4], report
  saved = "after step 4: saved checkpoint step 4 in "
  assert reports[0]["reason"].startswith(f"stopped by a signal to another process {saved}")
  assert reports[1]["reason"].startswith(f"stopped by signal {int(signal.SIGTERM)} {saved}")
  exp, state = experiment.setup(stop_config(num_devices=4), tiny_splits())
  state = loop.train(exp, state, str(tmp_path / "uninterrupted"))
  assert int(state.step) == 12
  assert_same(np.load(out / "final.npz"), flat_state(state), "resumed")


def test_settings_from_flags_and_environment(monkeypatch):
  for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(var, raising=False)
  assert distributed.settings() is None
  assert not distributed.initialize()  # Single process: nothing to join.
  got = distributed.settings("10.0.0.1:1234", 4, 3)
  assert got == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:99")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.setenv("JAX_PROCESS_ID", "1")
  assert distributed.settings()["process_id"] == 1
  assert distributed.settings(process_id=0)["process_id"] == 0  # The flag wins.


@pytest.mark.parametrize(
  "args, message",
  [
    (("127.0.0.1:1", None, 0), "missing: num_processes"),
    ((None, 2, 0), "missing: coordinator_address"),
    (("127.0.0.1:1", 2, 2), "process_id must be in [0, 2)"),
    (("127.0.0.1", 2, 0), "host:port"),
  ],
)
def test_incomplete_settings_are_clear_errors(args, message, monkeypatch):
  for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(var, raising=False)
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
    distributed.settings(*args)


def test_bad_process_id_env_is_a_clear_error(monkeypatch):
  monkeypatch.setenv("JAX_PROCESS_ID", "one")
  with pytest.raises(ValueError, match="JAX_PROCESS_ID='one' is not an integer"):
    distributed.settings()
