"""A work directory written before the layout's third step: its config.json lacks the fields
added since (the evaluators' options, ``eval.posthoc``). It resumes with nothing reported as
changed, evaluates to the same rows, and its config reads back with today's defaults."""

import json
import os

from helpers import tiny_config, tiny_splits

from ltjax import config as config_lib
from ltjax import files
from ltjax.evaluate import metrics, runner
from ltjax.train import loop, restore, workdir

#: The fields this change added to the base config.
ADDED = ("eval.posthoc", "eval.ece_bins", "eval.keep_known")


def _without_added(run: str) -> dict:
  """Rewrites ``run``'s config.json as the ltjax before these fields wrote it."""
  path = os.path.join(run, "config.json")
  with open(path) as f:
    saved = json.load(f)
  for field in ADDED:
    block, key = field.split(".")
    del saved[block][key]
  files.write_json(path, saved)
  return saved


def _rows(run: str) -> dict:
  with open(os.path.join(run, "results.json")) as f:
    return json.load(f)


def test_an_older_work_directory_resumes_and_evaluates_to_the_same_rows(tmp_path, caplog):
  config = tiny_config(**{"num_epochs": 2})
  run = str(tmp_path / "run")
  first = loop.train_and_evaluate(config, run, splits=tiny_splits())
  saved = _without_added(run)

  # Read back: today's defaults for the fields it lacks, nothing else changed.
  old = config_lib.from_saved(saved)
  assert old.to_dict() == config.to_dict()
  assert workdir.config_changes(saved, config, config_lib.base_config()) == ([], [])

  # Evaluated as `ltjax evaluate` does, with its own config: the same row, byte for byte.
  workdir.check_evaluation(run, old)
  exp, state = restore.restore_trained(old, run, tiny_splits())
  state, selected = restore.tested_model(exp, state, run)
  again = runner.evaluate_and_write(exp, state, run, extra=selected)
  assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)  # nan too

  # Resumed (its checkpoints hold the last step): no field reported as changed.
  caplog.set_level("INFO")
  resumed = loop.train_and_evaluate(config, run, splits=tiny_splits())
  assert not [r for r in caplog.records if "resuming with" in r.getMessage()]
  same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # nan
  assert same(resumed, first)
  assert _rows(run)[config.method] == json.loads(json.dumps(metrics.to_jsonable(first)))


def test_a_run_saved_with_options_nothing_read_evaluates_and_no_longer_trains(tmp_path, caplog):
  """A run saved before ltjax refused an option that none of its components reads (its
  config.json sets ``loss.gamma`` with the softmax loss and crop_flip with ``data.jitter``):
  ``ltjax evaluate`` evaluates it to the same row, saying which options did nothing; a run to
  train with that config is refused, naming the option."""
  import pytest

  from ltjax.config import components
  from ltjax.train import experiment

  run = str(tmp_path / "run")
  first = loop.train_and_evaluate(tiny_config(), run, splits=tiny_splits())
  path = os.path.join(run, "config.json")
  with open(path) as f:
    saved = json.load(f)
  saved["loss"]["gamma"], saved["data"]["jitter"] = 3.0, 0.2
  files.write_json(path, saved)
  old = config_lib.of_run(run)
  with pytest.raises(components.UnreadOption, match=r"loss.gamma=3.0 is an option of"):
    experiment.checked(old, check_start=False)

  caplog.set_level("WARNING")
  workdir.check_evaluation(run, old)
  exp, state = restore.restore_trained(old, run, tiny_splits())
  state, selected = restore.tested_model(exp, state, run)
  again = runner.evaluate_and_write(exp, state, run, extra=selected)
  assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)  # nan too
  warned = " ".join(r.getMessage() for r in caplog.records)
  assert "loss.gamma=3.0 was read by none of the run's components" in warned
  assert "data.jitter=0.2 was read by none of the run's components" in warned
  assert old.loss.gamma == 3.0  # The caller's config is left as it is.
