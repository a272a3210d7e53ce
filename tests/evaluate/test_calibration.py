"""Top-5 accuracy, expected calibration error and NLL: against NumPy restatements, and the
eval step (on device) against the same definitions run by numpy on host logits."""

import jax
import numpy as np
import pytest
from helpers import tiny_config, tiny_splits

from ltjax.evaluate import evaluators, metrics, outputs, runner
from ltjax.train import experiment

#: The outputs of every evaluator of ltjax, on host logits (as the post-hoc methods' rows).
OUTPUTS = evaluators.outputs_of([evaluators.get(n)() for n in evaluators.DEFAULT])


def from_logits(logits, labels):
  return outputs.on_host(logits, labels, OUTPUTS)


def guo_ece(conf, correct, bins=15):
  """Guo et al.'s ECE as their code writes it: bins (lower, upper], count-weighted gaps."""
  edges = np.linspace(0, 1, bins + 1)
  ece = 0.0
  for lower, upper in zip(edges[:-1], edges[1:], strict=True):
    inside = (conf > lower) & (conf <= upper)
    if inside.any():
      ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
  return ece


def test_calibration_is_guo_et_al_ece_with_bins_at_the_edges():
  rng = np.random.default_rng(0)
  conf = np.concatenate([rng.uniform(0.1, 1.0, 500), np.arange(1, 16) / 15])  # Edges too.
  correct = rng.random(conf.size) < conf**2
  out = metrics.calibration(conf, correct)
  assert out["ece"] == pytest.approx(guo_ece(conf, correct), abs=1e-12)
  assert out["count"].sum() == conf.size
  # 1/15 belongs to the first bin (0, 1/15], 1.0 to the last.
  edges = metrics.calibration(np.array([1 / 15, 1.0]), np.array([True, True]))["count"]
  assert edges[[0, -1]].tolist() == [1, 1]
  perfect = metrics.calibration(np.full(10, 0.7), np.arange(10) < 7)
  assert perfect["ece"] == pytest.approx(0.0, abs=1e-12)


def test_from_logits_top5_and_nll_restated():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(40, 8)).astype(np.float32)
  logits[0] = [3, 2, 2, 2, 2, 2, 1, 0]  # Ties go against the label: 5 others >= it.
  labels = rng.integers(0, 8, 40)
  labels[0], labels[1] = 5, -1  # Open-set images: no top-5 hit, NLL 0 (skipped anyway).
  out = from_logits(logits, labels)
  z = logits.astype(np.float64)
  top = z.max(1, keepdims=True)
  log_p = z - top - np.log(np.exp(z - top).sum(1, keepdims=True))
  for i, y in enumerate(labels):
    if y < 0:
      assert not out["top5"][i] and out["nll"][i] == 0
      continue
    assert out["top5"][i] == (np.sum(z[i] >= z[i, y]) - 1 < 5)
    assert out["nll"][i] == pytest.approx(-log_p[i, y], rel=1e-6)
  assert not out["top5"][0]
  assert np.array_equal(out["pred"], logits.argmax(1))


def test_top5_ties_count_against_the_label_as_a_sort_would_at_worst():
  """Equal logits never make a hit: on logits that are all equal, top-5 of 8 classes is 0
  (it was 100% when ties counted for the label); on bfloat16-rounded logits, never above
  the hit rate of a ranking that puts the label last among its equals."""
  labels = np.arange(8)
  assert not from_logits(np.zeros((8, 8), np.float32), labels)["top5"].any()
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(2000, 1000)).astype(np.float32)
  y = rng.integers(0, 1000, 2000)
  logits[np.arange(2000), y] += 2.5
  rounded = np.asarray(jax.numpy.asarray(logits, jax.numpy.bfloat16).astype(np.float32))
  hits = from_logits(rounded, y)["top5"]
  true = rounded[np.arange(2000), y]
  ties = ((rounded == true[:, None]).sum(1) > 1).mean()
  assert ties > 0.01  # bfloat16 over 1,000 classes ties often.
  worst = np.array([np.sum(rounded[i] >= true[i]) - 1 < 5 for i in range(2000)])
  best = np.array([np.sum(rounded[i] > true[i]) < 5 for i in range(2000)])
  np.testing.assert_array_equal(hits, worst)
  assert hits.mean() < best.mean()


def test_top5_is_not_reported_with_five_classes_or_fewer():
  class Eval:
    many_threshold, few_threshold, open_threshold = 100, 20, 0.1
    evaluators = evaluators.DEFAULT

  labels = np.array([0, 1, 2, 3, 4, 0])
  logits = np.eye(5)[[1, 2, 3, 4, 0, 0]]
  p = {**from_logits(logits, labels), "label": labels}
  out = evaluators.Evaluation.from_config(Eval()).summarize(p, np.array([50, 40, 30, 20, 10]))
  assert not any(k.startswith("top5") for k in out)
  more = np.eye(6)[[1, 2, 3, 4, 0, 0]]
  p6 = {**from_logits(more, labels), "label": labels}
  assert "top5_all" in evaluators.Evaluation.from_config(Eval()).summarize(
    p6, np.array([50, 40, 30, 20, 10, 5])
  )


def test_summary_has_top5_per_group_ece_and_nll():
  rng = np.random.default_rng(2)
  counts = np.array([200, 150, 50, 30, 10, 5, 3, 2])
  labels = np.concatenate([np.repeat(np.arange(8), 10), [-1] * 5])
  logits = rng.normal(size=(labels.size, 8)) + 2.0 * np.eye(8)[np.clip(labels, 0, 7)]
  p = {**from_logits(logits, labels), "label": labels}

  class Eval:
    many_threshold, few_threshold, open_threshold = 100, 20, 0.1
    evaluators = evaluators.DEFAULT

  out = evaluators.Evaluation.from_config(Eval()).summarize(p, counts)
  known = labels >= 0
  hits = p["top5"][known]
  assert out["top5_all"] == pytest.approx(hits.mean())
  per_class = np.array([hits[labels[known] == c].mean() for c in range(8)])
  assert out["top5_many"] == pytest.approx(per_class[counts > 100].mean())
  assert out["top5_few"] == pytest.approx(per_class[counts < 20].mean())
  correct = p["pred"][known] == labels[known]
  assert out["ece"] == pytest.approx(guo_ece(p["max_prob"][known], correct))
  assert out["nll"] == pytest.approx(p["nll"][known].mean())
  assert out["top5_all"] >= out["all"]


def test_each_output_is_one_definition_run_by_jnp_or_numpy():
  """ltjax's outputs are written once (``array_output``); their jnp run is jax.nn's softmax
  and log-softmax to the bit (the eval step's rows did not move when the definitions became
  one), their numpy run the same within float32 rounding."""
  import jax.numpy as jnp

  for o in (outputs.PRED, outputs.MAX_PROB, outputs.TOP5, outputs.NLL):
    assert o.host is not None
  rng = np.random.default_rng(3)
  logits = (4 * rng.normal(size=(64, 10))).astype(np.float32)
  labels = rng.integers(-1, 10, 64).astype(np.int32)
  device = {k: np.asarray(jax.jit(o.device)(logits, labels)) for k, o in OUTPUTS.items()}
  safe = np.where(labels >= 0, labels, 0)[:, None]
  log_p = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), safe, -1)[:, 0]
  nll = jax.jit(lambda: jnp.where(labels >= 0, -log_p, 0.0))()
  max_prob = jax.jit(lambda x: jnp.max(jax.nn.softmax(x, axis=-1), -1))(logits)
  np.testing.assert_array_equal(device["nll"], np.asarray(nll))
  np.testing.assert_array_equal(device["max_prob"], np.asarray(max_prob))
  host = from_logits(logits, labels)
  for k in ("pred", "top5"):
    np.testing.assert_array_equal(device[k], host[k])
  np.testing.assert_allclose(device["nll"], host["nll"], rtol=2e-6, atol=1e-6)
  np.testing.assert_allclose(device["max_prob"], host["max_prob"], rtol=2e-6)


def test_the_eval_step_computes_what_the_host_run_does():
  """8 devices, a sharded batch: the eval step's top-5 hits and NLL equal those of the
  same definitions run by numpy on the feature step's logits."""
  splits = tiny_splits(num_classes=8, counts=(24, 12, 8, 6, 5, 4, 3, 3))
  exp, state = experiment.setup(tiny_config(), splits)
  state = jax.device_get(exp.stage.start(exp, state))
  source = exp.splits.test
  p = runner.predict(exp, state, source)
  logits = runner.run_over(exp, state, source, exp.feature_step, ("logits",))["logits"]
  labels = np.asarray(source.labels).copy()
  twin = from_logits(logits, labels)
  np.testing.assert_array_equal(p["top5"], twin["top5"])
  assert 0 < twin["top5"].mean() < 1  # Out of 8 classes: some miss.
  np.testing.assert_allclose(p["nll"], twin["nll"], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(p["pred"], twin["pred"])
  np.testing.assert_allclose(p["max_prob"], twin["max_prob"], rtol=1e-6)


def test_ldam_is_evaluated_on_the_logits_its_loss_trains():
  """The cosine head's logits lie in [-1, 1]; LDAM's loss scales them by s = 30. The eval
  step's probabilities (max_prob, NLL, hence ECE and open-set thresholds) are those of the
  scaled logits, not of the raw cosines (whose softmax over K classes is nearly uniform)."""
  splits = tiny_splits(num_classes=8, counts=(24, 12, 8, 6, 5, 4, 3, 3))
  c = tiny_config(**{"loss.name": "ldam", "model.head": "normed_linear"})
  exp, state = experiment.setup(c, splits)
  source = exp.splits.test
  p = runner.predict(exp, state, source)
  images, labels = source.get_batch(np.arange(len(source)))
  from ltjax.train.steps import normalize

  variables = {"params": state.params, "batch_stats": state.batch_stats}
  x = normalize(images, c.dataset.mean, c.dataset.std)
  cosines, _ = exp.model.apply(variables, x, train=False)
  cosines = np.asarray(cosines, np.float64)
  assert np.abs(cosines).max() <= 1 + 1e-6
  scaled = from_logits(30.0 * cosines, labels)
  np.testing.assert_allclose(p["max_prob"], scaled["max_prob"], rtol=1e-4)
  np.testing.assert_allclose(p["nll"], scaled["nll"], rtol=1e-4, atol=1e-5)
  raw = from_logits(cosines, labels)
  assert raw["max_prob"].max() < 0.4 < p["max_prob"].max()  # Raw: near 1/8 everywhere.
  features = runner.run_over(exp, state, source, exp.feature_step, ("logits",))["logits"]
  np.testing.assert_allclose(features, 30.0 * cosines, rtol=1e-4, atol=1e-4)


def test_evaluation_memory_on_the_devices_does_not_grow_with_the_split():
  """The outputs of each batch leave the devices as they come: the arrays alive on the
  devices during an evaluation of 12 batches are those of one of 2 batches."""
  splits = tiny_splits(num_classes=4, counts=(96, 48, 24, 24))
  exp, state = experiment.setup(tiny_config(), splits)
  peaks = {}
  for n in (32, 192):
    seen = []
    step = exp.feature_step

    def measured(state, batch, step=step, seen=seen):
      out = step(state, batch)
      seen.append(sum(a.nbytes for a in jax.live_arrays()))
      return out

    from ltjax.data.sources import Subset

    source = Subset(exp.splits.train, np.arange(n))
    out = runner.run_over(exp, state, source, measured, ("features", "logits"))
    assert len(out["features"]) == n
    peaks[n] = max(seen)
  assert peaks[192] == peaks[32], peaks
