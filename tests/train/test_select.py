"""eval.select: the final model, or the references' protocol (validate every epoch, test the
model of the best validation accuracy, start the next stage from it)."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest
from helpers import run_ltjax, tiny_config, tiny_splits

from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import experiment, loop
from ltjax.train import init_from as init_lib

REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "configs")


class Crash(Exception):
  pass


def best_val_config(**more):
  # 45 images, batch 16: 2.8 steps per epoch, 17 steps; validation after every epoch.
  return tiny_config(
    num_epochs=6,
    eval_every_epochs=1,
    checkpoint_every_steps=100,
    **{"eval.select": "best_val", "optim.lr": 0.2, **more},
  )


def val_rows(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return [(r["step"], r["all"]) for r in rows if r["split"] == "val"]


def the_best(rows):
  """The references' rule: the first validation strictly better than every earlier one."""
  best = None
  for step, acc in rows:
    if best is None or acc > best[1]:
      best = (step, acc)
  return best


def test_best_val_tests_the_best_validated_model_and_says_which(tmp_path):
  workdir = str(tmp_path / "run")
  results = loop.train_and_evaluate(best_val_config(), workdir, splits=tiny_splits())
  rows = val_rows(workdir)
  assert [s for s, _ in rows] == [3, 6, 9, 12, 15, 17]  # The first step past each epoch.
  step, acc = the_best(rows)
  assert len({a for _, a in rows}) > 1 and step != 17, rows  # The test can tell them apart.
  assert results["selection"] == "best_val"
  assert results["selected_step"] == step
  assert results["val_accuracy"] == pytest.approx(acc)
  assert results["selected_epoch"] == pytest.approx(step / (45 / 16), abs=1e-3)
  # What was tested is the kept checkpoint, not the final state.
  exp, state = experiment.setup(best_val_config(), tiny_splits())
  target = ckpt_lib.abstract_like(state, exp.state_sharding)
  best, _, meta, kept = ckpt_lib.restore(os.path.join(workdir, "best"), target)
  final, _, _, last = ckpt_lib.restore(os.path.join(workdir, "checkpoints"), target)
  assert kept == step and last == 17 and meta["val_accuracy"] == pytest.approx(acc)
  from ltjax.evaluate import runner

  assert runner.evaluate_split(exp, best, exp.splits.test)["all"] == results["all"]
  assert runner.evaluate_split(exp, final, exp.splits.test)["all"] != results["all"] or (
    not np.allclose(jax.tree.leaves(best.params)[0], jax.tree.leaves(final.params)[0])
  )
  # The next stage starts from the selected model, as the references' next stage loads the
  # best epoch's weights.
  params, _, _ = init_lib.load_variables(workdir)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(best.params), strict=True):
    np.testing.assert_array_equal(a, np.asarray(b))
  # The report says which model each row tests.
  from ltjax.evaluate import report

  text = open(report.write_report(workdir)).read()
  assert f"joint at epoch {results['selected_epoch']:g} (best validation accuracy" in text


def test_a_resumed_run_keeps_its_best_so_far(tmp_path):
  """Crashed after its best validation: the resumed run tests the same model as an
  uninterrupted one (the best step is also a regular checkpoint: the resume starts there)."""
  full = loop.train_and_evaluate(best_val_config(), str(tmp_path / "full"), splits=tiny_splits())
  best_step = full["selected_step"]
  exp, state = experiment.setup(best_val_config(), tiny_splits())
  calls, real_step = [0], exp.train_step

  def crashing_step(*args):
    calls[0] += 1
    if calls[0] == 16:
      raise Crash()
    return real_step(*args)

  exp.train_step = crashing_step
  resumed_dir = str(tmp_path / "resumed")
  with pytest.raises(Crash):
    loop.train(exp, state, resumed_dir)
  assert ckpt_lib.Checkpointer(os.path.join(resumed_dir, "best")).latest_step() == best_step
  loop.train_and_evaluate(best_val_config(), resumed_dir, splits=tiny_splits())
  saved = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("full", "resumed")]
  assert saved[0] == saved[1]  # (JSON: nan, an empty shot group, is null there.)
  assert val_rows(resumed_dir) == val_rows(str(tmp_path / "full"))


def test_best_val_without_a_validation_split_is_refused_before_training(tmp_path):
  from ltjax.data.sources.base import Subset

  splits = tiny_splits()
  splits = dataclasses.replace(splits, val=Subset(splits.val, np.zeros(0, np.int64)))
  assert len(splits.val) == 0
  exp, state = experiment.setup(best_val_config(), splits)
  with pytest.raises(ValueError, match="no validation split: set --config.dataset.val_per_class"):
    loop.train(exp, state, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_best_val_needs_validation():
  with pytest.raises(ValueError, match="--config.eval_every_epochs=1"):
    experiment.checked(tiny_config(**{"eval.select": "best_val", "eval_every_epochs": 0}))
  with pytest.raises(ValueError, match="eval.select='best'; valid: final, best_val"):
    experiment.checked(tiny_config(**{"eval.select": "best"}))


@pytest.mark.slow  # CI's 20 minutes: README's slow-set table names it.
def test_evaluate_tests_the_run_as_its_config_selects(tmp_path):
  """`ltjax evaluate` on a best_val run: the best model (the same row as train's); with
  --config.eval.select=final, the last step."""
  digits = os.path.join(REPO_CONFIGS, "digits", "joint.py")
  args = [f"--config={digits}", "--workdir=run", "--config.num_epochs=4"]
  args += ["--config.eval_every_epochs=1", "--config.eval.select=best_val"]
  result = run_ltjax("train", *args, cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  trained = json.loads((tmp_path / "run" / "results.json").read_text())["joint"]
  assert trained["selection"] == "best_val"
  result = run_ltjax("evaluate", "--workdir=run", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert json.loads((tmp_path / "run" / "results.json").read_text())["joint"] == trained
  result = run_ltjax("evaluate", "--workdir=run", "--config.eval.select=final", cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  final = json.loads((tmp_path / "run" / "results.json").read_text())["joint"]
  assert final["selection"] == "final" and final["selected_epoch"] == 4.0
