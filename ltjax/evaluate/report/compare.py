"""``ltjax report --compare``: one report over several separately trained runs.

The runs' results files are merged method by method into a directory of their own, after
checking that the runs can share a table (same dataset, shot thresholds, test data,
number of classes and evaluation settings: open-set threshold, ECE bins, ...); then
``markdown.write_report`` draws it as it does one run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ltjax.evaluate import evaluators
from ltjax.evaluate.report.inputs import read_if_present, shot_thresholds
from ltjax.evaluate.report.markdown import format_results_table, write_report
from ltjax.files import write_json


def _compared_files() -> tuple[str, ...]:
  """The per-method files merged: the results, the evaluators' own files, the weight norms."""
  return ("results", *evaluators.method_files(), "weight_norms")


def _run_names(dirs: list[str], out_dir: str) -> list[str]:
  """Each compared run's name: its directory's name, or its path below the common parent
  when two have the same (runs/a/joint and runs/b/joint: a/joint, b/joint)."""
  if not dirs:
    raise ValueError("--compare needs at least one work directory.")
  out_abs = os.path.abspath(out_dir)
  if any(os.path.abspath(d) == out_abs for d in dirs) or os.path.isdir(
    os.path.join(out_dir, "checkpoints")
  ):
    raise ValueError(
      f"--workdir={out_dir} is a run's work directory: give the comparison its own "
      "directory (its results.json would be overwritten)."
    )
  names = [os.path.basename(os.path.normpath(d)) or d for d in dirs]
  if len(set(names)) < len(names):
    common = os.path.commonpath([os.path.abspath(d) for d in dirs])
    names = [os.path.relpath(os.path.abspath(d), common) for d in dirs]
  if len(set(names)) < len(names):
    raise ValueError(f"--compare names a run twice: {' '.join(dirs)}")
  return names


def _merged_runs(dirs: list[str], names: list[str]) -> dict[str, dict]:
  """The compared files of every run merged, method by method (``method@run`` where
  several runs report a method; ``(five_crop+24)`` after a row whose test images were five
  crops, ``computed_with.test_views``, so it is never read as a one-view row)."""
  loaded, compared = [], _compared_files()
  for d in dirs:
    if read_if_present(os.path.join(d, "results.json")) is None:
      raise ValueError(f"{d} has no results.json: train or evaluate that run first.")
    loaded.append({f: read_if_present(os.path.join(d, f"{f}.json")) or {} for f in compared})
  counts: dict[str, int] = {}
  for run in loaded:
    for method in run["results"]:
      counts[method] = counts.get(method, 0) + 1
  merged: dict[str, dict] = {f: {} for f in compared}
  for name, run in zip(names, loaded, strict=True):
    for method in run["results"]:
      label = method if counts[method] == 1 else f"{method}@{name}"
      row = run["results"][method]
      views = (row.get("computed_with") or {}).get("test_views") if isinstance(row, dict) else None
      if views:  # Several views of each test image averaged (LIFT's tte): said in its name.
        label = f"{label} ({views})"
      for f in compared:
        if method in run[f]:
          merged[f][label] = run[f][method]
  return merged


def _check_comparable(dirs: list[str]) -> None:
  """Runs of different datasets, shot thresholds, test data (``meta.json``'s identity of the
  test split) or numbers of classes do not go in one table; each refusal names every run
  with its value. Checked before anything is written."""
  metas = {d: read_if_present(os.path.join(d, "meta.json")) for d in dirs}
  metas = {d: m for d, m in metas.items() if m}
  datasets = {d: m.get("dataset") for d, m in metas.items() if m.get("dataset") is not None}
  if len(set(datasets.values())) > 1:
    each = "; ".join(f"{d}: {name}" for d, name in datasets.items())
    raise ValueError(f"the runs are of different datasets ({each}): not comparable.")
  thresholds = {d: shot_thresholds(m) for d, m in metas.items()}
  thresholds = {d: t for d, t in thresholds.items() if t is not None}
  if len(set(thresholds.values())) > 1:
    each = "; ".join(f"{d}: many > {t[0]:g}, few < {t[1]:g}" for d, t in thresholds.items())
    raise ValueError(
      f"the runs use different shot thresholds ({each}): their many/medium/few groups are not "
      "comparable; evaluate them with the same --config.eval.many_threshold / few_threshold."
    )
  tests = {d: ((m.get("data") or {}).get("test") or {}).get("digest") for d, m in metas.items()}
  tests = {d: t for d, t in tests.items() if t}
  if len(set(tests.values())) > 1:
    each = "; ".join(f"{d}: test digest {t[:8]}" for d, t in tests.items())
    raise ValueError(
      f"the runs were tested on different test data ({each}; meta.json, ltjax.data.identity): "
      "their numbers are not comparable. Evaluate them on the same data."
    )
  classes = {}
  for d in dirs:
    sizes = {}  # Number of classes -> the file that says so.
    names = (metas.get(d) or {}).get("class_names")
    if isinstance(names, list):
      sizes.setdefault(len(names), "meta.json")
    for f, keys in (("per_class", ("accuracy", "train_count", "test_count")), ("weight_norms", ())):
      for entry in (read_if_present(os.path.join(d, f"{f}.json")) or {}).values():
        values = [entry.get(k) for k in keys] if isinstance(entry, Mapping) else [entry]
        for v in values:
          if isinstance(v, list):
            sizes.setdefault(len(v), f"{f}.json")
    if len(sizes) > 1:
      each = ", ".join(f"{n} in {f}" for n, f in sizes.items())
      raise ValueError(
        f"{d}: its files disagree on the number of classes ({each}): evaluate it again."
      )
    if sizes:
      classes[d] = next(iter(sizes))
  if len(set(classes.values())) > 1:
    each = "; ".join(f"{d}: {k}" for d, k in classes.items())
    raise ValueError(f"the runs have different numbers of classes ({each}): not comparable.")
  # One column means one thing: the open-set threshold, ECE bins, ... of every run's rows.
  settings = {}
  for d in dirs:
    results = read_if_present(os.path.join(d, "results.json"))
    if isinstance(results, Mapping):
      settings[d] = evaluators.report_settings(results)
  if len({tuple(sorted(s.items())) for s in settings.values()}) > 1:
    keys = sorted({k for s in settings.values() for k in s})
    differ = [k for k in keys if len({s.get(k) for s in settings.values()}) > 1]
    each = "; ".join(
      f"{d}: " + ", ".join(f"{k} {s.get(k)}" for k in differ) for d, s in settings.items()
    )
    raise ValueError(
      f"the runs' rows were computed with different evaluation settings ({each}): their "
      "columns would not mean one thing. Evaluate them with the same --config.eval."
      + " / --config.eval.".join(differ)
      + "."
    )


def write_comparison(runs: list[str], out_dir: str) -> tuple[str, str]:
  """One table and one set of figures over several work directories (``ltjax report
  --compare``): joint, cRT, LWS, OLTR, NCM and tau-norm from separately trained runs.

  Each run's ``results.json``, ``per_class.json``, ``weight_norms.json`` and
  ``open_set_curve.json`` are merged, method by method, into ``out_dir`` (a method that
  appears in several runs is named ``method@run``); ``tau_sweep.json`` and ``meta.json``
  come from the first run that has them. Then ``report.md`` and its figures are written
  there, as ``write_report`` does for one run.

  Args:
    runs: work directories (or paths of their results.json).
    out_dir: where the merged files and the report go; not one of the runs.

  Returns:
    (path of report.md, the results table).

  Raises:
    ValueError: fewer than one run, a run without results.json, ``out_dir`` is a run's
      work directory, or the runs' datasets, shot thresholds or numbers of classes differ.
      Nothing is written in ``out_dir`` then (nor when drawing the report fails).
  """
  import shutil
  import tempfile

  dirs = [os.path.dirname(r) if r.endswith(".json") else r for r in runs]
  merged = _merged_runs(dirs, _run_names(dirs, out_dir))
  _check_comparable(dirs)
  # Everything is made in a staging directory beside out_dir, and moved into out_dir only
  # once the report is drawn: a comparison that fails leaves out_dir as it was.
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".ltjax-compare-", dir=parent)
  try:
    for f, entries in merged.items():
      if entries:
        write_json(os.path.join(staging, f"{f}.json"), entries)
    for extra in ("meta", "tau_sweep"):
      source = next((d for d in dirs if os.path.exists(os.path.join(d, f"{extra}.json"))), None)
      if source is not None:
        path = os.path.join(source, f"{extra}.json")
        write_json(os.path.join(staging, f"{extra}.json"), read_if_present(path))
    runs_abs = [os.path.abspath(d) for d in dirs]
    write_json(os.path.join(staging, "comparison.json"), {"runs": runs_abs})
    write_report(staging)
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(staging)):
      os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return os.path.join(out_dir, "report.md"), format_results_table(merged["results"])
