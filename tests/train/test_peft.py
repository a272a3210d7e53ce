"""Parameter-efficient fine-tuning (``model.peft``): what each method trains, that the rest
gets neither gradient nor optimizer state, and checkpoints that leave the frozen weights in
``model.pretrained`` (``ltjax.train.frozen``)."""

import os
import re

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import augreg_npz, flat_state, tiny_config, tiny_splits

from ltjax.models import backbones, peft
from ltjax.train import experiment, loop, optim, restore

#: What LIFT's ``ViT_Tuner`` (peft_vit.py) trains of a block, by method, in ltjax's names
#: (the head always trains; nothing outside the blocks but VPT's prompts).
TRAINED = {
  "full": r"resblocks_\d/(ln_[12]|attn/(in|out)_proj|c_fc|c_proj)/(kernel|scale|bias)",
  "linear": r"(?!)",
  "adaptformer": r"resblocks_\d/adaptformer/(ln/(scale|bias)|(down|up)_proj/(kernel|bias)|scale)$",
  "adapter": r"resblocks_\d/adapter/(ln/(scale|bias)|(down|up)_proj/(kernel|bias))$",
  "lora": r"resblocks_\d/attn/lora_[qv]/lora_[AB]$",
  "bitfit": r"resblocks_\d/(ln_[12]|attn/(in|out)_proj|c_fc|c_proj)/bias$",
  "ln": r"resblocks_\d/ln_[12]/(scale|bias)$",
  "ssf": r"resblocks_\d/(attn/ssf_attn_(in|out)|ssf_ln_[12]|ssf_mlp_(in|out))/(scale|shift)$",
  "vpt_shallow": r"vpt_0$",
  "vpt_deep": r"vpt_[01]$",
}


def vit_config(**overrides):
  return tiny_config(**{"model.backbone": "vit_tiny", "model.head": "cosine", **overrides})


def splits():
  return tiny_splits(size=16, channels=3)


@pytest.mark.parametrize("method", sorted(TRAINED))
def test_each_method_trains_what_lifts_tuner_trains_and_nothing_else(method):
  exp, state = experiment.setup(vit_config(**{"model.peft": method}), splits())
  before = flat_state(state)
  batch = {"image": np.asarray(splits().train.images[:16]), "label": splits().train.labels[:16]}
  for _ in range(2):  # Two steps: what starts at zero (an up-projection) unblocks the rest.
    state, metrics = exp.train_step(state, batch)
  assert bool(metrics["finite"])
  after = flat_state(state)
  backbone = {k.removeprefix("params/backbone/") for k in before if k.startswith("params/backbone")}
  want = {k for k in backbone if re.fullmatch(TRAINED[method], k)}
  if method != "linear":
    assert want, method
  changed = {
    k.removeprefix("params/backbone/")
    for k in before
    if k.startswith("params/backbone") and not np.array_equal(before[k], after[k])
  }
  assert changed <= want, sorted(changed - want)  # Nothing frozen moved.
  # No optimizer state for what is frozen: SGD's momentum holds the trained leaves only.
  moments = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim)  # Not the counts.
  assert moments == exp.parameters["trained"]
  head = sum(v.size for k, v in before.items() if k.startswith("params/head"))
  assert exp.parameters["trained"] == head + sum(before[f"params/backbone/{k}"].size for k in want)


def test_the_default_trains_everything_and_methods_refuse_others_options():
  assert backbones.from_config({"backbone": "vit_tiny"}).frozen_patterns() == ()
  with pytest.raises(ValueError, match=r"model.vpt_len=5 is an option of model.peft='vpt_shallow'"):
    backbones.from_config({"backbone": "vit_tiny", "peft": "lora", "vpt_len": 5})
  with pytest.raises(ValueError, match=r"'loraa': unknown fine-tuning method; valid: '', 'full'"):
    backbones.from_config({"backbone": "vit_tiny", "peft": "loraa"})
  with pytest.raises(
    ValueError,
    match=r"peft='lora' is an option of the clip_vit, openclip_vit, vit backbones \(param",
  ):
    backbones.from_config({"backbone": "resnet10", "peft": "lora"})


def test_lifts_adapter_width_rule():
  # peft_vit.py: 2 ** max(0, int(log2(num_classes / (n_layers * 2)))).
  assert peft.adapter_dim_rule(1000, 12) == 32  # ImageNet-LT on a ViT-B.
  assert peft.adapter_dim_rule(365, 12) == 8  # Places-LT.
  assert peft.adapter_dim_rule(8142, 12) == 256  # iNaturalist 2018.
  assert peft.adapter_dim_rule(100, 12) == 4  # CIFAR-100-LT.
  assert peft.adapter_dim_rule(4, 2) == 1
  backbone = backbones.from_config({"backbone": "vit_tiny", "peft": "adaptformer"})
  assert backbone.for_classes(100).adapter_dim == 16  # 100 / (2 x 2 blocks) = 25 -> 16.
  fixed = backbones.from_config({"backbone": "vit_tiny", "peft": "lora", "adapter_dim": 3})
  assert fixed.for_classes(100).adapter_dim == 3
  # A backbone given to build_model by name gets the rule too (one path with the registry's).
  from ltjax import models

  model = models.build_model("vit_tiny", "linear", 100, peft="adaptformer")
  assert model.backbone.tuning.adapter_dim == 16


def test_the_step_takes_no_gradient_of_frozen_leaves_and_equals_the_full_gradient_step():
  """The same step computed with the gradient of every leaf (frozen ones zeroed by the
  optimizer) gives the same state: the partial gradient changes no number."""
  config = vit_config(**{"model.peft": "adaptformer"})
  exp, state = experiment.setup(config, splits())
  batch = {"image": np.asarray(splits().train.images[:16]), "label": splits().train.labels[:16]}
  full_step = jax.jit(experiment.train_step_fn(exp))
  a, ma = exp.train_step(jax.tree.map(np.asarray, state), batch)
  b, mb = full_step(state, batch)
  fa, fb = flat_state(a), flat_state(b)
  for k in fa:
    np.testing.assert_allclose(fa[k], fb[k], rtol=1e-6, atol=1e-7, err_msg=k)
  # The logged gradient norm is that of what trains (the full step's counts frozen leaves).
  assert 0 < float(ma["grad_norm"]) < float(mb["grad_norm"])
  # And the partial step's program has no gradient of a frozen kernel: its jaxpr is smaller.
  frozen = optim.frozen_mask(exp.backbone.frozen_patterns())
  partial = experiment.train_step_fn(exp, frozen)
  n_partial = len(str(jax.make_jaxpr(partial)(state, batch)))
  n_full = len(str(jax.make_jaxpr(full_step)(state, batch)))
  assert n_partial < n_full


def stored_params(directory):
  step = max(int(s) for s in os.listdir(directory) if s.isdigit())
  meta = ocp.StandardCheckpointer().metadata(os.path.join(directory, str(step), "state"))
  meta = getattr(meta, "item_metadata", meta)
  tree = meta.tree if hasattr(meta, "tree") else meta
  return {optim.param_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree["params"])}


def test_checkpoints_keep_what_trains_and_read_the_rest_from_the_weight_file(tmp_path):
  path, _ = augreg_npz(tmp_path / "vit.npz")
  half = (0.5, 0.5, 0.5)  # The AugReg inputs: no warning about the normalisation.
  config = vit_config(
    **{"model.peft": "adaptformer", "model.pretrained": path, "num_epochs": 2}
    | {"dataset.mean": half, "dataset.std": half}
  )
  workdir = str(tmp_path / "run")
  exp, state = experiment.setup(config, splits())
  trained = flat_state(loop.train(exp, state, workdir))
  stored = stored_params(os.path.join(workdir, "checkpoints"))
  assert stored and all(re.match(r"(head|backbone/resblocks_\d/adaptformer)/", k) for k in stored)
  # Restoring reads the frozen weights back from the file: the state as it was trained.
  exp, state = restore.restore_trained(config, workdir, splits())
  restored = flat_state(state)
  assert restored.keys() == trained.keys()
  for k, v in trained.items():
    np.testing.assert_array_equal(restored[k], v, err_msg=k)
  _, selected = restore.tested_model(exp, state, workdir)
  assert selected["trained_parameters"] == exp.parameters["trained"] < exp.parameters["total"] / 5
  # Another file in its place is refused, naming the digest it needs; so is a missing one.
  augreg_npz(tmp_path / "vit.npz", seed=1)
  with pytest.raises(ValueError, match=r"must come from the file it trained with .*sha256"):
    restore.restore_trained(config, workdir, splits())
  os.remove(path)
  with pytest.raises(ValueError, match=r"does not exist: put the file back"):
    restore.restore_trained(config, workdir, splits())


def test_crt_on_a_peft_run_reads_its_tower_through_the_checkpoints_reference(tmp_path, caplog):
  """Decoupling on top of LIFT: cRT loads the run's adapters from its (slim) checkpoint and
  the frozen tower from the file the checkpoint names, and the log says which file and why;
  a cRT built without the run's adapters is refused, naming the flag."""
  path, _ = augreg_npz(tmp_path / "vit.npz")
  lift = vit_config(**{"model.peft": "adaptformer", "model.pretrained": path})
  exp, state = experiment.setup(lift, splits())
  trained = flat_state(loop.train(exp, state, str(tmp_path / "lift")))
  crt = vit_config(
    **{"stage": "crt", "init_from": str(tmp_path / "lift"), "model.peft": "adaptformer"}
  )
  exp, state = experiment.setup(crt, splits())
  with caplog.at_level("INFO", logger="ltjax.train.stages.starts"):
    started = flat_state(exp.stage.start(exp, state))
  lift_dir = str(tmp_path / "lift")
  assert f"backbone loaded from {path} (the weight file of init_from={lift_dir})" in caplog.text
  for k, v in trained.items():
    if k.startswith("params/backbone"):  # Adapters trained, the tower as the file holds it.
      np.testing.assert_array_equal(started[k], v, err_msg=k)
  exp, state = experiment.setup(
    vit_config(**{"stage": "crt", "init_from": str(tmp_path / "lift")}), splits()
  )
  with pytest.raises(
    ValueError, match=r"other modules or features .* --config.model.peft='adaptformer'"
  ):
    exp.stage.start(exp, state)


def test_lws_on_a_cosine_head_rescales_it_and_a_linear_lws_is_refused(tmp_path):
  lift = vit_config(**{"model.peft": "adaptformer", "num_epochs": 1})
  exp, state = experiment.setup(lift, splits())
  trained = flat_state(loop.train(exp, state, str(tmp_path / "lift")))
  lws = {"stage": "lws", "init_from": str(tmp_path / "lift"), "model.peft": "adaptformer"}
  exp, state = experiment.setup(vit_config(**lws, **{"model.head": "lws_cosine"}), splits())
  started = exp.stage.start(exp, state)
  np.testing.assert_array_equal(
    flat_state(started)["params/head/fc/kernel"], trained["params/head/fc/kernel"]
  )
  # Scales at one: the LWS head gives the cosine head's logits.
  images = np.asarray(splits().test.images[:4])
  want = experiment.steps.normalize(images, lift.dataset.mean, lift.dataset.std)
  got, _ = exp.model.apply({"params": started.params}, want, train=False)
  exp1, _ = experiment.setup(lift, splits())
  ref, _ = exp1.model.apply(
    {
      "params": {k: v for k, v in started.params.items()}
      | {"head": {"fc": started.params["head"]["fc"]}}
    },
    want,
    train=False,
  )
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  exp, state = experiment.setup(vit_config(**lws, **{"model.head": "lws"}), splits())
  with pytest.raises(
    ValueError,
    match=r"has a cosine classifier: LWS re-scales it with --config.model.head=lws_cosine",
  ):
    exp.stage.start(exp, state)


def test_class_mean_head_init_is_lifts_normalised_class_means():
  from ltjax.evaluate import posthoc

  config = vit_config(**{"model.peft": "adaptformer", "model.head_init": "class_mean"})
  exp, state = experiment.setup(config, splits())
  started = exp.stage.start(exp, state)
  train = posthoc.extract(exp, state, splits().train)
  means = np.stack([train["features"][train["labels"] == k].mean(0) for k in range(4)])
  want = (means / np.linalg.norm(means, axis=1, keepdims=True)).T
  np.testing.assert_allclose(np.asarray(started.params["head"]["fc"]["kernel"]), want, atol=1e-6)
  with pytest.raises(ValueError, match=r"head_init='class_means'; valid: '', 'text_features'"):
    experiment.setup(vit_config(**{"model.head_init": "class_means"}), splits())


def test_a_slim_run_resumes_exactly(tmp_path):
  """Stopped after one epoch and resumed to two, a run whose checkpoints leave the tower in
  its weight file ends where the same run without a stop ends."""
  path, _ = augreg_npz(tmp_path / "vit.npz")
  half = (0.5, 0.5, 0.5)
  base = {"model.peft": "lora", "model.pretrained": path, "dataset.mean": half}
  base |= {"dataset.std": half, "optim.schedule": "constant", "optim.lr": 0.05}
  straight = vit_config(**base, num_epochs=2)
  exp, state = experiment.setup(straight, splits())
  want = flat_state(loop.train(exp, state, str(tmp_path / "straight")))
  exp, state = experiment.setup(vit_config(**base, num_epochs=1), splits())
  loop.train(exp, state, str(tmp_path / "resumed"))
  exp, state = experiment.setup(straight, splits())
  got = flat_state(loop.train(exp, state, str(tmp_path / "resumed"), allow_config_change=True))
  for k, v in want.items():
    np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_a_slim_run_with_a_damaged_newest_step_restores_the_one_before(tmp_path):
  """The newest checkpoint's metadata is what says the checkpoints are slim; when it is
  the damaged part, the run's own reference stands in and the step before restores."""
  path, _ = augreg_npz(tmp_path / "vit.npz")
  half = (0.5, 0.5, 0.5)
  config = vit_config(
    **{"model.peft": "bitfit", "model.pretrained": path, "num_epochs": 2}
    | {"dataset.mean": half, "dataset.std": half}
  )
  workdir = str(tmp_path / "run")
  exp, state = experiment.setup(config, splits())
  loop.train(exp, state, workdir)
  steps_saved = sorted(
    int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()
  )
  newest = os.path.join(workdir, "checkpoints", str(steps_saved[-1]), "meta", "metadata")
  with open(newest, "w") as f:
    f.write("{not json")
  _, restored = restore.restore_trained(config, workdir, splits())
  assert int(restored.step) == steps_saved[-2]


def test_the_step_never_reads_a_frozen_weight_back_for_its_finiteness_check():
  """The frozen tower is what the step started from: its weights are not checked for
  non-finite values again at every step (LIFT's ViT-B/16: 0.5 GB read per step less)."""
  exp, state = experiment.setup(vit_config(**{"model.peft": "adaptformer"}), splits())
  batch = {"image": np.asarray(splits().train.images[:16]), "label": splits().train.labels[:16]}
  text = exp.train_step.lower(state, batch).compile().as_text()
  # c_fc's kernel (32, 64) is frozen, and nothing that trains has its shape.
  assert re.search(r"f32\[32,64\]", text)
  assert not [line for line in text.splitlines() if "is-finite" in line and "f32[32,64]" in line]


def test_only_a_head_only_run_keeps_clips_tower_for_the_zero_shot_row():
  from ltjax.train import stages

  joint = stages.get_stage("joint")()
  for method, keeps in (("linear", True), ("adaptformer", False), ("", False)):
    config = vit_config(**{"model.peft": method, "model.pretrained": "clip.pt"})
    assert joint.keeps_pretrained_backbone(config) == keeps, method
  assert not joint.keeps_pretrained_backbone(vit_config(**{"model.peft": "linear"}))
