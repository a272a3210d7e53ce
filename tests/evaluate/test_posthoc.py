"""NCM and tau-norm selection on val, and sharded feature extraction."""

import jax
import numpy as np
from helpers import tiny_config, tiny_splits

from ltjax.evaluate import posthoc
from ltjax.models import heads
from ltjax.train import loop, steps


def blobs(seed, n_per_class, num_classes=4, dim=6):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(num_classes), n_per_class)
  centres = rng.normal(size=(num_classes, dim)) * 2
  features = centres[labels] + rng.normal(size=(len(labels), dim))
  return {"features": features.astype(np.float32), "labels": labels.astype(np.int32)}


def test_ncm_picks_the_best_val_combination_and_applies_it_to_test():
  train, val, test = blobs(0, [30, 10, 5, 2]), blobs(1, [10] * 4), blobs(2, [10] * 4)
  out = posthoc.ncm(train, val, test, 4)
  best = max(out["val_accuracy"], key=out["val_accuracy"].get)
  assert best == f"{out['feat_type']}/{out['distance']}"
  means, mu = heads.class_means(train["features"], train["labels"], 4, out["feat_type"])
  logits = np.asarray(
    heads.ncm_logits(test["features"], means, mu, out["feat_type"], out["distance"])
  )
  np.testing.assert_array_equal(out["pred"], logits.argmax(-1))
  assert len(out["val_accuracy"]) == 6


class Eval:
  many_threshold, few_threshold = 20, 8


def test_tau_norm_picks_tau_on_val():
  val, test = blobs(1, [10] * 4), blobs(2, [10] * 4)
  weights = np.random.default_rng(3).normal(size=(4, 6)).astype(np.float32)
  weights[0] *= 5  # A head class with a large norm: tau > 0 should help.
  out = posthoc.tau_norm(weights, val, test, np.array([30, 10, 5, 2]), Eval)
  curves = out["curves"]
  assert len(curves["val"]["all"]) == len(curves["taus"]) == len(posthoc.DEFAULT_TAUS)
  assert curves["val"]["all"][curves["taus"].index(out["tau"])] == max(curves["val"]["all"])
  expected = np.asarray(test["features"] @ heads.tau_normalize(weights, out["tau"]).T).argmax(-1)
  np.testing.assert_array_equal(out["pred"], expected)


def test_extracted_features_match_a_direct_forward(tmp_path):
  splits = tiny_splits()
  exp, state = loop.setup(tiny_config(), splits)
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
