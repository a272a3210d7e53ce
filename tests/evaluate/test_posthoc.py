"""NCM and tau-norm selection on val, and sharded feature extraction."""

import os

import jax
import numpy as np
import pytest
from helpers import tiny_config, tiny_splits

from ltjax.evaluate import posthoc, posthoc_methods
from ltjax.models import heads
from ltjax.train import experiment, steps


def blobs(seed, n_per_class, num_classes=4, dim=6):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(num_classes), n_per_class)
  centres = rng.normal(size=(num_classes, dim)) * 2
  features = centres[labels] + rng.normal(size=(len(labels), dim))
  return {"features": features.astype(np.float32), "labels": labels.astype(np.int32)}


def numpy_ncm_predictions(train, queries, feat_type, distance):
  """NCM restated in numpy (Kang et al.; the reference KNNClassifier): class means of the
  transformed training features; queries transformed alike (cl2n: centred on the training
  mean, then L2-normalised); nearest mean by squared L2 distance or largest dot product."""
  mu = train["features"].mean(0)

  def transform(x):
    x = x - mu if feat_type == "cl2n" else x
    return x / np.linalg.norm(x, axis=1, keepdims=True) if feat_type != "un" else x

  t = transform(train["features"])
  means = np.stack([t[train["labels"] == k].mean(0) for k in range(4)])
  q = transform(queries)
  if distance == "l2":
    return (((q[:, None] - means[None]) ** 2).sum(-1)).argmin(-1)
  return (q @ means.T).argmax(-1)


def test_ncm_picks_the_best_val_combination_and_applies_it_to_test():
  train, val, test = blobs(0, [30, 10, 5, 2]), blobs(1, [10] * 4), blobs(2, [10] * 4)
  out = posthoc_methods.ncm(train, val, test, 4)
  expected = {
    f"{f}/{d}": float(np.mean(numpy_ncm_predictions(train, val["features"], f, d) == val["labels"]))
    for f in ("un", "l2n", "cl2n")
    for d in ("l2", "cos")
  }
  assert out["val_accuracy"] == pytest.approx(expected)
  best = max(expected.values())
  assert expected[f"{out['feat_type']}/{out['distance']}"] == best
  np.testing.assert_array_equal(
    out["pred"], numpy_ncm_predictions(train, test["features"], out["feat_type"], out["distance"])
  )


class Eval:
  many_threshold, few_threshold = 20, 8


def test_tau_norm_picks_tau_on_val():
  val, test = blobs(1, [10] * 4), blobs(2, [10] * 4)
  weights = np.random.default_rng(3).normal(size=(4, 6)).astype(np.float32)
  weights[0] *= 5  # A head class with a large norm: tau > 0 should help.
  out = posthoc_methods.tau_norm(weights, val, test, np.array([30, 10, 5, 2]), Eval)
  curves = out["curves"]
  assert len(curves["val"]["all"]) == len(curves["taus"]) == len(posthoc_methods.DEFAULT_TAUS)
  assert curves["val"]["all"][curves["taus"].index(out["tau"])] == max(curves["val"]["all"])
  expected = np.asarray(test["features"] @ heads.tau_normalize(weights, out["tau"]).T).argmax(-1)
  np.testing.assert_array_equal(out["pred"], expected)


def test_extracted_features_match_a_direct_forward(tmp_path):
  splits = tiny_splits()
  exp, state = experiment.setup(tiny_config(), splits)
  cache = str(tmp_path / "f" / "test.npz")
  out = posthoc.extract(exp, state, splits.test, cache)
  images, labels = splits.test.get_batch(np.arange(len(splits.test)))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  x = steps.normalize(images, exp.config.dataset.mean, exp.config.dataset.std)
  logits, aux = exp.model.apply(jax.device_get(variables), x, train=False)
  np.testing.assert_allclose(out["features"], aux["features"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(out["labels"], labels)
  again = posthoc.extract(exp, state, splits.test, cache)  # From the cache.
  np.testing.assert_array_equal(again["features"], out["features"])


def test_cached_features_of_another_checkpoint_are_recomputed(tmp_path, caplog):
  # evaluate --posthoc, then the run trains on (resumed with more epochs), then evaluate
  # --posthoc again: the features of the new checkpoint, never the cached ones of the old.
  import logging

  from ltjax.train import loop

  splits = tiny_splits()
  features = str(tmp_path / "features")
  exp, state = experiment.setup(tiny_config(), splits)
  state = loop.train(exp, state, str(tmp_path))
  first = posthoc.extract(exp, state, splits.test, os.path.join(features, "test.npz"))
  longer = tiny_config(num_epochs=3)
  exp, state = experiment.setup(longer, splits)
  state = loop.train(exp, state, str(tmp_path), allow_config_change=True)
  with caplog.at_level(logging.INFO, logger="ltjax"):
    again = posthoc.extract(exp, state, splits.test, os.path.join(features, "test.npz"))
  assert "is of checkpoint step 3, now 9" in caplog.text and "recomputing it" in caplog.text
  fresh = posthoc.extract(exp, state, splits.test)
  np.testing.assert_array_equal(again["features"], fresh["features"])
  assert not np.allclose(again["features"], first["features"])
