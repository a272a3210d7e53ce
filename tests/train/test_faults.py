"""Nothing lost, nothing silent: divergence, config drift, damaged checkpoints, the work
directory lock, environment faults and bad data, injected from here (never by scaffolding
in the library)."""

import errno
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import tiny_config, tiny_splits, tiny_stage2_config

from ltjax.evaluate import runner
from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import experiment, integrity, loop, restore, workdir
from ltjax.train import init_from as init_lib

SPLITS = tiny_splits()


def run(workdir_path, **overrides):
  """A tiny run (45 images, batch 16: 3 steps an epoch), checkpoints every 2 steps."""
  exp, state = experiment.setup(tiny_config(**overrides), SPLITS)
  return jax.device_get(loop.train(exp, state, str(workdir_path)))


def saved_steps(workdir_path):
  return sorted(int(d) for d in os.listdir(workdir_path / "checkpoints") if d.isdigit())


def finite(tree):
  return all(
    np.isfinite(x).all() for x in jax.tree.leaves(tree) if np.issubdtype(x.dtype, np.floating)
  )


# ------------------------------------------------------------------------- divergence


def test_divergence_stops_with_the_last_good_checkpoint_and_saves_nothing_bad(tmp_path):
  run(tmp_path, num_epochs=1)
  assert saved_steps(tmp_path) == [2, 3]
  # Resumed with a diverging learning rate, checkpointing every step (keep 2): the loss
  # turns non-finite a few steps in.
  diverging = tiny_config(num_epochs=4, checkpoint_every_steps=1, **{"optim.lr": 1e30})
  exp, state = experiment.setup(diverging, SPLITS)
  with pytest.raises(ValueError) as e:
    loop.train(exp, state, str(tmp_path), allow_config_change=True)
  message = str(e.value)
  bad = int(re.search(r"not finite at step (\d+)", message).group(1))
  good = int(re.search(r"the last good checkpoint is step (\d+)", message).group(1))
  assert saved_steps(tmp_path)[-1] == bad - 1 and good in saved_steps(tmp_path)
  # Every checkpoint left restores and is finite: none was replaced by a non-finite one.
  for step in saved_steps(tmp_path):
    target = ckpt_lib.abstract_like(state, exp.state_sharding)
    restored, _, _, _ = ckpt_lib.restore(str(tmp_path / "checkpoints"), target, step=step)
    assert finite(jax.device_get(restored))


def test_an_update_that_overflows_float32_is_never_saved(tmp_path):
  # Loss and gradient are finite, but 3e38 x (gradient + 100 x weights) is inf in float32: the
  # state the step would keep (and a checkpoint would save) is checked, not only the loss.
  with pytest.raises(ValueError, match="not finite at step 1.*no checkpoint was saved"):
    run(tmp_path, checkpoint_every_steps=1, **{"optim.lr": 3e38, "optim.weight_decay": 100.0})
  assert saved_steps(tmp_path) == []


def test_a_rate_that_is_inf_in_float32_is_refused_before_any_work(tmp_path):
  with pytest.raises(ValueError, match=r"--config.optim.lr=1e\+39 is not finite in float32"):
    run(tmp_path, **{"optim.lr": 1e39})
  with pytest.raises(ValueError, match=r"--config.dataset.std must hold finite numbers > 0"):
    run(tmp_path, **{"dataset.std": (0.0,)})
  assert not (tmp_path / "checkpoints").exists()


def test_an_exploding_finite_loss_never_rotates_out_the_last_healthy_checkpoint(tmp_path, caplog):
  run(tmp_path, num_epochs=2, checkpoint_every_steps=1)  # 6 steps, keep 2: 5 and 6.
  assert saved_steps(tmp_path) == [5, 6]
  healthy = jax.device_get(
    restore.restore_trained(tiny_config(num_epochs=2), str(tmp_path), SPLITS)[1]
  )
  # Resumed with a rate that makes the loss explode (1e14) before it turns non-finite.
  exploding = {"num_epochs": 4, "checkpoint_every_steps": 1, "optim.lr": 1e8}
  exp, state = experiment.setup(tiny_config(log_every_steps=1, **exploding), SPLITS)
  with caplog.at_level(logging.WARNING, logger="ltjax"), pytest.raises(ValueError) as e:
    loop.train(exp, state, str(tmp_path), allow_config_change=True)
  assert "checkpoint step 7 is not healthy" in caplog.text
  assert "the last good checkpoint is step 6" in str(e.value)
  assert 6 in saved_steps(tmp_path) and saved_steps(tmp_path)[-1] > 7  # Kept past rotation.
  # The same command with a sane rate resumes from step 6, the exploded steps set aside.
  caplog.clear()
  exp, state = experiment.setup(tiny_config(num_epochs=4, checkpoint_every_steps=1), SPLITS)
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    final = loop.train(exp, state, str(tmp_path), allow_config_change=True)
  assert "resuming from step 6, the last healthy one" in caplog.text
  assert int(final.step) == 12 and finite(jax.device_get(final))
  assert sorted(os.listdir(tmp_path / "checkpoints.damaged"))[0].startswith("7-")
  restarted = jax.device_get(
    restore.restore_trained(tiny_config(num_epochs=4), str(tmp_path), SPLITS)[1]
  )
  assert int(restarted.step) == 12 and healthy.step == 6


def test_a_non_finite_step_leaves_the_state_unchanged():
  exp, state = experiment.setup(tiny_config(), SPLITS)
  before = jax.device_get(state)
  batch = experiment.make_stream(exp)(0)
  batch["image"] = batch["image"].astype(np.float32) * np.nan  # Normalised to nan.
  from ltjax import sharding

  new, metrics = exp.train_step(state, sharding.to_global(batch, sharding.batch_sharding(exp.mesh)))
  assert not bool(metrics["finite"]) and int(new.step) == 1
  for a, b in zip(
    jax.tree.leaves(before.params), jax.tree.leaves(jax.device_get(new.params)), strict=True
  ):
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------- config drift


def test_resuming_with_another_config_lists_the_changes(tmp_path):
  run(tmp_path, num_epochs=1)
  exp, state = experiment.setup(tiny_config(num_epochs=2, **{"optim.lr": 0.1}), SPLITS)
  with pytest.raises(ValueError) as e:
    loop.train(exp, state, str(tmp_path))
  message = str(e.value)
  assert "num_epochs: 1 -> 2" in message and "optim.lr: 0.05 -> 0.1" in message
  assert "--allow_config_change" in message
  # Fields that may change on resume (logging, checkpoints, devices) pass.
  run(tmp_path, num_epochs=1, log_every_steps=5, keep_checkpoints=3, num_devices=2)
  # A field ltjax added after the run was saved compares equal at its default.
  path = tmp_path / "config.json"
  saved = json.loads(path.read_text())
  del saved["data"]["jitter"]
  path.write_text(json.dumps(saved))
  run(tmp_path, num_epochs=1)
  path.write_text(json.dumps(saved))
  with pytest.raises(ValueError, match=r"data.pad: 1 -> 2"):
    run(tmp_path, num_epochs=1, **{"data.pad": 2})
  # A run from before config.json: the checkpoint's own copy of the config is checked.
  path.unlink()
  with pytest.raises(ValueError, match=r"num_epochs: 1 -> 2"):
    run(tmp_path, num_epochs=2)


def test_allowed_config_change_resumes_and_records_the_new_config(tmp_path):
  run(tmp_path, num_epochs=1)
  exp, state = experiment.setup(tiny_config(num_epochs=2), SPLITS)
  loop.train(exp, state, str(tmp_path), allow_config_change=True)
  assert json.loads((tmp_path / "config.json").read_text())["num_epochs"] == 2
  assert saved_steps(tmp_path)[-1] == 6


# ---------------------------------------------------------------- damaged checkpoints


def damage(step_dir, how):
  if how == "truncate":  # A data file cut short (a crash while copying, a full disk).
    files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir / "state") for f in fs]
    path = max(files, key=os.path.getsize)
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  elif how == "bitflip":  # Silent corruption: same size, one byte changed.
    files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir / "state" / "d") for f in fs]
    path = max(files, key=os.path.getsize)
    with open(path, "r+b") as f:
      f.seek(os.path.getsize(path) // 2)
      byte = f.read(1)
      f.seek(-1, 1)
      f.write(bytes([byte[0] ^ 0x40]))
  elif how == "metadata":
    (step_dir / "state" / "_METADATA").write_text("garbage")
  elif how == "no_state":
    shutil.rmtree(step_dir / "state")
  elif how == "meta":
    (step_dir / "meta" / "metadata").write_text("{not json")


@pytest.mark.parametrize("how", ["truncate", "bitflip", "metadata", "no_state", "meta"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, how, caplog):
  run(tmp_path, num_epochs=1)  # Checkpoints 2 and 3.
  exp, state2 = experiment.setup(tiny_config(num_epochs=1), SPLITS)
  target = ckpt_lib.abstract_like(state2, exp.state_sharding)
  good2, _, _, _ = ckpt_lib.restore(str(tmp_path / "checkpoints"), target, step=2)
  good2 = jax.device_get(good2)
  damage(tmp_path / "checkpoints" / "3", how)
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    exp, restored = restore.restore_trained(tiny_config(num_epochs=1), str(tmp_path), SPLITS)
  assert "checkpoint step 3" in caplog.text and "damaged" in caplog.text
  assert int(restored.step) == 2
  for a, b in zip(jax.tree.leaves(good2), jax.tree.leaves(jax.device_get(restored)), strict=True):
    np.testing.assert_array_equal(a, b)
  assert finite(jax.device_get(restored))
  # Training resumes from step 2 and finishes.
  final = run(tmp_path, num_epochs=1)
  assert int(final.step) == 3


def test_no_intact_checkpoint_is_one_clear_error(tmp_path):
  run(tmp_path, num_epochs=1)
  damage(tmp_path / "checkpoints" / "3", "metadata")
  # Step 3 as a checkpoint from before checksums: the garbage metadata is found by reading.
  os.remove(tmp_path / "checkpoints" / "ltjax-checksums-3.json")
  damage(tmp_path / "checkpoints" / "2", "bitflip")
  with pytest.raises(ValueError) as e:
    restore.restore_trained(tiny_config(num_epochs=1), str(tmp_path), SPLITS)
  message = str(e.value)
  assert "no intact checkpoint in" in message
  assert "step 3: its state metadata is unreadable" in message
  assert "step 2: 1 file(s) differ from when it was saved (changed state/d/" in message
  assert len(message.splitlines()) < 8  # Not an orbax traceback.


def test_init_from_skips_a_damaged_latest_checkpoint(tmp_path):
  run(tmp_path / "joint", num_epochs=1)
  damage(tmp_path / "joint" / "checkpoints" / "3", "bitflip")
  params, _, _ = init_lib.load_variables(str(tmp_path / "joint"))
  assert finite(params)


def test_resume_and_init_from_log_no_orbax_warnings(tmp_path, caplog):
  run(tmp_path / "joint", num_epochs=1)
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    run(tmp_path / "joint", num_epochs=1)  # A resume of the finished run restores it.
    init_lib.load_variables(str(tmp_path / "joint"))  # What init_from reads.
  noise = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  noise = [m for m in noise if "holds a finished run" not in m]  # ltjax's own line.
  assert not noise  # e.g. orbax's "read_only=True, setting max_to_keep=None"


def test_a_partial_metrics_line_left_by_a_crash_is_dropped_before_appending(tmp_path, caplog):
  run(tmp_path, num_epochs=1, log_every_steps=1)  # 3 steps, rows 1-3.
  metrics = tmp_path / "metrics.jsonl"
  text = metrics.read_text()
  metrics.write_text(text + text.splitlines()[-1][:17])  # A crash in the middle of a row.
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    exp, state = experiment.setup(tiny_config(num_epochs=2, log_every_steps=1), SPLITS)
    loop.train(exp, state, str(tmp_path), allow_config_change=True)
  assert "dropped a partial last line left by a crash" in caplog.text
  rows = [json.loads(line) for line in metrics.read_text().splitlines()]  # All parse.
  assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_a_truncated_results_file_is_named_with_the_fix(tmp_path):
  run(tmp_path)
  results = tmp_path / "results.json"
  results.write_text('{"joint": {"many": 1.0, "all": ')  # A crash or a full disk mid-write.
  exp, state = restore.restore_trained(tiny_config(), str(tmp_path), SPLITS)
  with pytest.raises(ValueError, match=rf"{re.escape(str(results))} is not valid JSON .*delete"):
    runner.evaluate_and_write(exp, state, str(tmp_path))


# -------------------------------------------------------------------------- the lock


def test_a_second_run_on_a_locked_work_directory_is_refused(tmp_path):
  lock = workdir.RunLock(str(tmp_path))
  lock.acquire()
  try:
    with pytest.raises(
      ValueError, match=rf"another ltjax run is using this work directory: process {os.getpid()}"
    ):
      run(tmp_path)
  finally:
    lock.release()
  assert not (tmp_path / workdir.LOCK_NAME).exists()
  run(tmp_path)  # Released: the directory is free again.
  assert not (tmp_path / workdir.LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over_and_a_foreign_one_names_its_file(tmp_path, caplog):
  child = subprocess.Popen([sys.executable, "-c", "pass"])
  child.wait()
  dead = child.pid  # A pid that no process has any more.
  lock_file = tmp_path / workdir.LOCK_NAME
  lock_file.write_text(json.dumps({"host": socket.gethostname(), "pid": dead, "token": "x"}))
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    run(tmp_path)
  assert f"stale (process {dead} is gone): taking it over" in caplog.text
  lock_file.write_text(json.dumps({"host": "another-host", "pid": 1, "token": "x"}))
  with pytest.raises(ValueError, match=f"another-host.*delete {lock_file}"):
    run(tmp_path)


def test_a_lock_whose_pid_is_now_this_process_is_taken_over(tmp_path, caplog):
  # After a container restart the pid of the run that died can be the new run's own: the
  # recorded start time (or boot id) tells them apart.
  from ltjax import locks

  lock_file = tmp_path / workdir.LOCK_NAME
  me = {"host": socket.gethostname(), "pid": os.getpid(), "token": "x"}
  started = locks.process_start(os.getpid())
  for owner in (me | {"pid_start": started - 1}, me | {"boot_id": "another-boot"}, me):
    lock_file.write_text(json.dumps(owner))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ltjax"):
      run(tmp_path)
    assert "is stale" in caplog.text and "taking it over" in caplog.text
  # A live process's lock (its real start time) is refused.
  child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    live = {"host": socket.gethostname(), "pid": child.pid, "token": "x"}
    lock_file.write_text(json.dumps(live | {"pid_start": locks.process_start(child.pid)}))
    with pytest.raises(ValueError, match=f"process {child.pid} on .* holds {lock_file}"):
      run(tmp_path)
  finally:
    child.kill()


# ----------------------------------------------------------------- environment faults


def read_only_under(root, monkeypatch):
  """Makes every write under ``root`` fail as on a read-only file system (CI runs as root,
  so permissions alone cannot)."""
  real_open, real_os_open = open, os.open

  def fail(path):
    raise OSError(errno.EROFS, "Read-only file system", str(path))

  def builtin_open(path, mode="r", *args, **kwargs):
    if str(path).startswith(str(root)) and any(c in mode for c in "wax+"):
      fail(path)
    return real_open(path, mode, *args, **kwargs)

  def os_open(path, flags, *args, **kwargs):
    if str(path).startswith(str(root)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
      fail(path)
    return real_os_open(path, flags, *args, **kwargs)

  monkeypatch.setattr("builtins.open", builtin_open)
  monkeypatch.setattr(os, "open", os_open)


def test_a_read_only_work_directory_is_one_clear_error(tmp_path, monkeypatch):
  read_only_under(tmp_path, monkeypatch)
  with pytest.raises(
    ValueError, match=r"work directory .* is not writable \(Read-only file system\)"
  ):
    run(tmp_path)


def test_a_finished_run_evaluates_on_a_read_only_disk(tmp_path, monkeypatch, caplog):
  run(tmp_path)  # Trained, not yet evaluated: no results.json.
  read_only_under(tmp_path, monkeypatch)
  exp, state = restore.restore_trained(tiny_config(), str(tmp_path), SPLITS)
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    summary = runner.evaluate_and_write(exp, state, str(tmp_path))
  assert 0 <= summary["all"] <= 1 and "printed, not saved" in caplog.text
  assert not (tmp_path / "results.json").exists()


def test_a_full_disk_while_checkpointing_keeps_the_earlier_checkpoints(tmp_path, monkeypatch):
  real_save = ocp.CheckpointManager.save

  def full_at_step_4(self, step, *args, **kwargs):
    if step == 4:
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", full_at_step_4)
  with pytest.raises(
    ValueError,
    match=r"could not save checkpoint step 4 .*no space left on device\. The checkpoints saved "
    "before it are intact",
  ):
    run(tmp_path, num_epochs=2)
  assert saved_steps(tmp_path) == [2]
  monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
  assert int(run(tmp_path, num_epochs=2).step) == 6  # Resumes from step 2 and finishes.


# -------------------------------------------------------------------- runs and stages


def test_a_resumed_run_does_not_repeat_metrics_rows(tmp_path):
  class Crash(Exception):
    pass

  exp, state = experiment.setup(tiny_config(num_epochs=2), SPLITS)
  calls, real_step = [0], exp.train_step

  def crash_after_5(*args):
    calls[0] += 1
    if calls[0] == 6:
      raise Crash  # As a kill -9 after step 5: logged 1-5, checkpointed 2 and 4.
    return real_step(*args)

  exp.train_step = crash_after_5
  with pytest.raises(Crash):
    loop.train(exp, state, str(tmp_path))
  (tmp_path / workdir.LOCK_NAME).unlink(missing_ok=True)  # The killed run held it.
  run(tmp_path, num_epochs=2)
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  steps = [r["step"] for r in rows if r["split"] == "train"]
  assert steps == [1, 2, 3, 4, 5, 6]


def test_crt_from_an_oltr_run_is_refused(tmp_path):
  run(tmp_path / "joint", num_epochs=1)
  exp, state = experiment.setup(tiny_stage2_config(str(tmp_path / "joint")), SPLITS)
  loop.train(exp, state, str(tmp_path / "oltr"))
  crt = tiny_config(stage="crt", method="crt", init_from=str(tmp_path / "oltr"))
  crt.sampler.name = "class_aware"
  exp, state = experiment.setup(crt, SPLITS)
  with pytest.raises(ValueError, match=r"is a model with a neck \(attention"):
    exp.stage.start(exp, state)


def test_warnings_for_empty_classes_and_a_batch_larger_than_the_data(caplog):
  with caplog.at_level(logging.WARNING, logger="ltjax"):
    experiment.setup(tiny_config(batch_size=64), tiny_splits(counts=(24, 12, 6, 0)))
  assert "1 of 4 classes have no training images (first: 3)" in caplog.text
  assert "batch_size 64 is larger than the training set (42 images)" in caplog.text


def test_a_restored_array_with_a_nan_is_named_whatever_its_sharding():
  """The finiteness check of every restore (one program for the whole tree) names the first
  array holding a nan or inf, including arrays sharded over all devices; integer arrays are
  not checked."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  sharded = jax.device_put(
    np.ones((len(jax.devices()) * 2, 3), np.float32),
    jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")),
  )
  tree = {"backbone": {"conv": {"kernel": sharded}}, "step": np.int32(3)}
  integrity.check_finite(tree, "array")  # Finite: nothing said.
  bad = sharded.at[-1, 2].set(np.inf)  # On the last device.
  tree["head"] = {"fc": {"bias": np.zeros(2, np.float32)}}
  tree["backbone"]["conv"]["kernel"] = bad
  with pytest.raises(ckpt_lib.DamagedCheckpoint, match="array backbone/conv/kernel holds nan"):
    integrity.check_finite(tree, "array")
  tree["backbone"]["conv"]["kernel"] = sharded
  tree["head"]["fc"]["bias"] = np.array([0.0, np.nan], np.float32)
  with pytest.raises(ckpt_lib.DamagedCheckpoint, match="head/fc/bias"):
    integrity.check_finite(tree, "array")


def _events(directory):
  """The TensorBoard events of ``directory``'s event files (TFRecord: length, its CRC, the
  serialized Event, its CRC; both CRCs checked), file by file in name order."""
  from tensorboardX.proto.event_pb2 import Event
  from tensorboardX.record_writer import masked_crc32c

  out = []
  for name in sorted(os.listdir(directory)):
    assert ".tfevents." in name
    data = (directory / name).read_bytes()
    i = 0
    while i < len(data):
      header, n = data[i : i + 8], int.from_bytes(data[i : i + 8], "little")
      record = data[i + 12 : i + 12 + n]
      assert int.from_bytes(data[i + 8 : i + 12], "little") == masked_crc32c(header)
      assert int.from_bytes(data[i + 12 + n : i + 16 + n], "little") == masked_crc32c(record)
      out.append(Event.FromString(record))
      i += 16 + n
  return out


def test_tensorboard_scalars_are_written_as_logged_and_a_resume_purges_later_steps(tmp_path):
  from ltjax.train.metric_writer import MetricWriter

  writer = MetricWriter(str(tmp_path))
  for step in (1, 2, 3):
    writer.write(step, "train", {"loss": 1.0 / step})
  writer.close()
  tb = tmp_path / "tensorboard"
  assert _events(tb)[0].file_version == "brain.Event:2"
  scalars = [(e.step, v.tag, v.simple_value) for e in _events(tb) for v in e.summary.value]
  assert scalars == [(s, "train/loss", pytest.approx(1.0 / s)) for s in (1, 2, 3)]
  # Resumed from the checkpoint of step 2: TensorBoard is told to drop step 3 on.
  (tmp_path / "metrics.jsonl").write_text((tmp_path / "metrics.jsonl").read_text())
  writer = MetricWriter(str(tmp_path), resume_step=2)
  writer.write(3, "train", {"loss": 0.25})
  writer.close()
  [older, newer] = sorted(os.listdir(tb))
  starts = [e.step for e in _events(tb) if e.session_log.status == e.session_log.START]
  assert starts == [3]
  assert [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")] == [1, 0.5, 0.25]


def test_a_full_disk_under_the_metrics_is_one_line_naming_the_step(small_disk, capfd):
  """On a real full file system the failed row raises one line naming the step, no thread
  prints a traceback, and closing the writer (the loop's ``finally``) does not raise over
  that error. With tensorboardX's own writer thread, this hung: the thread died on the full
  disk, and the next scalars waited forever for room in its queue (or the close did)."""
  from ltjax.train.metric_writer import MetricWriter

  writer = MetricWriter(str(small_disk / "run"))
  writer.write(1, "train", {"loss": 1.0})
  with open(small_disk / "filler", "wb", buffering=0) as f:  # All the disk has left.
    try:
      while True:
        f.write(b"\0" * 4096)
    except OSError as e:
      assert e.errno == errno.ENOSPC
  with pytest.raises(ValueError) as raised:
    for step in range(2, 2000):  # A page of each file fills first.
      writer.write(step, "train", {"loss": 1.0, "accuracy": 0.5, "lr": 0.1})
  assert re.fullmatch(
    r"could not write the metrics of step \d+ to \S+(metrics\.jsonl|tensorboard): no space "
    r"left on device\. The checkpoints saved before it are intact; .*",
    str(raised.value),
  )
  writer.close()  # Said, not raised.
  err = capfd.readouterr().err
  assert "Traceback" not in err and "Exception in thread" not in err, err


def _fill(disk):
  """Writes a file until the (real, small) file system ``disk`` is full."""
  with open(disk / "filler", "wb", buffering=0) as f:
    try:
      while True:
        f.write(b"\0" * 65536)
    except OSError as e:
      assert e.errno == errno.ENOSPC


def test_a_last_save_that_fails_on_close_never_hides_the_error_that_stopped_the_run(
  small_disk, caplog
):
  """The last, asynchronous save fails when the checkpoints are closed (the loop closes them
  on its way out). Ending well, that failure is the error raised, in one line (orbax's
  manager's own failing close used to replace it with a bare OSError); when another error
  is on its way out (a divergence, a stop), that error stays the one raised and the failed
  save is logged beside it (the close used to raise over it)."""
  from ltjax.train import storage_errors

  exp, state = experiment.setup(tiny_config(), SPLITS)
  meta = {"train_loss": 1.0}
  ckpt = ckpt_lib.Checkpointer(str(small_disk / "a"), judge_health=False)
  ckpt.save(1, state, {}, meta)
  ckpt._finish()  # Step 1 written; the disk then fills up.
  _fill(small_disk)
  ckpt.save(2, state, {}, meta)  # Asynchronous: it fails on close.
  with pytest.raises(ValueError, match=r"could not save checkpoint step 2 in \S+: no space left"):
    ckpt.close()
  os.remove(small_disk / "filler")

  ckpt = ckpt_lib.Checkpointer(str(small_disk / "b"), judge_health=False)
  ckpt.save(1, state, {}, meta)
  ckpt._finish()
  _fill(small_disk)
  with pytest.raises(ValueError, match="^the run's own error$"):
    with storage_errors.closing(ckpt, None):
      ckpt.save(2, state, {}, meta)
      raise ValueError("the run's own error")
  logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
  assert any("could not save checkpoint step 2" in m and "no space left" in m for m in logged)
  os.remove(small_disk / "filler")
