"""The production steps lower for GPUs and TPUs (``jax.export``), on 8 simulated devices:
no custom calls, none of the CPU-only kernels, the batch sharded on ``data`` and the state
replicated, and in bfloat16 every convolution bf16 while losses, centroids and metrics
stay float32.

Built by ``ltjax.train.experiment.abstract_setup`` (the steps ``ltjax train`` runs, from the
config alone: no data, no arrays), with the production backbones at a small batch and
64-px images (the attention of OLTR at 224 px, its reference 7x7 map).
"""

import os
import re

import jax
import pytest
from helpers import load_config

from ltjax.data.datasets import DataSpec
from ltjax.models import cpu_kernels
from ltjax.models.cpu_kernels import CPU_SCOPE
from ltjax.train import experiment

REPO = os.path.dirname(os.path.dirname(__file__))
PLATFORMS = ("cuda", "tpu")
#: Custom calls a GPU/TPU lowering may contain: none. (A new entry needs a reason: each is a
#: kernel outside XLA that one of the platforms may not have.)
ALLOWED_CUSTOM_CALLS: frozenset[str] = frozenset()

# (config, backbone it must hold, input side): every stage and the production backbones.
CASES = {
  "joint": ("imagenet_lt/joint_instance.py", "resnext50_32x4d", 64),
  "crt": ("places_lt/crt.py", "resnet152", 64),
  "lws": ("inat2018/lws.py", "resnet50", 64),
  "oltr": ("imagenet_lt/oltr_stage2.py", "resnet10", 224),
}


def abstract(stage, dtype="float32", devices=8):
  path, backbone, side = CASES[stage]
  config = load_config(os.path.join(REPO, "configs", path))
  assert config.stage == stage and config.model.backbone == backbone
  config.model.dtype = dtype
  config.num_devices = devices
  config.batch_size = config.eval.batch_size = 2 * devices
  config.data.crop_size = side
  spec = DataSpec(config.dataset.name == "inat2018" and 8142 or 1000, 1000, (side, side, 3))
  exp, state = experiment.abstract_setup(config, spec)
  return exp, state, experiment.abstract_batch(exp)


def exported_text(fn, *args, platforms=PLATFORMS):
  return jax.export.export(fn, platforms=platforms)(*args).mlir_module()


def main_args(text):
  """{argument location name: its sharding} of the exported main function (every sharded
  argument: a spec such as ``[{"data"}, {}, {}, {}]`` holds braces, so each argument is read
  on its own)."""
  signature = text[text.index("func.func public @main(") :].split("\n", 1)[0]
  out = {}
  for arg in signature.split("%arg")[1:]:
    spec = re.search(r"sdy.sharding<@mesh, (\[.*?\])>", arg)
    name = re.search(r'loc\("([^"]+)"\)', arg)
    if spec and name:
      out[name.group(1)] = spec.group(1)
  return out


def custom_calls(text):
  return set(re.findall(r"custom_call @([\w.$]+)", text))


@pytest.mark.parametrize("stage", sorted(CASES))
def test_train_step_lowers_for_gpu_and_tpu_sharded_without_cpu_kernels(stage):
  exp, state, batch = abstract(stage)
  assert exp.mesh.size == 8
  text = exported_text(exp.train_step, state, batch)
  assert custom_calls(text) <= ALLOWED_CUSTOM_CALLS, custom_calls(text)
  assert CPU_SCOPE not in text
  shardings = main_args(text)
  assert any(name.startswith("batch") for name in shardings), "no sharded batch found"
  for name, spec in shardings.items():
    if name.startswith("batch"):
      assert spec.startswith('[{"data"}'), (name, spec)  # Split on the batch axis.
    else:
      assert '"data"' not in spec, (name, spec)  # The state is replicated.
  if not exp.stage.frozen_backbone:  # Through the stem max pool: XLA's own gradient.
    assert "select_and_scatter" in text


def test_the_cpu_lowering_does_use_the_cpu_kernels():
  """The check above can fail: lowered for CPU, the same step carries the CPU-only code."""
  exp, state, batch = abstract("joint", devices=1)
  text = exported_text(exp.train_step, state, batch, platforms=("cpu",))
  assert CPU_SCOPE in text and "select_and_scatter" not in text
  with cpu_kernels.native_gradients():  # What scripts/memory_plan.py compiles on a CPU.
    exp, state, batch = abstract("joint", devices=1)
    text = exported_text(exp.train_step, state, batch, platforms=("cpu",))
  assert CPU_SCOPE not in text and "select_and_scatter" in text


@pytest.mark.parametrize("stage", ["joint", "oltr"])
def test_eval_and_feature_steps_lower_for_gpu_and_tpu(stage):
  exp, state, batch = abstract(stage)
  batch = {k: batch[k] for k in ("image", "label")}
  for step in (exp.eval_step, exp.feature_step):
    text = exported_text(step, state, batch)
    assert custom_calls(text) <= ALLOWED_CUSTOM_CALLS and CPU_SCOPE not in text


@pytest.mark.parametrize("stage", ["joint", "oltr"])
def test_bfloat16_convolutions_with_float32_state_losses_and_metrics(stage):
  exp, state, batch = abstract(stage, dtype="bfloat16")
  exported = jax.export.export(exp.train_step, platforms=PLATFORMS)(state, batch)
  text = exported.mlir_module()
  convolutions = re.findall(r"stablehlo.convolution\(.*: \((.*?)\) -> (tensor<[^>]*>)", text)
  assert len(convolutions) > 20
  for operands, result in convolutions:
    assert operands.count("xbf16>") == 2 and result.endswith("xbf16>"), (operands, result)
  dots = re.findall(r"stablehlo.dot_general.*?: \((.*?)\) -> ", text)
  assert any(o.count("xbf16>") == 2 for o in dots)  # The classifier runs in bf16 too.
  new_state, metrics = jax.tree.unflatten(exported.out_tree, exported.out_avals)
  for name, aval in metrics.items():  # loss, accuracy, grad_norm (ce, centroid_loss), finite
    assert aval.dtype == ("bool" if name == "finite" else "float32"), (name, aval)
  floats = [
    a for a in jax.tree.leaves(new_state) if jax.numpy.issubdtype(a.dtype, jax.numpy.floating)
  ]
  assert floats and all(a.dtype == "float32" for a in floats)  # Params, moments, centroids.
  if stage == "oltr":
    assert new_state.extra["centroids"].dtype == "float32"


def test_a_ldam_drw_step_with_mixup_and_cutmix_lowers_for_gpu_and_tpu():
  """The comparison set's step: the LDAM-DRW config (cosine classifier, class-weighted LDAM
  loss) with mixup and CutMix, its batch permuted across the 8 devices."""

  def lowered(mixup_alpha, cutmix_alpha):
    config = load_config(os.path.join(REPO, "configs", "cifar10_lt", "ldam_drw.py"))
    assert config.loss.name == "ldam" and config.model.backbone == "cifar_resnet32"
    config.data.mixup_alpha, config.data.cutmix_alpha = mixup_alpha, cutmix_alpha
    config.num_devices = 8
    config.batch_size = config.eval.batch_size = 16
    exp, state = experiment.abstract_setup(config, DataSpec(10, 1000, (32, 32, 3)))
    return exported_text(exp.train_step, state, experiment.abstract_batch(exp))

  text = lowered(0.2, 1.0)
  assert custom_calls(text) <= ALLOWED_CUSTOM_CALLS, custom_calls(text)
  assert CPU_SCOPE not in text
  for name, spec in main_args(text).items():
    if name.startswith("batch"):
      assert spec.startswith('[{"data"}'), (name, spec)
    else:
      assert '"data"' not in spec, (name, spec)
  # The permutation (a sort of random keys) is there only with mixing.
  assert "stablehlo.sort" in text and "stablehlo.sort" not in lowered(0.0, 0.0)


def lowered_vit_step(config, backbone):
  """The exported train step of ``config`` on ``backbone`` at 32 px over 8 devices, checked
  as every production step: no custom calls or CPU kernels, the batch split on ``data``,
  the state replicated, bf16 compute. Returns ``(exp, state)``."""
  config.model.backbone, config.model.dtype = backbone, "bfloat16"
  config.num_devices, config.batch_size = 8, 16
  config.data.crop_size = 32
  exp, state = experiment.abstract_setup(config, DataSpec(1000, 1000, (32, 32, 3)))
  text = exported_text(exp.train_step, state, experiment.abstract_batch(exp))
  assert custom_calls(text) <= ALLOWED_CUSTOM_CALLS, custom_calls(text)
  assert CPU_SCOPE not in text
  shardings = main_args(text)
  batch = [spec for name, spec in shardings.items() if name.startswith("batch")]
  assert batch and all(spec.startswith('[{"data"}') for spec in batch)  # Split.
  assert not any('"data"' in spec for name, spec in shardings.items() if name.startswith("state"))
  assert "bf16" in text
  assert all(x.dtype == "float32" for x in jax.tree.leaves(state.params))
  return exp, state


@pytest.mark.parametrize("backbone", ["clip_vit_tiny", "vit_tiny"])
def test_a_vit_train_step_lowers_for_gpu_and_tpu_sharded(backbone):
  """The Vision Transformers (ltjax.models.vit) lower as the ResNets do: no custom calls,
  the batch split on ``data``, bf16 compute with a float32 state."""
  config = load_config(os.path.join(REPO, "configs", "imagenet_lt", "crt.py"))
  config.stage = "joint"
  lowered_vit_step(config, backbone)


def test_lifts_step_lowers_for_gpu_and_tpu_sharded_with_state_only_for_what_trains():
  """LIFT's recipe (imagenet_lt/lift.py: AdaptFormer on a CLIP tower, logit-adjusted loss,
  cosine head, bf16) on a tiny tower: the step lowers as every other, and the optimizer
  state holds the adapter and the head only."""
  config = load_config(os.path.join(REPO, "configs", "imagenet_lt", "lift.py"))
  config.model.text_features = "text.npz"  # Read when a run starts, not to lower its step.
  exp, state = lowered_vit_step(config, "clip_vit_tiny")
  assert config.model.peft == "adaptformer"
  moments = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim)
  assert moments == exp.parameters["trained"] < exp.parameters["total"]
