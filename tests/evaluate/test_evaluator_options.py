"""Evaluators' options from the config (``eval.ece_bins``, ``eval.keep_known``): built into
the evaluators, refused when their evaluator is not chosen, recorded in the rows they change,
named by the report."""

import json
import os

import numpy as np
import pytest
from helpers import tiny_config, tiny_splits

from ltjax import config as config_lib
from ltjax.evaluate import evaluators, metrics, report, runner
from ltjax.train import experiment, loop, restore, workdir


def _eval(**options):
  return tiny_config(**{f"eval.{k}": v for k, v in options.items()}).eval


def test_options_are_the_evaluators_fields_and_the_schema_defaults():
  e = config_lib.base_config().eval
  assert evaluators.option_defaults() == {"ece_bins": e.ece_bins, "keep_known": e.keep_known}
  built = evaluators.Evaluation.from_config(_eval(ece_bins=10, keep_known=0.9))
  by_name = {x.name: x for x in built.evaluators}
  assert by_name["calibration"].ece_bins == 10 and by_name["open_set"].keep_known == 0.9
  assert built.options == {"ece_bins": 10, "keep_known": 0.9}
  assert evaluators.Evaluation.from_config(_eval()).options == {}


def test_the_options_change_what_the_evaluators_compute():
  rng = np.random.default_rng(0)
  labels = np.concatenate([rng.integers(0, 3, 60), -np.ones(20, int)])
  max_prob = rng.uniform(0.34, 1.0, labels.size)
  pred = rng.integers(0, 3, labels.size)
  p = {"pred": pred, "max_prob": max_prob, "label": labels, "top5": labels >= 0}
  p["nll"] = rng.uniform(0, 2, labels.size)
  val = rng.uniform(0.34, 1.0, 50)
  counts = np.array([100, 30, 5])
  known = labels != -1
  for bins, keep in ((15, 0.95), (7, 0.5)):
    row = evaluators.Evaluation.from_config(_eval(ece_bins=bins, keep_known=keep)).summarize(
      p, counts, val
    )
    ece = metrics.calibration(max_prob[known], pred[known] == labels[known], bins)["ece"]
    assert row["ece"] == ece
    assert row["open_threshold_val"] == metrics.threshold_keeping(val, keep)
  assert (
    metrics.calibration(max_prob[known], pred[known] == labels[known], 7)["ece"]
    != (metrics.calibration(max_prob[known], pred[known] == labels[known], 15)["ece"])
  )


def test_an_option_of_an_evaluator_not_chosen_is_refused_by_name():
  with pytest.raises(ValueError, match="eval.ece_bins=10 is an option of the calibration"):
    experiment.checked(
      tiny_config(**{"eval.evaluators": ("closed_set",), "eval.ece_bins": 10}),
      check_start=False,
    )
  # With no evaluator chosen at all, too.
  with pytest.raises(ValueError, match="eval.keep_known=0.9 is an option of the open_set"):
    experiment.checked(
      tiny_config(**{"eval.evaluators": (), "eval.keep_known": 0.9}), check_start=False
    )
  # At its default it is no choice: accepted.
  experiment.checked(tiny_config(**{"eval.evaluators": ("closed_set",)}), check_start=False)


@pytest.mark.parametrize(("field", "value"), [("ece_bins", 0), ("keep_known", 0.0)])
def test_the_options_are_range_checked(field, value):
  with pytest.raises(ValueError, match=f"eval.{field}"):
    config_lib.validate(tiny_config(**{f"eval.{field}": value}))


def test_help_lists_an_option_only_where_its_evaluator_is_chosen():
  fields = config_lib.read_fields(tiny_config())
  assert {"eval.ece_bins", "eval.keep_known"} <= set(fields)
  fields = config_lib.read_fields(tiny_config(**{"eval.evaluators": ("closed_set", "top5")}))
  assert not {"eval.ece_bins", "eval.keep_known"} & set(fields)


def test_a_finished_run_evaluated_with_other_bins_records_them_and_the_report_says_so(tmp_path):
  config = tiny_config()
  run = str(tmp_path / "run")
  default = loop.train_and_evaluate(config, run, splits=tiny_splits())
  assert "ece_bins" not in default["computed_with"]  # Default settings: rows as before.
  runner.update_json(os.path.join(run, "results.json"), "other", default)  # A second row.
  report.write_report(run)
  with open(os.path.join(run, "report.md")) as f:
    assert "each of 15 equal-width bins" in f.read()

  other = tiny_config(**{"eval.ece_bins": 4})
  workdir.check_evaluation(run, other)  # An evaluation field: allowed on a finished run.
  exp, state = restore.restore_trained(other, run, tiny_splits())
  row = runner.evaluate_and_write(exp, state, run)
  assert row["computed_with"]["ece_bins"] == 4
  with open(os.path.join(run, "calibration.json")) as f:
    assert len(json.load(f)[config.method]["count"]) == 4
  with open(os.path.join(run, "results.json")) as f:
    assert set(json.load(f)) == {config.method}  # "other" (15 bins) went.
  report.write_report(run)
  with open(os.path.join(run, "report.md")) as f:
    text = f.read()
  assert "each of 4 equal-width bins" in text and "max softmax probability, 4 bins" in text
