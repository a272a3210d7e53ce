"""The commands that run models on the accelerators: ``train``, ``evaluate`` and ``demo``, and
the join of a multi-process run that train and evaluate share. JAX and the training code are
imported inside each command, so that the commands that need no JAX start without it."""

from __future__ import annotations

import logging as std_logging
import os

from ltjax.cli.flags import (
  ALLOW_CONFIG_CHANGE,
  CONFIG,
  COORDINATOR,
  DISTRIBUTED,
  DTYPE,
  NUM_PROCESSES,
  OPEN_SET,
  POSTHOC,
  PROCESS_ID,
  WORKDIR,
  require,
)

log = std_logging.getLogger("ltjax.cli")


def is_main_process() -> bool:
  """Whether this process prints results (process 0 of a multi-process run)."""
  import jax

  return jax.process_index() == 0


def cmd_train(argv) -> None:
  """Trains (or resumes) the config's stage in --workdir, then evaluates it on test."""
  del argv
  require(CONFIG, "config")
  require(WORKDIR, "workdir")
  from ltjax.evaluate.report import format_results_table
  from ltjax.train import loop

  summary = loop.train_and_evaluate(
    CONFIG.value, WORKDIR.value, allow_config_change=ALLOW_CONFIG_CHANGE.value
  )
  if is_main_process():
    print(format_results_table({CONFIG.value.method: summary}))
    print(f"\nresults: {WORKDIR.value}/results.json; `ltjax report --workdir={WORKDIR.value}`")


def cmd_evaluate(argv) -> None:
  """Evaluates the run in --workdir on test (its last step, or with eval.select=best_val
  its best-validation model), with the run's own config
  (config.json; --config and evaluation overrides are checked against it; works on a
  read-only run)."""
  del argv
  require(WORKDIR, "workdir")
  require(CONFIG, "config")
  from ltjax.evaluate import report
  from ltjax.train import loop

  config = CONFIG.value
  if OPEN_SET.value:
    if "open_set" not in config.eval.evaluators:
      raise ValueError(
        "--open_set: the open_set evaluator is not chosen; add it to --config.eval.evaluators."
      )
    _with_open_set(config)
  results = loop.evaluate_run(config, WORKDIR.value, posthoc=POSTHOC.value)
  if OPEN_SET.value and not any("open_f_measure" in r for r in results.values()):
    raise ValueError(
      "--open_set: the test split has no open-set images (label -1); "
      "set --config.dataset.open_classes or an open-set source."
    )
  if is_main_process():
    print(report.format_results_table(results))


def _with_open_set(config) -> None:
  """``evaluate --open_set`` on a dataset with an open-set split (the reference lists, your
  own lists' ``dataset.open_list``, an image folder's ``open/``): turns it on, as the open
  set is only ever test images (the model is the same; ``dataset.open_set`` is an
  evaluation field)."""
  from ltjax.data import datasets

  entry = datasets.get(config.dataset.name)
  if "open_set" not in entry.fields:
    if not config.dataset.open_classes:
      raise ValueError(
        "--open_set: the test split has no open-set images (label -1): dataset "
        f"{config.dataset.name!r} has no open-set split; its open set is classes held out of "
        "training (dataset.open_classes), which only training can set."
      )
    return
  if not config.dataset.open_set:
    log.info("--open_set: adding the dataset's open-set images to the test split")
    config.dataset.open_set = True


def cmd_demo(argv) -> None:
  """The whole pipeline on digits-LT: joint, NCM, cRT, tau-norm, post-hoc logit adjustment,
  LWS, OLTR, and joint training with the logit-adjusted loss (about a minute)."""
  del argv
  from ltjax import demo
  from ltjax.evaluate.report import format_results_table

  workdir = WORKDIR.value or os.path.abspath("ltjax_demo")
  results = demo.run(workdir, dtype=DTYPE.value)
  print(f"\nltjax demo: digits-LT results (test split), written to {workdir}/results.json")
  print(f"report with figures: {workdir}/report.md\n")
  print(format_results_table(results))


def start_processes() -> None:
  """Joins a multi-process run if the flags or the environment ask for one."""
  from ltjax.train import distributed

  if (
    distributed.initialize(
      COORDINATOR.value, NUM_PROCESSES.value, PROCESS_ID.value, auto=DISTRIBUTED.value
    )
    and not is_main_process()
  ):
    # Progress and results come from process 0; the others report warnings and errors.
    std_logging.getLogger("ltjax").setLevel(std_logging.WARNING)
