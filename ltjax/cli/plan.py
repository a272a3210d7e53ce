"""``ltjax plan``: the memory of a config's train step per device, before any data is read.
It must set the simulated device count before JAX starts, so it imports JAX itself, late."""

from __future__ import annotations

import os
import sys

from ltjax.cli.config_files import CONFIG_PATH, config_name
from ltjax.cli.flags import CONFIG, DEVICES, FIT, SPLIT_OVER, require


def cmd_plan(argv) -> None:
  """The memory one device needs for the config's train step (compiled without data; on a
  CPU an estimate of what a GPU/TPU allocates), and with --fit the largest batch that fits."""
  del argv
  require(CONFIG, "config")
  devices, split = DEVICES.value, SPLIT_OVER.value or DEVICES.value
  if devices < 1 or split < 1:
    raise ValueError("--devices and --split_over must be >= 1.")
  if "jax" not in sys.modules:  # Simulated CPU devices must be asked for before JAX starts.
    os.environ["XLA_FLAGS"] = (
      f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    ).strip()
  import jax

  from ltjax.stop import STOP
  from ltjax.train import memory_plan

  config = CONFIG.value
  if config.batch_size % split:
    raise ValueError(f"batch_size {config.batch_size} is not divisible by --split_over={split}.")
  per_device = config.batch_size // split
  # Compiled for `devices` devices at the per-device batch of the config's global batch split
  # over `split`; the table shows the config's own global batch.
  compiled = config.copy_and_resolve_references()
  compiled.batch_size = per_device * devices
  spec = memory_plan.data_spec(compiled)
  result = memory_plan.plan(compiled, devices, spec)
  platform = jax.devices()[0].platform
  print(f"{devices} {platform} device(s); per-device figures of the compiled train step")
  print(memory_plan.TABLE_HEADER)
  print(memory_plan.format_plan(config_name(CONFIG_PATH[0]), config, result, per_device))
  if FIT.value:
    STOP.check()
    fit = memory_plan.largest_batch(compiled, devices, FIT.value, spec)
    print(f"largest per-device batch within {FIT.value:g} GB: {fit}")
