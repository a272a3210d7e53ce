"""Running the post-hoc methods on a trained model: its features, extracted once per split
with the jitted, sharded feature step and cached as ``features/<split>.npz`` in the work
dir, then every registered method (``ltjax.evaluate.posthoc_methods``: NCM, tau-norm,
post-hoc logit adjustment, each selected on the validation split) recorded as a results row.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import numpy as np

from ltjax import config as config_lib
from ltjax import files
from ltjax.data import identity
from ltjax.evaluate import methods, outputs, posthoc_methods, runner
from ltjax.models import backbones, text_features

log = logging.getLogger(__name__)


def extract(exp, state, source, cache: str | None = None) -> dict[str, np.ndarray]:
  """Features (N, D), logits (N, K) and labels (N,) of every record, in order.

  Uses the evaluation transform (no augmentation): on the training source this is the
  un-sampled "train_plain" set of the references. ``cache`` (an .npz path) is reused only
  if it was computed from the same checkpoint step and config (``config.fingerprint``) on
  the same records (``ltjax.data.identity``: a relabelled, added or removed image, or
  another dataset, is other data) and has one row per record; otherwise it is recomputed
  and rewritten, and the log says why.
  """
  if not cache:
    return runner.features(exp, state, source)
  key = json.dumps(
    {
      "step": int(jax.device_get(state.step)),
      "config": config_lib.fingerprint(exp.config),
      "data": identity.split_identity(source, exp.splits.class_names),
    }
  )
  cached = _read_cache(cache, key, len(source))
  if cached is not None:
    return cached
  out = runner.features(exp, state, source)
  if jax.process_index() == 0:
    try:
      os.makedirs(os.path.dirname(cache), exist_ok=True)
      with files.atomic_write(cache, "wb") as f:
        np.savez(f, **out, cache_key=np.asarray(key))
    except OSError as e:  # A read-only or full disk: the features are just not cached.
      log.warning("could not cache features in %s (%s)", cache, e.strerror or e)
  return out


def _read_cache(path: str, key: str, n: int) -> dict[str, np.ndarray] | None:
  """The cached features at ``path`` if they derive from ``key`` (step and config) and
  cover ``n`` records; None (with a log line when a cache is there) otherwise."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as f:
      data = dict(f)
  except (OSError, ValueError) as e:
    log.warning("feature cache %s is unreadable (%s): recomputing it", path, e)
    return None
  stored = str(data.pop("cache_key", ""))
  if stored != key or len(data.get("labels", ())) != n:
    was, now = json.loads(stored) if stored.startswith("{") else {}, json.loads(key)
    why = []
    if was.get("step") != now["step"]:
      why.append(f"of checkpoint step {was.get('step', '?')}, now {now['step']}")
    if was.get("config") != now["config"]:
      why.append("of another config")
    if was.get("data") != now["data"]:
      why.append(
        f"of other data ({identity.short(was.get('data'))}; now {identity.short(now['data'])})"
      )
    log.info("feature cache %s is %s: recomputing it", path, ", ".join(why) or "incomplete")
    return None
  return data


def _predictions(method_out: dict, labels: np.ndarray, evaluation) -> dict:
  """``runner.record``'s outputs of a post-hoc method: those the run's evaluators need,
  of its test logits (``outputs.on_host``), its own prediction as ``"pred"`` (as
  selected) and the labels."""
  p = outputs.on_host(method_out["logits"], labels, evaluation.outputs)
  return {**p, "pred": method_out["pred"], "label": labels}


def evaluate_all(exp, state, workdir: str, features_dir: str) -> dict:
  """The post-hoc methods of ``config.eval.posthoc`` (``exp.evaluation.posthoc``; by
  default every registered one, in registration order: NCM, tau-norm, post-hoc logit
  adjustment) on top of a trained model, recorded in ``workdir``'s results.

  Extracts (or reads cached) train/val/test features into ``features_dir``; writes each
  method's results row, the selection sweeps into ``tau_sweep.json`` (tau-norm's at its top
  level, the others' under their names) and the classifiers they return into
  ``weight_norms.json``.

  Returns:
    {method name: summary}.
  """
  todo = [cls() for cls in exp.evaluation.posthoc]
  weights = runner.classifier_weights(state.params)
  if weights is None and any(m.needs_weights for m in todo):
    needing = ", ".join(m.name for m in todo if m.needs_weights)
    raise ValueError(
      f"{needing} need a joint model with a linear head (model.head={exp.config.model.head!r})."
    )
  counts, eval_cfg = exp.splits.train_counts, exp.config.eval
  if not len(exp.splits.val):
    raise ValueError(
      "The post-hoc methods are selected on the validation split, which is "
      "empty; set --config.dataset.val_per_class (or use a dataset with a val list)."
    )
  feats = {
    split: extract(
      exp, state, getattr(exp.splits, split), os.path.join(features_dir, f"{split}.npz")
    )
    for split in ("train", "val", "test")
  }
  inputs = posthoc_methods.PosthocInputs(
    **feats,
    weights=weights,
    train_counts=counts,
    eval_cfg=eval_cfg,
    text_features=_text_features(exp, workdir),
    pretrained_backbone=exp.stage.keeps_pretrained_backbone(exp.config)
    and backbones.get(exp.config.model.backbone).clip_quick_gelu is not None,
  )
  labels = feats["test"]["labels"]
  # Computed from the tested model of the run's method: rows of another model go (runner).
  made = runner.computed_with(exp, int(jax.device_get(state.step)), exp.config.method)
  out, results = {}, {}
  for method in todo:
    reason = method.skip_reason(inputs)
    if reason:
      log.info("%s: no row: %s.", method.name, reason)
      continue
    r = results[method.name] = method.run(inputs)
    p = _predictions(r, labels, exp.evaluation)
    out[method.name] = runner.record(
      workdir, method.name, p, counts, exp.evaluation, r["val_max_prob"], provenance=made
    )
  _write_sweeps(workdir, results)
  for name, r in results.items():
    if "weights" in r:
      runner.record_weight_norms(workdir, name, r["weights"])
  return out


def _text_features(exp, workdir: str):
  """The run's text features (checked against its class names), or None. The run's own
  copy wins over ``model.text_features``; a file there of other content is said."""
  path = text_features.of_run(workdir, exp.config)
  if not path:
    return None
  given = exp.config.model.get("text_features")
  if given and os.path.abspath(given) != os.path.abspath(path) and os.path.isfile(given):
    with open(given, "rb") as a, open(path, "rb") as b:
      if a.read() != b.read():
        log.warning(
          "model.text_features=%s differs from the run's own copy %s, which the zero-shot "
          "row uses (the text features the run started from).",
          given,
          path,
        )
  tf = text_features.load(path)
  text_features.check_classes(tf, exp.splits.class_names, f"text features {path}")
  return tf


def _write_sweeps(workdir: str, results: dict) -> None:
  """The methods' selection curves (their ``"curves"``) into ``tau_sweep.json``:
  ``methods.TOP_LEVEL_SWEEP``'s at the top level, every other one under its name."""
  sweeps = {}
  for name, r in results.items():
    if "curves" not in r:
      continue
    if name == methods.TOP_LEVEL_SWEEP:
      sweeps.update(r["curves"])
    else:
      sweeps[name] = r["curves"]
  if sweeps and jax.process_index() == 0:
    runner.write_json(os.path.join(workdir, "tau_sweep.json"), sweeps)
