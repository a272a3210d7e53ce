"""One process of the multi-process stop test (started by test_multihost.py).

JAX_COORDINATOR_ADDRESS=... JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=I \
  python multihost_stop_worker.py OUT_DIR DEVICES

Trains ``stop_config()`` (12 steps, logging every 4). Process 1 alone sends itself
SIGTERM during step 2, as a scheduler preempting one host would. Each process records
what its interrupted ``loop.train`` did in OUT_DIR/process<I>.json, then both resume the
run to the end, and process 0 saves the final state to OUT_DIR/final.npz.
"""

import dataclasses
import json
import os
import signal
import sys

out_dir, devices = sys.argv[1], int(sys.argv[2])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # For `import helpers`.
from helpers import flat_state, stop_config, tiny_splits  # noqa: E402

from ltjax.train import distributed, experiment, loop  # noqa: E402

assert distributed.initialize()
workdir = os.path.join(out_dir, "run")
config = stop_config()
exp, state = experiment.setup(config, tiny_splits())
step_fn, calls = exp.train_step, []


def signalled_step(state, batch):
  calls.append(1)
  if jax.process_index() == 1 and len(calls) == 2:
    os.kill(os.getpid(), signal.SIGTERM)
  return step_fn(state, batch)


report = {"interrupted": False}
try:
  loop.train(dataclasses.replace(exp, train_step=signalled_step), state, workdir)
except KeyboardInterrupt as e:
  report = {"interrupted": True, "reason": str(e), "steps_run": len(calls)}
report["checkpoints"] = sorted(
  int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()
)
with open(os.path.join(out_dir, f"process{jax.process_index()}.json"), "w") as f:
  json.dump(report, f)

exp, state = experiment.setup(config, tiny_splits())
state = loop.train(exp, state, workdir)  # Resumes from the checkpoint of the stop.
if jax.process_index() == 0:
  np.savez(os.path.join(out_dir, "final.npz"), **flat_state(state))
print(f"process {jax.process_index()} done", flush=True)
