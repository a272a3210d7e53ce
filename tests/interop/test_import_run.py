"""An imported reference checkpoint is a finished ltjax run: restore, evaluate, later stages."""

import json
import os

import jax
import numpy as np
import pytest
from helpers import load_config, run_ltjax, tiny_config, tiny_splits

from ltjax import config as config_lib
from ltjax import sharding
from ltjax.data.datasets import build_splits
from ltjax.evaluate import posthoc, runner
from ltjax.interop.torch_import import import_checkpoint
from ltjax.train import experiment, loop, restore
from ltjax.train import init_from as init_lib
from ltjax.train.steps import normalize

torch = pytest.importorskip("torch")
import torch_reference as ref  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
DIGITS = os.path.join(REPO, "configs", "digits", "joint.py")
TOL = 1e-4
NUM_CLASSES = 4  # tiny_splits


def rgb_config(**overrides):
  return tiny_config(
    **{
      "model.backbone": "resnet10",
      "dataset.mean": config_lib.IMAGENET_MEAN,
      "dataset.std": config_lib.IMAGENET_STD,
      **overrides,
    }
  )


def normalized(source, config):
  images = np.asarray(source.get_batch(np.arange(len(source)))[0], np.float32)
  return np.asarray(normalize(images, config.dataset.mean, config.dataset.std))


def random_reference(feat, clf, calibration_images, seed):
  calibration = torch.from_numpy(np.array(calibration_images.transpose(0, 3, 1, 2)))
  ref.randomize_(feat, seed, calibration)
  ref.randomize_(clf, seed + 1)
  return feat, clf


def assert_logits_match_torch(exp, state, source, feat, clf, centroids=None):
  got = posthoc.extract(exp, state, source)["logits"]
  want = ref.reference_logits(feat, clf, normalized(source, exp.config), centroids)
  np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
  assert np.abs(want).max() > 0.1


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
  """A reference ResNet-10 + dot-product checkpoint imported as a joint run (32-px RGB)."""
  tmp = tmp_path_factory.mktemp("joint_import")
  splits = tiny_splits(size=32, channels=3)
  config = rgb_config()
  feat, clf = random_reference(
    ref.resnet10(), ref.DotProductClassifier(512, NUM_CLASSES), normalized(splits.train, config), 0
  )
  path = str(tmp / "final_model_checkpoint.pth")
  ref.save_reference_checkpoint(path, feat, clf)
  workdir = str(tmp / "joint")
  summary = import_checkpoint(path, config, workdir, splits=splits)
  return dict(
    splits=splits, config=config, feat=feat, clf=clf, workdir=workdir, summary=summary, path=path
  )


def test_imported_joint_run_restores_with_the_reference_logits(joint_run):
  r = joint_run
  exp, state = restore.restore_trained(r["config"], r["workdir"], r["splits"])
  assert int(jax.device_get(state.step)) == exp.total_steps == r["summary"]["step"]
  assert r["summary"]["tensors"] == 12 + 12 * 4 + 2  # convs, BatchNorms, fc weight and bias
  assert r["summary"]["reference"] == {"epoch": 30, "best_epoch": 27, "best_acc": 0.4321}
  assert_logits_match_torch(exp, state, r["splits"].test, r["feat"], r["clf"])
  _, _, meta = init_lib.load_variables(r["workdir"])
  assert meta["stage"] == "joint" and meta["train_counts"] == [24, 12, 6, 3]
  assert meta["imported_from"]["path"] == os.path.abspath(r["path"])


def test_imported_joint_run_is_finished_and_evaluates_with_posthoc(joint_run):
  r = joint_run
  params_before, _, _ = init_lib.load_variables(r["workdir"])
  # ltjax train on the work directory resumes at the last step: no training, only evaluation.
  loop.train_and_evaluate(r["config"], r["workdir"], splits=r["splits"])
  params_after, _, _ = init_lib.load_variables(r["workdir"])
  jax.tree.map(np.testing.assert_array_equal, params_before, params_after)
  exp, state = restore.restore_trained(r["config"], r["workdir"], r["splits"])
  features_dir = os.path.join(r["workdir"], "features")
  posthoc.evaluate_all(exp, state, r["workdir"], features_dir)
  with open(os.path.join(r["workdir"], "results.json")) as f:
    assert set(json.load(f)) == {"joint", "ncm", "tau_norm", "logit_adjustment"}


def test_crt_starts_from_the_imported_run(joint_run, tmp_path):
  r = joint_run
  crt = rgb_config(
    stage="crt", method="crt", init_from=r["workdir"], **{"sampler.name": "class_aware"}
  )
  imported, imported_stats, _ = init_lib.load_variables(r["workdir"])
  loop.train_and_evaluate(crt, str(tmp_path / "crt"), splits=r["splits"])
  params, stats, meta = init_lib.load_variables(str(tmp_path / "crt"))
  assert meta["stage"] == "crt"
  # The frozen backbone is exactly the imported one; the classifier was retrained.
  jax.tree.map(np.testing.assert_array_equal, imported["backbone"], params["backbone"])
  jax.tree.map(np.testing.assert_array_equal, imported_stats["backbone"], stats["backbone"])
  assert not np.array_equal(imported["head"]["fc"]["kernel"], params["head"]["fc"]["kernel"])


def test_importing_into_a_run_with_checkpoints_is_refused(joint_run):
  r = joint_run
  with pytest.raises(ValueError, match="already holds checkpoints; import into a new work"):
    import_checkpoint(r["path"], r["config"], r["workdir"], splits=r["splits"])


def test_a_mismatched_config_writes_nothing(joint_run, tmp_path):
  r = joint_run
  config = rgb_config(**{"model.head": "lws"})
  with pytest.raises(ValueError, match="has no LWS scales"):
    import_checkpoint(r["path"], config, str(tmp_path / "w"), splits=r["splits"])
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_oltr_stage_one_then_stage_two(tmp_path):
  """Both reference OLTR checkpoints imported; stage 2 evaluates with the reference logits.

  64-px images give a 2x2 map (the reference layer hard-codes 7x7, i.e. 224 px).
  """
  splits = tiny_splits(size=64, channels=3)
  stage1 = rgb_config()
  train_images = normalized(splits.train, stage1)
  feat1, clf1 = random_reference(
    ref.resnet10(), ref.DotProductClassifier(512, NUM_CLASSES), train_images, 0
  )
  path1 = str(tmp_path / "stage1.pth")
  ref.save_reference_checkpoint(path1, feat1, clf1)  # OLTR stage 1: centroids None.
  import_checkpoint(path1, stage1, str(tmp_path / "stage1"), splits=splits)

  feat2, clf2 = random_reference(
    ref.resnet10(use_modulatedatt=True, spatial=2),
    ref.MetaEmbeddingClassifier(512, NUM_CLASSES),
    train_images,
    2,
  )
  centroids = ref.centroids_near(feat2, train_images, NUM_CLASSES, seed=4)
  path2 = str(tmp_path / "stage2.pth")
  ref.save_reference_checkpoint(path2, feat2, clf2, centroids)
  stage2 = rgb_config(
    stage="oltr",
    method="oltr",
    init_from=str(tmp_path / "stage1"),
    **{"model.head": "meta_embedding", "oltr.use_attention": True},
  )
  summary = import_checkpoint(path2, stage2, str(tmp_path / "stage2"), splits=splits)
  assert summary["centroids"]

  exp, state = restore.restore_trained(stage2, str(tmp_path / "stage2"), splits)
  np.testing.assert_array_equal(jax.device_get(state.extra["centroids"]), centroids.numpy())
  assert_logits_match_torch(exp, state, splits.test, feat2, clf2, centroids)
  assert set(runner.evaluate_and_write(exp, state, str(tmp_path / "stage2"))) >= {"many", "all"}


def test_current_reference_stage_one_continues_to_stage_two_with_a_fresh_use_fc(tmp_path):
  """The newest OLTR ImageNet-LT stage 1 has no use_fc layer; its stage 2 (use_fc 512)
  starts that layer fresh. An imported stage-1 checkpoint without it trains stage 2."""
  splits = tiny_splits(size=64, channels=3)
  stage1 = rgb_config()
  feat1, clf1 = random_reference(
    ref.resnet10(), ref.DotProductClassifier(512, NUM_CLASSES), normalized(splits.train, stage1), 0
  )
  path1 = str(tmp_path / "stage1.pth")
  ref.save_reference_checkpoint(path1, feat1, clf1)
  import_checkpoint(path1, stage1, str(tmp_path / "stage1"), splits=splits)
  stage2 = rgb_config(
    stage="oltr",
    method="oltr",
    init_from=str(tmp_path / "stage1"),
    **{"model.head": "meta_embedding", "oltr.use_attention": True, "oltr.fc_add": 512},
  )
  exp, fresh = experiment.setup(stage2, splits)
  started = exp.stage.start(exp, fresh)
  params1, _, _ = init_lib.load_variables(str(tmp_path / "stage1"))
  np.testing.assert_array_equal(  # The fc_add layer is the fresh one...
    jax.device_get(started.params["neck"]["fc_add"]["kernel"]),
    jax.device_get(fresh.params["neck"]["fc_add"]["kernel"]),
  )
  np.testing.assert_array_equal(  # ... the hallucinator the stage-1 classifier.
    jax.device_get(started.params["head"]["hallucinator"]["kernel"]),
    params1["head"]["fc"]["kernel"],
  )
  # Stage 2 trains from it (a step: the loop over an imported run is test_crt_starts_...).
  batch = experiment.make_stream(exp)(0)
  _, metrics = exp.train_step(started, sharding.to_global(batch, sharding.batch_sharding(exp.mesh)))
  assert np.isfinite(float(metrics["loss"])) and float(metrics["centroid_loss"]) > 0


@pytest.mark.slow  # CI's 20 minutes: README's slow-set table names it.
def test_import_torch_command_line(tmp_path):
  """`ltjax import-torch` on the digits config with a grey-image ResNet-10."""
  config = load_config(DIGITS)
  config.model.backbone, config.model.width = "resnet10", 1
  splits = build_splits(config.dataset, config.seed, config.data)
  feat, clf = random_reference(
    ref.resnet10(in_channels=1),
    ref.DotProductClassifier(512, splits.num_classes),
    normalized(splits.train, config)[:64],
    0,
  )
  ref.save_reference_checkpoint(str(tmp_path / "final.pth"), feat, clf)
  overrides = ["--config.model.backbone=resnet10", "--config.model.width=1"]

  result = run_ltjax(
    "import-torch", "final.pth", f"--config={DIGITS}", "--workdir=run", *overrides, cwd=tmp_path
  )
  assert result.returncode == 0, result.stderr
  assert "imported final.pth: 62 tensors" in result.stdout
  exp, state = restore.restore_trained(config, str(tmp_path / "run"), splits)
  assert_logits_match_torch(exp, state, splits.test, feat, clf)

  missing = run_ltjax(
    "import-torch", "missing.pth", f"--config={DIGITS}", "--workdir=w", *overrides, cwd=tmp_path
  )
  assert missing.returncode == 1
  assert "ltjax: error: no checkpoint file 'missing.pth'" in missing.stderr
  assert "Traceback" not in missing.stderr
  usage = run_ltjax("import-torch", f"--config={DIGITS}", "--workdir=w", cwd=tmp_path)
  assert usage.returncode == 2
  assert "import-torch takes one checkpoint file, got none" in usage.stderr
