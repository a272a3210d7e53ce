"""ltjax's parameter-efficient ViTs (``model.peft``) against LIFT's definitions (Shi et al.,
ICML 2024; github.com/shijxcs/LIFT), restated in PyTorch in ``lift_reference.py``.

* Every method's forward, on the CLIP layout (``clip_vit_tiny``, the class token before the
  projection: where LIFT's heads sit) and the AugReg layout (``vit_tiny``), with every
  tensor of the module ltjax builds drawn at random (the adapters' ``up_proj`` and
  ``lora_B``, which both start at zero, biases, LayerNorms, AdaptFormer's scale, SSF's
  scales and shifts, the prompts), so that no branch is trivially zero or the identity, and
  the same tensors converted into the restatement (``lift_reference.load_ltjax``: every
  tensor on both sides accounted for).
* The modules' initialisation: ltjax's constant tensors equal LIFT's, its random ones drawn
  from LIFT's distributions.
* LIFT's recipe trained for a few steps by ltjax's own train step (``experiment.setup``):
  AdaptFormer (the other methods in the slow set), the cosine head at scale 25, the
  logit-adjusted loss (tau 1, the training class counts), SGD lr 0.01, momentum 0.9, weight
  decay 5e-4 over the tuner and the head, against LIFT's loop from the same weights on the
  same batches: what trains is what LIFT's ``ViT_Tuner`` holds (and the head), every trained
  tensor and the loss after every step match, the frozen ones do not move a bit.

The ground truth is the restatement in float64; ltjax computes in float32 (its LayerNorm and
parameters are float32 whatever the flags), so, as ``test_reference_trajectory.py`` does,
each comparison measures the float32 noise floor (the restatement in float32, its distance
from float64) and requires ltjax's distance from float64 to stay within FLOOR_FACTOR times
it. Measured on the development machine: the forwards at most 1.3x the floor (relative
error <= 2.5e-7, largest absolute 9e-7), the trajectories at most 3.1x (relative <= 1e-6);
a misplaced or mis-scaled module is 10^5 to 10^7 times the floor in the forward, 10^4 to
10^7 in the trajectory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from helpers import flat_state, tiny_config, tiny_splits

from ltjax import sharding
from ltjax.models import backbones, peft, vit
from ltjax.models.backbones import CLIP_NORMALIZATION
from ltjax.models.vit import VIT_CONFIGS, VisionTransformer
from ltjax.train import experiment, optim, steps

torch = pytest.importorskip("torch")
import lift_reference as lift  # noqa: E402

# ltjax's distance from float64 may be this many times the PyTorch float32 run's.
FLOOR_FACTOR = 8.0
SIZE, GRID = 16, 4  # 16-px inputs: 4 x 4 patches of the tiny towers' 4 px.
NUM_CLASSES = 4
ADAPTER_DIM = 4  # > 1, so that LoRA's 1 / r is not 1.
VPT_LEN = 3
MODULE_METHODS = ("adaptformer", "adapter", "lora", "ssf", "vpt_shallow", "vpt_deep")
#: The methods that add no module: what trains differs, the forward is the plain tower's.
PLAIN_METHODS = ("", "full", "linear", "bitfit", "ln")
LAYOUTS = ("clip_vit_tiny", "vit_tiny")


def _options(method: str) -> dict:
  options = {"peft": method}
  if method in ("adaptformer", "adapter", "lora"):
    options["adapter_dim"] = ADAPTER_DIM
  if method.startswith("vpt"):
    options["vpt_len"] = VPT_LEN
  return options


def _ltjax_tower(name: str, method: str):
  """The backbone module ltjax builds for ``model.backbone=name, model.peft=method`` (the
  CLIP tower without its projection, as LIFT's heads read it)."""
  model = {"backbone": name, **_options(method)}
  if VIT_CONFIGS[name]["layout"] == "clip":
    model["clip_projection"] = False
  return backbones.from_config(model).for_classes(NUM_CLASSES).module(jnp.float32)


def _randomized(flat: dict, seed: int, everything: bool = False) -> dict:
  """``flat`` (path -> array) with random values: every tensor (``everything``), else the
  constant ones (zeros, ones: biases, LayerNorms, the adapters' ``up_proj``, ``lora_B``,
  AdaptFormer's scale). A LayerNorm's, SSF's or AdaptFormer's ``scale`` uniform in
  [0.5, 1.5], a kernel normal with variance 1 / fan-in, the rest normal(0, 0.3)."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, value in flat.items():
    value = np.asarray(value, np.float32)
    if everything or np.all(value == value.flat[0]):
      if key.endswith("/scale"):
        value = rng.uniform(0.5, 1.5, value.shape)
      elif key.endswith("/kernel") and value.ndim == 2:
        value = rng.normal(0.0, value.shape[0] ** -0.5, value.shape)
      else:
        value = rng.normal(0.0, 0.3, value.shape)
    out[key] = value.astype(np.float32)
  return out


def _torch_features(name: str, method: str, flat: dict, x: np.ndarray, dtype, tuned=True):
  """LIFT's ``Peft_ViT`` features (ln_post of the class token) of the weights ``flat``
  (ltjax's paths below ``backbone/``), in ``dtype``; ``tuned=False``: without the tuner."""
  tower = lift.tower(VIT_CONFIGS[name], GRID).to(dtype)
  tuner = lift.ViTTuner(method, tower, NUM_CLASSES, ADAPTER_DIM, VPT_LEN).to(dtype)
  lift.load_ltjax(
    lift.named_tensors(tower, tuner, None), {f"backbone/{k}": v for k, v in flat.items()}
  )
  with torch.no_grad():
    out = lift.PeftViT(tower)(
      torch.from_numpy(x.transpose(0, 3, 1, 2)).to(dtype), tuner if tuned else None
    )
  return out.double().numpy()


def _floor(f32: np.ndarray, f64: np.ndarray) -> float:
  """The float32 noise floor of a tensor: the float32 restatement's distance from float64
  (at least float32's rounding of its size)."""
  return max(np.linalg.norm(f32 - f64), 1e-7 * np.linalg.norm(f64) + 1e-12)


def _forward_check(name: str, method: str, seed: int = 0):
  module = _ltjax_tower(name, method)
  x = np.random.default_rng(seed + 100).normal(size=(3, SIZE, SIZE, 3)).astype(np.float32)
  # Every tensor drawn here, for the shapes ltjax's module declares (no initialiser compiled;
  # ltjax's initialisation: test_the_modules_start_as_lifts and the trajectory's start).
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.asarray(x))["params"]
  zeros = {
    k: np.zeros(v.shape, np.float32) for k, v in traverse_util.flatten_dict(shapes, sep="/").items()
  }
  flat = _randomized(zeros, seed, everything=True)
  tree = traverse_util.unflatten_dict(flat, sep="/")
  ours = np.asarray(module.apply({"params": tree}, jnp.asarray(x))["features"], np.float64)
  f64 = _torch_features(name, method, flat, x, torch.float64)
  f32 = _torch_features(name, method, flat, x, torch.float32)
  error, floor = np.linalg.norm(ours - f64), _floor(f32, f64)
  scale = np.linalg.norm(f64)
  worst = np.abs(ours - f64).max()
  print(
    f"{name} {method or 'plain'}: ltjax {error / scale:.2g} of the features from float64, "
    f"float32 floor {floor / scale:.2g} (x{error / floor:.2f}); max abs {worst:.2g}"
  )
  assert error <= FLOOR_FACTOR * floor, (name, method, error, floor)
  return flat, x, f64


@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("method", MODULE_METHODS)
def test_each_methods_forward_is_lifts(name, method):
  flat, x, f64 = _forward_check(name, method)
  # The modules change the features: the comparison is not of the plain tower twice.
  plain = _torch_features(name, method, flat, x, torch.float64, tuned=False)
  share = np.linalg.norm(f64 - plain) / np.linalg.norm(f64)
  print(f"{name} {method}: the modules move the features by {share:.2g} of their norm")
  assert share > 0.05


@pytest.mark.parametrize("name", LAYOUTS)
def test_the_methods_without_a_module_keep_the_plain_tower(name):
  """bitfit, ln, full and linear differ in what trains (tests/train/test_peft.py), not in
  the forward: the same parameters as the plain tower, and LIFT's plain forward."""
  x = jnp.zeros((1, SIZE, SIZE, 3))
  plain = jax.eval_shape(_ltjax_tower(name, "").init, jax.random.key(0), x)
  for method in PLAIN_METHODS[1:]:
    shapes = jax.eval_shape(_ltjax_tower(name, method).init, jax.random.key(0), x)
    assert jax.tree.structure(shapes) == jax.tree.structure(plain), method
  for method in PLAIN_METHODS:
    _forward_check(name, method)


def _ks_distance(a: np.ndarray, b: np.ndarray) -> float:
  """The two-sample Kolmogorov-Smirnov statistic of the values of ``a`` and ``b``."""
  a, b = np.sort(a.ravel()), np.sort(b.ravel())
  grid = np.concatenate([a, b])
  cdf = lambda s: np.searchsorted(s, grid, side="right") / s.size  # noqa: E731
  return float(np.abs(cdf(a) - cdf(b)).max())


def test_the_modules_start_as_lifts():
  """ltjax's initialisation of each module against LIFT's (peft_modules.py): the constant
  tensors equal, the random ones drawn from the same distribution (a two-sample
  Kolmogorov-Smirnov test at the 0.1% level, tens of thousands of draws each)."""
  width, dim, key = 768, 64, jax.random.key(0, impl="rbg")
  x = jnp.zeros((1, 2, width))
  torch.manual_seed(0)
  pairs = {}
  ours = vit._Bottleneck(dim, jnp.float32, True).init(key, x)["params"]
  theirs = lift.AdaptFormer(width, dim)
  for name in ("ln", "down_proj", "up_proj"):
    for a, b in (("scale", "weight"), ("kernel", "weight"), ("bias", "bias")):
      if a in ours[name]:
        pairs[f"adaptformer/{name}/{a}"] = (ours[name][a], getattr(getattr(theirs, name), b))
  pairs["adaptformer/scale"] = (ours["scale"], theirs.scale)
  ours, theirs = vit._LoRA(dim, jnp.float32).init(key, x)["params"], lift.LoRA(width, dim)
  pairs |= {f"lora/{k}": (ours[k], getattr(theirs, k)) for k in ("lora_A", "lora_B")}
  ours, theirs = vit._ScaleShift(jnp.float32).init(key, x)["params"], lift.SSF(width)
  pairs |= {f"ssf/{k}": (ours[k], getattr(theirs, k)) for k in ("scale", "shift")}
  tower = VisionTransformer(
    patch_size=16, width=width, depth=1, heads=1, mlp_dim=1, tuning=peft.VPTShallow(vpt_len=50)
  )
  ours = jax.jit(tower.init)(key, jnp.zeros((1, 16, 16, 3)))["params"]["vpt_0"]
  pairs["vpt"] = (ours, lift.VPT(50, 2, 16, width).prompt)
  for name, (a, b) in pairs.items():
    a, b = np.asarray(a, np.float64), b.detach().double().numpy()
    assert a.size == b.size, name
    if np.all(b == b.flat[0]):
      np.testing.assert_array_equal(a, np.full(a.shape, b.flat[0]), err_msg=name)
    else:
      critical = 1.95 * np.sqrt(2.0 / a.size)  # alpha = 0.001
      assert _ks_distance(a, b) < critical, (name, _ks_distance(a, b), critical)


# ------------------------------------------------------------------------- the trajectory

STEPS = 4
LR, MOMENTUM, WEIGHT_DECAY, HEAD_SCALE, TAU = 0.01, 0.9, 5e-4, 25.0, 1.0


def _lift_config(method: str = "adaptformer"):
  mean, std = CLIP_NORMALIZATION
  return tiny_config(
    **{
      "model.backbone": "clip_vit_tiny",
      "model.clip_projection": False,  # LIFT's head reads ln_post(class token).
      **{f"model.{k}": v for k, v in _options(method).items()},
      "model.head": "cosine",
      "model.head_scale": HEAD_SCALE,
      "loss.name": "logit_adjusted",
      "loss.tau": TAU,
      "optim.lr": LR,
      "optim.momentum": MOMENTUM,
      "optim.weight_decay": WEIGHT_DECAY,
      "optim.schedule": "constant",
      "dataset.mean": mean,
      "dataset.std": std,
      "data.augment": "none",
      "batch_size": 8,
    }
  )


def _normalised(config, batch, dtype) -> torch.Tensor:
  mean, std = (np.asarray(v, np.float64) for v in (config.dataset.mean, config.dataset.std))
  x = np.asarray(batch["image"], np.float64 if dtype == torch.float64 else np.float32)
  x = (x / 255.0 - mean.astype(x.dtype)) / std.astype(x.dtype)
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dtype)


def _lift_run(method: str, start: dict, shapes: dict, config, counts, batches, dtype):
  """LIFT's training loop with ``method``'s tuner from ltjax's ``start`` parameters: the
  losses, after every step every tensor under its ltjax path (``params/...``, float64), and
  the paths of what LIFT trains (the tuner's and the head's parameters)."""
  width = VIT_CONFIGS["clip_vit_tiny"]["width"]
  tower = lift.tower(VIT_CONFIGS["clip_vit_tiny"], GRID).to(dtype)
  tuner = lift.ViTTuner(method, tower, NUM_CLASSES, ADAPTER_DIM, VPT_LEN).to(dtype)
  head = lift.CosineClassifier(width, NUM_CLASSES, scale=HEAD_SCALE).to(dtype)
  named = lift.named_tensors(tower, tuner, head)
  lift.load_ltjax(named, {k.removeprefix("params/"): v for k, v in start.items()})
  trained = {id(p) for p in [*tuner.parameters(), *head.parameters()]}
  trained = {f"params/{k}" for k, (tensor, _) in named.items() if id(tensor) in trained}
  model = lift.PeftViT(tower)
  opt = lift.sgd(model, tuner, head, LR, MOMENTUM, WEIGHT_DECAY)
  shapes = {k.removeprefix("params/"): v for k, v in shapes.items()}
  losses, snapshots = [], []
  for batch in batches:
    x, y = _normalised(config, batch, dtype), torch.from_numpy(np.asarray(batch["label"], np.int64))
    loss = lift.logit_adjusted_loss(model(x, tuner, head), y, counts, TAU)
    loss.backward()
    opt.step()
    opt.zero_grad()
    losses.append(float(loss.detach()))
    snapshots.append({f"params/{k}": v for k, v in lift.to_ltjax(named, shapes).items()})
  return np.array(losses), snapshots, trained


@pytest.mark.parametrize(
  "method",
  ["adaptformer"]  # LIFT's default; the other methods' recipe in the slow set.
  + [pytest.param(m, marks=pytest.mark.slow) for m in MODULE_METHODS[1:] + PLAIN_METHODS[1:]],
)
def test_lifts_recipe_trains_as_lifts_loop(method):
  config = _lift_config(method)
  splits = tiny_splits(num_classes=NUM_CLASSES, size=SIZE, channels=3)
  exp, state = experiment.setup(config, splits)
  flat = flat_state(state)
  labels = optim.group_labels(steps.trainable(state), exp.backbone.frozen_patterns())
  labels = {
    f"params/{k}": v for k, v in traverse_util.flatten_dict(labels["params"], sep="/").items()
  }
  frozen = {k for k, label in labels.items() if label == "frozen"}
  # A "pretrained" tower: the tensors the method's modules do not add drawn at random (its
  # LayerNorms and biases not the identity and zero); the modules and the head as ltjax
  # (and LIFT) initialise them (AdaptFormer's up_proj zero).
  tower = sorted(k for k in flat if k.startswith("params/backbone/") and not lift.is_tuner_path(k))
  start = flat | _randomized({k: flat[k] for k in tower}, seed=3, everything=True)
  tree = traverse_util.unflatten_dict(start, sep="/")
  state = jax.device_put(state.replace(params=tree["params"]), exp.state_sharding)
  stream = experiment.make_stream(exp)
  batches = [stream(step) for step in range(STEPS)]
  data = sharding.batch_sharding(exp.mesh)
  ours_l, ours = [], []
  for batch in batches:
    state, metrics = exp.train_step(state, sharding.to_global(batch, data))
    assert bool(metrics["finite"])
    ours_l.append(float(metrics["loss"]))
    ours.append({k: v.astype(np.float64) for k, v in flat_state(state).items()})
  counts = splits.train_counts
  shapes = {k: v.shape for k, v in start.items()}
  f64_l, f64, trained = _lift_run(method, start, shapes, config, counts, batches, torch.float64)
  f32_l, f32, _ = _lift_run(method, start, shapes, config, counts, batches, torch.float32)
  assert set(f64[0]) == set(ours[0])
  # What trains is what LIFT's ViT_Tuner holds, and the head.
  assert set(ours[0]) - frozen == trained, sorted(trained ^ (set(ours[0]) - frozen))
  rows, floors = [], {}
  for step in range(STEPS):
    for key in sorted(trained):
      floors[key] = max(floors.get(key, 0.0), _floor(f32[step][key], f64[step][key]))
      error = np.linalg.norm(ours[step][key] - f64[step][key])
      scale = np.linalg.norm(f64[step][key]) + 1e-30
      rows.append((error / floors[key], f"step {step + 1} {key}", error / scale))
    for key in frozen:  # Frozen: not a bit moved.
      np.testing.assert_array_equal(ours[step][key], start[key].astype(np.float64), err_msg=key)
    # The loss's floor is at least float32's rounding of the logits (up to the head's scale).
    loss_floor = max(np.abs(f32_l[: step + 1] - f64_l[: step + 1]).max(), HEAD_SCALE * 2.0**-24)
    error = abs(ours_l[step] - f64_l[step])
    rows.append((error / loss_floor, f"step {step + 1} loss", error / abs(f64_l[step])))
  # The tuner and the head moved, so the comparison is of training.
  for key in trained:
    assert not np.array_equal(ours[-1][key], start[key]), key
  rows.sort(reverse=True)
  for ratio, key, relative in rows[:3]:
    print(f"{method}: {key}: ltjax x{ratio:.2f} the float32 floor (relative {relative:.2g})")
  _, key, relative = max(rows, key=lambda r: r[2])
  print(f"{method}: largest relative error: {key} {relative:.2g}; losses {np.round(f64_l, 4)}")
  bad = [row for row in rows if row[0] > FLOOR_FACTOR]
  assert not bad, "\n".join(
    f"{k}: x{r:.3g} the float32 floor (relative {e:.3g})" for r, k, e in bad[:10]
  )
