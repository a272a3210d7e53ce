"""Tests for ltjax.evaluate.report: the markdown report and its figures."""

import json
import os

import numpy as np
import pytest

from ltjax.evaluate import report as R

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
K = 10
# Not in count order, so the weight-norm figure has to sort: 4 many, 3 medium, 3 few classes.
TRAIN_COUNTS = [90, 400, 3, 150, 30, 250, 18, 120, 9, 60]
FIGURES = ("tau_sweep.png", "weight_norms.png", "per_class_accuracy.png")


def _write(workdir, name, obj):
  with open(os.path.join(workdir, name), "w") as f:
    json.dump(obj, f)


def _results(open_set=False):
  out = {
    "lws": {"many": 0.6, "medium": 0.5, "few": 0.4, "all": 0.52, "mean_class": 0.5},
    "joint": {"many": 0.8, "medium": 0.4, "few": None, "all": 0.55, "mean_class": 0.5},
    "crt": {"many": 0.7, "medium": 0.5, "few": 0.3, "all": 0.56, "mean_class": 0.5},
    "ncm": {"many": 0.65, "medium": 0.45, "few": 0.35, "all": 0.5, "mean_class": 0.48},
    "tau_norm": {"many": 0.68, "medium": 0.5, "few": 0.38, "all": 0.57, "mean_class": 0.52},
  }
  if open_set:
    out["oltr"] = {
      "many": 0.7,
      "medium": 0.5,
      "few": 0.4,
      "all": 0.6,
      "mean_class": 0.55,
      "open_f_measure": 0.4567,
      "open_auroc": 0.8123,
    }
  return out


def _full_workdir(path, open_set=False):
  rng = np.random.default_rng(0)
  counts = np.array(TRAIN_COUNTS)
  results = _results(open_set)
  _write(path, "results.json", results)
  _write(path, "meta.json", {"dataset": "synthetic_lt", "many_threshold": 100, "few_threshold": 20})
  _write(
    path,
    "per_class.json",
    {
      m: {
        "accuracy": [None] + rng.uniform(0, 1, K - 1).tolist(),  # Class 0 has no test sample.
        "test_count": [0] + [5] * (K - 1),
        "train_count": TRAIN_COUNTS,
      }
      for m in results
    },
  )
  base = np.sqrt(counts)
  _write(
    path,
    "weight_norms.json",
    {
      "joint": base.tolist(),
      "crt": (1 + 0.03 * base).tolist(),
      "tau_norm": np.ones(K).tolist(),
      "lws": (2 + 0.02 * base).tolist(),
    },
  )
  taus = np.linspace(0, 2, 9)
  curve = {g: (0.5 + 0.1 * np.sin(taus + i)).tolist() for i, g in enumerate(R.GROUPS)}
  _write(
    path,
    "tau_sweep.json",
    {
      "taus": taus.tolist(),
      "chosen_tau": 0.75,
      "val": curve,
      "test": {
        **{g: (np.array(v) - 0.03).tolist() for g, v in curve.items()},
        "few": [None] * len(taus),
      },
    },
  )
  if open_set:
    t = np.linspace(0, 1, 11)
    _write(
      path,
      "open_set_curve.json",
      {"oltr": {"thresholds": t.tolist(), "f_measure": (t * (1 - t)).tolist()}},
    )
  return results


def _assert_png(path):
  assert os.path.getsize(path) > 1000
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC


# ---------------------------------------------------------------------------- table


def test_format_results_table_exact():
  results = {
    "crt": {"many": 0.5, "medium": 0.25, "few": None, "all": 0.4, "mean_class": 0.3333},
    "custom": {"many": 1.0, "medium": 0.0, "few": 0.1, "all": 0.5, "mean_class": float("nan")},
    "joint": {"many": 0.6789, "medium": 0.4, "few": 0.05, "all": 0.45, "mean_class": 0.4444},
  }
  assert R.format_results_table(results) == (
    "| Method | Many | Medium | Few | All | Mean class |\n"
    "| :--- | ---: | ---: | ---: | ---: | ---: |\n"
    "| joint | 67.9 | 40.0 | 5.0 | 45.0 | 44.4 |\n"
    "| crt | 50.0 | 25.0 | – | 40.0 | 33.3 |\n"
    "| custom | 100.0 | 0.0 | 10.0 | 50.0 | – |"
  )


def test_format_results_table_open_set_columns():
  results = {
    "oltr": {
      "many": 0.5,
      "medium": 0.4,
      "few": 0.3,
      "all": 0.45,
      "mean_class": 0.4,
      "open_f_measure": 0.12345,
      "open_auroc": 0.9,
    },
    "joint": {"many": 0.5, "medium": 0.4, "few": 0.3, "all": 0.45, "mean_class": 0.4},
  }
  assert R.format_results_table(results).splitlines() == [
    "| Method | Many | Medium | Few | All | Mean class | Open F (0.1) | Open AUROC |",
    "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    "| joint | 50.0 | 40.0 | 30.0 | 45.0 | 40.0 | – | – |",
    "| oltr | 50.0 | 40.0 | 30.0 | 45.0 | 40.0 | 0.123 | 0.900 |",
  ]


def test_format_results_table_rejects_non_numbers():
  with pytest.raises(ValueError, match="'joint'.*'all'"):
    R.format_results_table({"joint": {"all": "high"}})


# ---------------------------------------------------------------------------- report


def test_full_report(tmp_path):
  results = _full_workdir(tmp_path)
  path = R.write_report(str(tmp_path))
  assert path == str(tmp_path / "report.md")
  text = open(path, encoding="utf-8").read()
  for name in FIGURES:
    _assert_png(tmp_path / name)
    assert f"]({name})" in text
  assert not (tmp_path / "open_set_f_measure.png").exists()
  assert "open_set_f_measure" not in text
  for method in results:
    assert f"| {method} |" in text
  # Canonical row order.
  rows = [line.split(" | ")[0][2:] for line in text.splitlines() if line.startswith("| ")][2:]
  assert rows == ["joint", "ncm", "crt", "tau_norm", "lws"]
  assert "Chosen τ: **0.75**" in text
  assert "synthetic_lt" in text and "many n > 100" in text and "few n < 20" in text
  assert "| joint | 80.0 | 40.0 | – | 55.0 | 50.0 |" in text
  assert "Fig. 2 (left)" in text
  assert not list(tmp_path.glob("*.tmp"))


def test_full_report_with_open_set(tmp_path):
  _full_workdir(tmp_path, open_set=True)
  text = open(R.write_report(str(tmp_path)), encoding="utf-8").read()
  for name in (*FIGURES, "open_set_f_measure.png"):
    _assert_png(tmp_path / name)
    assert f"]({name})" in text
  assert "| oltr | 70.0 | 50.0 | 40.0 | 60.0 | 55.0 | 0.457 | 0.812 |" in text
  assert "| joint | 80.0 | 40.0 | – | 55.0 | 50.0 | – | – |" in text


def test_results_only(tmp_path):
  _write(tmp_path, "results.json", _results())
  path = R.write_report(str(tmp_path))
  text = open(path, encoding="utf-8").read()
  assert sorted(os.listdir(tmp_path)) == ["report.md", "results.json"]
  assert "![" not in text and ".png" not in text
  assert R.format_results_table(_results()) in text
  assert "τ" not in text.split("## Test results")[0]  # No tau section without tau_sweep.json.
  assert "Chosen" not in text


def test_weight_norms_without_counts_or_meta(tmp_path):
  _write(tmp_path, "results.json", _results())
  _write(tmp_path, "weight_norms.json", {"joint": [3.0, None, 1.0], "other": [0.0, 0.0, 0.0]})
  text = open(R.write_report(str(tmp_path)), encoding="utf-8").read()
  _assert_png(tmp_path / "weight_norms.png")
  assert "](weight_norms.png)" in text
  assert "tau_sweep.png" not in text and "per_class_accuracy.png" not in text


def test_missing_results_raises(tmp_path):
  _write(tmp_path, "tau_sweep.json", {"taus": [0.0], "chosen_tau": 0.0, "val": {"all": [0.5]}})
  with pytest.raises(ValueError, match=r"results\.json.*run training/evaluation first") as e:
    R.write_report(str(tmp_path))
  assert str(tmp_path) in str(e.value)
  assert not (tmp_path / "report.md").exists()


@pytest.mark.parametrize("name", ["results.json", "tau_sweep.json", "per_class.json"])
def test_malformed_json_names_the_file(tmp_path, name):
  _write(tmp_path, "results.json", _results())
  with open(tmp_path / name, "w") as f:
    f.write('{"joint": {"all": 0.5,')
  with pytest.raises(ValueError, match=name.replace(".", r"\.")):
    R.write_report(str(tmp_path))


def test_wrong_structure_names_the_file(tmp_path):
  _write(tmp_path, "results.json", _results())
  _write(tmp_path, "weight_norms.json", {"joint": "not a list"})
  with pytest.raises(ValueError, match=r"weight_norms\.json"):
    R.write_report(str(tmp_path))


# ---------------------------------------------------------------------------- --compare


def _run(path, name, results, per_class_scale, meta=None):
  """A work directory with results.json and per_class.json of its own methods."""
  d = path / name
  d.mkdir()
  _write(d, "results.json", results)
  _write(
    d,
    "per_class.json",
    {
      m: {"accuracy": [per_class_scale] * K, "test_count": [5] * K, "train_count": TRAIN_COUNTS}
      for m in results
    },
  )
  _write(
    d, "meta.json", meta or {"dataset": "synthetic_lt", "many_threshold": 100, "few_threshold": 20}
  )
  return str(d)


def test_compare_merges_methods_and_names_repeated_ones_by_run(tmp_path):
  full = _results()
  a = _run(tmp_path, "a", {"joint": full["joint"], "crt": full["crt"]}, 0.25)
  b = _run(tmp_path, "b", {"joint": full["lws"], "lws": full["lws"]}, 0.75)
  out = str(tmp_path / "cmp")
  path, table = R.write_comparison([a, os.path.join(b, "results.json")], out)
  with open(os.path.join(out, "results.json")) as f:
    merged = json.load(f)
  assert merged == {
    "joint@a": full["joint"],
    "crt": full["crt"],
    "joint@b": full["lws"],
    "lws": full["lws"],
  }
  with open(os.path.join(out, "per_class.json")) as f:
    per_class = json.load(f)
  assert per_class["joint@a"]["accuracy"] == [0.25] * K
  assert per_class["joint@b"]["accuracy"] == [0.75] * K
  with open(os.path.join(out, "comparison.json")) as f:
    assert json.load(f) == {"runs": [os.path.abspath(a), os.path.abspath(b)]}
  assert path == os.path.join(out, "report.md") and os.path.exists(path)
  assert table == R.format_results_table(merged)
  rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
  assert sorted(rows) == ["crt", "joint@a", "joint@b", "lws"]
  with open(path) as f:
    assert "joint@b" in f.read()


def test_compare_refuses_what_cannot_be_compared(tmp_path):
  full = _results()
  a = _run(tmp_path, "a", {"joint": full["joint"]}, 0.5)
  (tmp_path / "a" / "checkpoints").mkdir()
  with pytest.raises(ValueError, match="own"):
    R.write_comparison([a], a)  # Would overwrite the run's results.json.
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="no results.json"):
    R.write_comparison([a, str(tmp_path / "empty")], str(tmp_path / "cmp"))
  other = {"dataset": "synthetic_lt", "many_threshold": 60, "few_threshold": 20}
  c = _run(tmp_path, "c", {"crt": full["crt"]}, 0.5, meta=other)
  with pytest.raises(ValueError, match="shot thresholds"):
    R.write_comparison([a, c], str(tmp_path / "cmp"))
  with pytest.raises(ValueError, match="at least one"):
    R.write_comparison([], str(tmp_path / "cmp"))
  places = {"dataset": "places_lt", "many_threshold": 100, "few_threshold": 20}
  d = _run(tmp_path, "d", {"crt": full["crt"]}, 0.5, meta=places)
  with pytest.raises(ValueError, match="different datasets"):
    R.write_comparison([a, d], str(tmp_path / "cmp"))
  with pytest.raises(ValueError, match="names a run twice"):
    R.write_comparison([a, a], str(tmp_path / "cmp"))
  assert not os.path.exists(tmp_path / "cmp")


def test_compare_tells_apart_runs_of_the_same_name(tmp_path):
  full = _results()
  (tmp_path / "x").mkdir()
  (tmp_path / "y").mkdir()
  a = _run(tmp_path / "x", "joint", {"joint": full["joint"]}, 0.25)
  b = _run(tmp_path / "y", "joint", {"joint": full["lws"]}, 0.75)
  R.write_comparison([a, b], str(tmp_path / "cmp"))
  with open(tmp_path / "cmp" / "results.json") as f:
    assert json.load(f) == {"joint@x/joint": full["joint"], "joint@y/joint": full["lws"]}


def test_compare_checks_everything_before_writing_and_names_each_run(tmp_path):
  """Runs of 10 and 5 classes: refused before anything is written (the weight-norm figure
  failed after the merged files were); other thresholds and datasets name each run."""
  full = _results()
  a = _run(tmp_path, "a", {"joint": full["joint"]}, 0.5)
  _write(a, "weight_norms.json", {"joint": [1.0] * K})
  b = tmp_path / "b"
  b.mkdir()
  _write(b, "results.json", {"crt": full["crt"]})
  _write(b, "per_class.json", {"crt": {"accuracy": [0.5] * 5, "train_count": [9] * 5}})
  _write(b, "weight_norms.json", {"crt": [1.0] * 5})
  _write(b, "meta.json", {"dataset": "synthetic_lt", "many_threshold": 100, "few_threshold": 20})
  out = tmp_path / "cmp"
  with pytest.raises(ValueError) as e:
    R.write_comparison([a, str(b)], str(out))
  assert str(e.value) == (
    f"the runs have different numbers of classes ({a}: 10; {b}: 5): not comparable."
  )
  assert sorted(os.listdir(tmp_path)) == ["a", "b"]  # No output, no staging left behind.
  # A run whose own files disagree (5 norms, 10 per-class entries) is named.
  _write(a, "weight_norms.json", {"joint": [1.0] * 5})
  with pytest.raises(ValueError, match=f"{a}: its files disagree on the number of classes"):
    R.write_comparison([a], str(out))
  _write(a, "weight_norms.json", {"joint": [1.0] * K})
  # An earlier comparison in out is left as it was when a later one is refused.
  R.write_comparison([a], str(out))
  before = {n: (out / n).read_bytes() for n in os.listdir(out)}
  with pytest.raises(ValueError, match="different numbers of classes"):
    R.write_comparison([a, str(b)], str(out))
  assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before
  other = {"dataset": "synthetic_lt", "many_threshold": 60, "few_threshold": 20}
  c = _run(tmp_path, "c", {"crt": full["crt"]}, 0.5, meta=other)
  with pytest.raises(ValueError) as e:
    R.write_comparison([a, c], str(tmp_path / "cmp2"))
  assert str(e.value).startswith(
    f"the runs use different shot thresholds ({a}: many > 100, few < 20; {c}: many > 60, "
    "few < 20): their many/medium/few groups are not comparable"
  )
  places = {"dataset": "places_lt", "many_threshold": 100, "few_threshold": 20}
  d = _run(tmp_path, "d", {"crt": full["crt"]}, 0.5, meta=places)
  with pytest.raises(ValueError) as e:
    R.write_comparison([a, d], str(tmp_path / "cmp2"))
  assert str(e.value) == (
    f"the runs are of different datasets ({a}: synthetic_lt; {d}: places_lt): not comparable."
  )
  assert not (tmp_path / "cmp2").exists()


def test_compare_refuses_runs_tested_on_other_data_naming_each(tmp_path):
  """Two runs of one dataset name whose test splits differ (meta.json's identity: another
  root, a relabelled test image) do not go in one table."""
  full = _results()
  meta = {"dataset": "folder", "many_threshold": 100, "few_threshold": 20}
  same = {"test": {"records": 50, "digest": "a" * 64}}
  a = _run(tmp_path, "a", {"joint": full["joint"]}, 0.5, meta={**meta, "data": same})
  b = _run(tmp_path, "b", {"crt": full["crt"]}, 0.5, meta={**meta, "data": same})
  R.write_comparison([a, b], str(tmp_path / "ok"))
  other = {"test": {"records": 50, "digest": "b" * 64}}
  c = _run(tmp_path, "c", {"crt": full["crt"]}, 0.5, meta={**meta, "data": other})
  with pytest.raises(ValueError) as e:
    R.write_comparison([a, c], str(tmp_path / "cmp"))
  assert str(e.value).startswith(
    f"the runs were tested on different test data ({a}: test digest aaaaaaaa; {c}: test "
    "digest bbbbbbbb;"
  )
  assert not (tmp_path / "cmp").exists()


def test_compare_names_rows_of_several_test_views(tmp_path):
  """A LIFT row tested with five crops is never shown as a one-view row beside others."""
  from ltjax.evaluate.report import compare
  from ltjax.files import write_json

  for run, views in (("a", "five_crop+24"), ("b", None)):
    row = {"all": 0.5, "computed_with": {"step": 1} | ({"test_views": views} if views else {})}
    os.makedirs(tmp_path / run)
    write_json(str(tmp_path / run / "results.json"), {"lift": row, "crt": row})
  dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
  merged = compare._merged_runs(dirs, ["a", "b"])["results"]
  assert set(merged) == {"lift@a (five_crop+24)", "crt@a (five_crop+24)", "lift@b", "crt@b"}


def test_compare_refuses_runs_of_other_evaluation_settings_naming_each(tmp_path):
  """A column means one thing: rows computed with other ECE bins or another open-set
  threshold (``computed_with``) do not share a table."""
  from ltjax.files import write_json

  for run, extra in (("a", {}), ("b", {"ece_bins": 10}), ("c", {})):
    row = {"all": 0.5, "computed_with": {"step": 1, "open_threshold": 0.1} | extra}
    os.makedirs(tmp_path / run)
    write_json(str(tmp_path / run / "results.json"), {f"joint_{run}": row})
  a, b, c = (str(tmp_path / r) for r in "abc")
  R.write_comparison([a, c], str(tmp_path / "ok"))
  with pytest.raises(ValueError) as e:
    R.write_comparison([a, b], str(tmp_path / "cmp"))
  assert str(e.value).startswith(
    f"the runs' rows were computed with different evaluation settings ({a}: ece_bins 15; "
    f"{b}: ece_bins 10): "
  )
  assert "--config.eval.ece_bins." in str(e.value)
  assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize(
  "threshold, marks", [(0.2, ["Open F: 0.2", "paper: 0.1"]), (0.1, ["Open F: 0.1 (the paper's)"])]
)
def test_the_open_set_figure_marks_the_runs_threshold(tmp_path, monkeypatch, threshold, marks):
  """The dotted line is the threshold the run's Open F column was computed at (with the
  paper's beside it when they differ), not the paper's 0.1 whatever the run used."""
  from ltjax.evaluate.report import plots

  figures = []
  monkeypatch.setattr(plots, "_save", lambda fig, out: figures.append(fig))
  curves = {"joint": {"thresholds": [0.0, 0.5, 1.0], "f_measure": [0.5, 0.6, 0.0]}}
  context = plots.FigureContext(None, {}, {"open_threshold": threshold})
  plots.plot_open_set(curves, "open_set_curve.json", str(tmp_path / "open.png"), context)
  assert [t.get_text() for t in figures[0].axes[0].texts] == marks
