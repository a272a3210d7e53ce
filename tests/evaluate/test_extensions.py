"""Extending evaluation: a post-hoc method is one class, defined here and registered for the
test; the code path of ``ltjax evaluate --posthoc`` runs it, its row reaches results.json and
the report shows it with its label. No file of ltjax is edited to add it."""

import dataclasses
import json
from typing import ClassVar

import numpy as np
import pytest
from helpers import tiny_config, tiny_splits

from ltjax.evaluate import methods, posthoc, posthoc_methods, report, runner
from ltjax.train import experiment, loop


@dataclasses.dataclass(frozen=True)
class ToyPrior(posthoc_methods.PosthocMethod):
  """The model's logits minus ``strength`` times the log training prior: post-hoc logit
  adjustment at a fixed strength, nothing chosen on val."""

  name: ClassVar[str] = "toy_prior"
  label: ClassVar[str] = "Toy prior"
  color: ClassVar[str] = "gold"
  strength: float = 0.5

  def run(self, inputs: posthoc_methods.PosthocInputs) -> dict:
    log_prior = np.log(inputs.train_counts / inputs.train_counts.sum()).astype(np.float32)
    test = np.asarray(inputs.test["logits"], np.float32) - self.strength * log_prior
    val = np.asarray(inputs.val["logits"], np.float32) - self.strength * log_prior
    return {
      "pred": test.argmax(-1),
      "logits": test,
      "val_max_prob": posthoc_methods.softmax_max(val),
    }


def test_a_new_posthoc_method_is_one_class(tmp_path, monkeypatch):
  monkeypatch.setitem(methods.METHODS, ToyPrior.name, ToyPrior)
  assert posthoc_methods.registered()[-1] is ToyPrior  # Run last, in registration order.
  splits = tiny_splits()
  exp, state = experiment.setup(tiny_config(), splits)
  workdir = str(tmp_path / "run")
  state = loop.train(exp, state, workdir)
  runner.evaluate_and_write(exp, state, workdir)
  out = posthoc.evaluate_all(exp, state, workdir, str(tmp_path / "features"))

  assert list(out) == ["ncm", "tau_norm", "logit_adjustment", "toy_prior"]
  with open(tmp_path / "run" / "results.json") as f:
    row = json.load(f)["toy_prior"]
  test = posthoc.extract(exp, state, splits.test)
  counts = np.asarray(splits.train_counts, np.float64)
  expected = (test["logits"] - 0.5 * np.log(counts / counts.sum())).argmax(-1)
  assert row["all"] == np.mean(expected == test["labels"])
  assert row["computed_with"]["from"] == exp.config.method

  text = open(report.write_report(workdir)).read()
  assert "| toy_prior |" in text and "toy_prior: Toy prior" in text
  assert report.ordered_methods(["toy_prior", "joint", "ncm"]) == ["joint", "ncm", "toy_prior"]
  assert report.method_colors(["toy_prior"]) == {"toy_prior": "gold"}


def test_the_config_chooses_which_posthoc_methods_run_and_in_which_order(tmp_path, monkeypatch):
  """``eval.posthoc`` names the methods ``ltjax evaluate --posthoc`` runs (an evaluation
  field: a finished run's config may change it); a misspelt name is refused before any work,
  naming the valid ones."""
  from ltjax.train import restore
  from ltjax.train import workdir as workdir_lib

  monkeypatch.setitem(methods.METHODS, ToyPrior.name, ToyPrior)
  config = tiny_config()
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir, splits=tiny_splits())
  chosen = tiny_config(**{"eval.posthoc": ("toy_prior", "ncm")})
  workdir_lib.check_evaluation(workdir, chosen)  # An evaluation field.
  exp, state = restore.restore_trained(chosen, workdir, tiny_splits())
  out = posthoc.evaluate_all(exp, state, workdir, str(tmp_path / "features"))
  assert list(out) == ["toy_prior", "ncm"]
  with open(tmp_path / "run" / "results.json") as f:
    assert set(json.load(f)) == {config.method, "toy_prior", "ncm"}

  with pytest.raises(ValueError, match="no post-hoc method 'tau'; valid: ncm, tau_norm"):
    experiment.checked(tiny_config(**{"eval.posthoc": ("tau",)}), check_start=False)
  with pytest.raises(ValueError, match=r"tuple: --config.eval.posthoc=\"\('ncm', 'tau_norm'\)\""):
    experiment.checked(tiny_config(**{"eval.posthoc": ("ncm,tau_norm",)}), check_start=False)
