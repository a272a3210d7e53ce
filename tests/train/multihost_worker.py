"""One process of a multi-process test run (started by test_multihost.py).

JAX_COORDINATOR_ADDRESS=... JAX_NUM_PROCESSES=N JAX_PROCESS_ID=I \
  python multihost_worker.py OUT_DIR DEVICES

Trains a tiny joint model for 3 steps, evaluates it, then trains OLTR stage 2 from it
for 3 steps, all through ``ltjax.train.loop`` (checkpoints included), and process 0
saves the final parameters of both runs to OUT_DIR/{joint,oltr}.npz.
"""

import os
import sys

out_dir, devices = sys.argv[1], int(sys.argv[2])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # For `import helpers`.
from helpers import flat_state, tiny_config, tiny_splits, tiny_stage2_config  # noqa: E402

from ltjax.train import distributed, loop, restore  # noqa: E402

assert distributed.initialize()  # From the environment, as `ltjax train` does.
assert jax.local_device_count() == devices


def run(config, workdir, name):
  splits = tiny_splits()
  results = loop.train_and_evaluate(config, workdir, splits=splits)
  _, state = restore.restore_trained(config, workdir, splits)
  if jax.process_index() == 0:
    np.savez(os.path.join(out_dir, f"{name}.npz"), **flat_state(state))
  return results


joint_dir = os.path.join(out_dir, "joint")
run(tiny_config(), joint_dir, "joint")  # 45 images, batch 16: 3 steps.
stage2 = tiny_stage2_config(joint_dir)
run(stage2, os.path.join(out_dir, "oltr"), "oltr")
print(f"process {jax.process_index()} done", flush=True)
