"""Extending evaluation: an evaluator with a new metric is one class, defined here and
registered for the test, chosen with ``config.eval.evaluators``; the eval step computes its
output on the device, its entry reaches results.json (the trained model's row and the post-hoc
methods' rows, on the host) and the report's table. No file of ltjax is edited to add it."""

import dataclasses
import json
from collections.abc import Mapping
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config, tiny_splits

from ltjax import config as config_lib
from ltjax.evaluate import evaluators, metrics, posthoc, posthoc_methods, report, runner
from ltjax.train import experiment, loop
from ltjax.train import workdir as workdir_lib


def _margin(logits, labels):
  """Top-1 minus top-2 logit of each example."""
  del labels
  top2 = jnp.sort(logits, -1)[:, -2:]
  return top2[:, 1] - top2[:, 0]


@dataclasses.dataclass(frozen=True)
class ToyMargin(evaluators.Evaluator):
  """The mean margin between the two largest logits over the known test images."""

  name: ClassVar[str] = "toy_margin"
  columns: ClassVar[tuple] = (evaluators.Column("toy_margin", "Toy margin"),)
  note: ClassVar[str] = "Toy margin: the mean gap between the two largest logits."
  files: ClassVar[tuple] = ("toy_margins",)
  figures: ClassVar[tuple] = (
    evaluators.Figure(
      "toy_margins",
      "Toy margins",
      "Margins",
      "toy_margins.png",
      "Each method's margins (open threshold {open_threshold:g}).",
      f"{__name__}:draw_margins",
    ),
  )

  @property
  def outputs(self) -> Mapping[str, evaluators.Output]:
    return {"margin": evaluators.Output(_margin)}  # No host twin: jitted on host logits.

  def summarize(self, outputs, labels, context) -> dict:
    return {"toy_margin": float(np.mean(outputs["margin"][labels != -1]))}

  def records(self, outputs, labels, context) -> dict:
    return {"toy_margins": {"margins": np.asarray(outputs["margin"]).tolist()}}


def draw_margins(entries, path, out, context):
  """The toy figure: one line per method (a real one would draw a PNG)."""
  with open(out, "w") as f:
    f.write("\n".join(f"{m}: {len(e['margins'])}" for m, e in entries.items()))
  return out


def numpy_margin(logits: np.ndarray) -> float:
  top2 = np.sort(np.asarray(logits, np.float32), -1)[:, -2:]
  return float(np.mean(top2[:, 1] - top2[:, 0]))


def test_a_new_evaluator_is_one_class(tmp_path, monkeypatch):
  monkeypatch.setitem(evaluators.EVALUATORS, ToyMargin.name, ToyMargin)
  splits = tiny_splits()
  c = tiny_config(**{"eval.evaluators": ("closed_set", "toy_margin")})
  exp, state = experiment.setup(c, splits)
  workdir = str(tmp_path / "run")
  state = loop.train(exp, state, workdir)
  summary = runner.evaluate_and_write(exp, state, workdir)
  out = posthoc.evaluate_all(exp, state, workdir, str(tmp_path / "features"))

  with open(tmp_path / "run" / "results.json") as f:
    results = json.load(f)
  row = results[exp.config.method]
  assert row == metrics.to_jsonable(summary)
  assert list(summary) == [
    *("many", "medium", "few", "all", "mean_class", "toy_margin", "computed_with")
  ]  # The chosen evaluators' entries, in the order chosen.
  assert not {"ece", "nll", "top5_all", "open_f_measure"} & set(row)  # Not chosen.
  logits = posthoc.extract(exp, state, splits.test)["logits"]
  assert row["toy_margin"] == pytest.approx(numpy_margin(logits), rel=1e-5)
  # A post-hoc row: the same output, computed on the host from the method's test logits.
  inputs = posthoc_methods.PosthocInputs(
    **{s: posthoc.extract(exp, state, getattr(splits, s)) for s in ("train", "val", "test")},
    weights=runner.classifier_weights(state.params),
    train_counts=splits.train_counts,
    eval_cfg=exp.config.eval,
  )
  tau = posthoc_methods.TauNorm().run(inputs)
  assert out["tau_norm"]["toy_margin"] == pytest.approx(numpy_margin(tau["logits"]), rel=1e-5)
  assert not (tmp_path / "run" / "calibration.json").exists()  # Its evaluator is not chosen.

  text = open(report.write_report(workdir)).read()
  assert "| Toy margin |" in text.splitlines()[text.splitlines().index("## Test results") + 2]
  assert "Toy margin: the mean gap" in text
  # Its figure, drawn from its file by its function, with its caption.
  assert "## Toy margins\n\n![Margins](toy_margins.png)" in text
  assert "*Each method's margins (open threshold 0.1).*" in text
  with open(tmp_path / "run" / "toy_margins.png") as f:
    assert f.read().splitlines()[0] == f"{exp.config.method}: {len(splits.test)}"


def test_the_default_is_every_evaluator_of_ltjax_and_a_wrong_name_lists_them():
  assert config_lib.base_config().eval.evaluators == evaluators.DEFAULT
  assert evaluators.DEFAULT == ("closed_set", "top5", "calibration", "open_set")
  # A config.json of an ltjax before the field: its default, and no change on resume.
  saved = json.loads(json.dumps(tiny_config().to_dict()))
  del saved["eval"]["evaluators"]
  assert config_lib.from_saved(saved).eval.evaluators == evaluators.DEFAULT
  assert workdir_lib.config_changes(saved, tiny_config(), config_lib.base_config()) == ([], [])
  c = tiny_config(**{"eval.evaluators": ("closed_set", "top_5")})
  with pytest.raises(ValueError, match="'top_5': unknown evaluator; valid: 'closed_set', 'top5', "):
    experiment.setup(c, tiny_splits())
  # A comma-joined list arrives from the command line as one name: the syntax is named.
  c = tiny_config(**{"eval.evaluators": ("closed_set,top5",)})
  with pytest.raises(
    ValueError, match=r"tuple: --config.eval.evaluators=\"\('closed_set', 'top5'\)"
  ):
    experiment.checked(c, check_start=False)
  c = tiny_config(
    **{"eval.evaluators": ("top5",), "eval.select": "best_val", "eval_every_epochs": 1}
  )
  with pytest.raises(ValueError, match="closed_set"):
    config_lib.validate(c)
