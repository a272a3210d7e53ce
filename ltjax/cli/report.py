"""``ltjax report``: the report of a run, or the comparison of several, from their results
files alone (no JAX, no model: it runs anywhere the results are)."""

from __future__ import annotations

from ltjax.cli.flags import COMPARE, WORKDIR, require


def cmd_report(argv) -> None:
  """Writes report.md and its figures from the results in --workdir, or compares runs."""
  from ltjax.evaluate import report

  runs = [*COMPARE.value, *argv[1:]]
  if runs:
    require(WORKDIR, "workdir")
    path, table = report.write_comparison(runs, WORKDIR.value)
    print(table)
    print(f"\nwrote {path}")
    return
  require(WORKDIR, "workdir")
  print(f"wrote {report.write_report(WORKDIR.value)}")
