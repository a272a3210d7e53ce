"""Adding a sampler, a loss or a backbone: one registered class each (and its option's default
in the config), which the loop runs without asking which it is. Copy these to add your own."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import first_step, tiny_config, tiny_splits

from ltjax import losses, models
from ltjax.data import samplers
from ltjax.train import experiment, loop


@dataclasses.dataclass(frozen=True)
class EveryOther(samplers.Sampler):
  """A toy sampler with its own option: every ``stride``-th image in order, repeated to N."""

  name = "toy_every_other"
  stride: int = 2

  def indices(self, labels, num_classes, epoch, seed):
    n = len(labels)
    return np.resize(np.arange(0, n, self.stride), n).astype(np.int64)


def test_a_new_sampler_with_its_own_option_trains_a_step(monkeypatch):
  monkeypatch.setitem(samplers.SAMPLERS, EveryOther.name, EveryOther)
  config = tiny_config(**{"sampler.name": EveryOther.name, "data.augment": "none"})
  with config.unlocked():  # A real sampler adds its option's default to config.sampler.
    config.sampler.stride = 3
  splits = tiny_splits()
  start, state, (loss, params), metrics, batch = first_step(config, splits)
  # The batch is the sampler's: images 0, 3, 6, ... of the training set (45 images).
  order = np.resize(np.arange(0, len(splits.train), 3), len(splits.train))
  want, labels = splits.train.get_batch(order[: config.batch_size])
  np.testing.assert_array_equal(batch["label"], labels)
  np.testing.assert_array_equal(batch["image"], want)
  np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
  assert int(state.step) == 1


@dataclasses.dataclass(frozen=True)
class Smoothed(losses.ClassificationLoss):
  """A toy loss with its own option: cross-entropy against label-smoothed targets."""

  name = "toy_smoothed"
  smoothing: float = 0.1

  def __call__(self, logits, labels, inputs):
    k = logits.shape[-1]
    targets = jax.nn.one_hot(labels, k) * (1 - self.smoothing) + self.smoothing / k
    return -(targets * jax.nn.log_softmax(logits)).sum(-1).mean()


def test_a_new_loss_with_its_own_option_trains_a_step(monkeypatch):
  monkeypatch.setitem(losses.LOSSES, Smoothed.name, Smoothed)
  config = tiny_config(**{"loss.name": Smoothed.name})
  with config.unlocked():  # A real loss adds its option's default to config.loss.
    config.loss.smoothing = 0.3
  start, state, (loss, params), metrics, batch = first_step(config)
  np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params["params"]), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-6)
  # The loss is the toy's, with the config's smoothing: recomputed from the start state.
  from ltjax.train import experiment, steps

  exp, _ = experiment.setup(config, tiny_splits())
  x = steps.normalize(np.asarray(batch["image"]), config.dataset.mean, config.dataset.std)
  (logits, _), _ = exp.model.apply(
    {"params": start.params, "batch_stats": start.batch_stats},
    x,
    train=True,
    mutable=["batch_stats"],
  )
  want = Smoothed(0.3)(logits, np.asarray(batch["label"]), None)
  np.testing.assert_allclose(float(metrics["loss"]), float(want), rtol=1e-5)
  assert float(want) != float(Smoothed(0.1)(logits, np.asarray(batch["label"]), None))


class _TinyMLP(nn.Module):
  """Flattened pixels -> one hidden layer: ``{"feature_map", "features"}`` as every backbone."""

  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    x = x.astype(self.dtype)
    features = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(x.reshape(x.shape[0], -1)))
    return {"feature_map": features[:, None, None, :], "features": features}


@dataclasses.dataclass(frozen=True)
class TinyMLPBackbone(models.Backbone):
  """A toy backbone with its own option: the width of its one hidden layer."""

  name = "toy_mlp"
  hidden: int = 16

  def module(self, dtype):
    return _TinyMLP(hidden=self.hidden, dtype=dtype)


def test_a_new_backbone_with_its_own_option_trains_a_step(monkeypatch, tmp_path):
  monkeypatch.setitem(models.BACKBONES, TinyMLPBackbone.name, TinyMLPBackbone)
  config = tiny_config(**{"model.backbone": TinyMLPBackbone.name})
  with config.unlocked():  # A real backbone adds its option's default to config.model.
    config.model.hidden = 12
  start, state, (loss, params), metrics, batch = first_step(config)
  assert start.params["backbone"]["Dense_0"]["kernel"].shape[-1] == 12  # Its option, read.
  assert start.params["head"]["fc"]["kernel"].shape == (12, 4)
  np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params["params"]), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
  # Another backbone's option is refused by the registry, naming it.
  config.model.width = 2
  with pytest.raises(ValueError, match=r"model.width=2 is an option of the cifar_resnet"):
    experiment.checked(config, check_start=False)
  # The loop trains, checkpoints and evaluates it like any backbone.
  config.model.width = 1
  summary = loop.train_and_evaluate(config, str(tmp_path), splits=tiny_splits())
  assert set(summary) >= {"many", "medium", "few", "all"}


def test_every_registry_refuses_an_unknown_name_and_a_second_member_of_a_taken_name():
  """One ``components.Registry`` behind every component kind: an unknown name names the config
  field and the valid names; a second, different member under a taken name is refused (it
  would replace a built-in without a word); registering the same class again is harmless."""
  from ltjax.config import components
  from ltjax.data import datasets
  from ltjax.data.pp import augment
  from ltjax.evaluate import evaluators, methods
  from ltjax.models import backbones, head_registry, peft
  from ltjax.train import optim, stages

  registries = {
    "loss.name": losses.LOSSES,
    "sampler.name": samplers.SAMPLERS,
    "model.backbone": backbones.BACKBONES,
    "model.head": head_registry.HEADS,
    "model.peft": peft.PEFT_METHODS,
    "data.augment": augment.AUGMENTATIONS,
    "data.eval_transform": augment.EVAL_TRANSFORMS,
    "optim.name": optim.OPTIMIZERS,
    "optim.schedule": optim.SCHEDULES,
    "eval.evaluators": evaluators.EVALUATORS,
    "dataset.name": datasets.DATASETS,
    "stage": stages.STAGES,
    "method": methods.METHODS,  # The results rows' names (labels, colours, order).
  }
  for selector, registry in registries.items():
    assert isinstance(registry, components.Registry) and registry.selector == selector
    first = next(iter(registry))
    with pytest.raises(ValueError, match=rf"^--config\.{selector}='nope': unknown ") as info:
      registry.lookup("nope")
    assert all(repr(name) in str(info.value) for name in registry), selector
    with pytest.raises(ValueError, match="unknown"):
      registry.lookup(["a", "list"])  # Unhashable, as a mistyped config value can be.
    assert registry.register(registry[first]) is registry[first]
    impostor = type("Impostor", (), {"name": first})
    with pytest.raises(ValueError, match=f"{first!r} is already registered"):
      registry.register(impostor)
    assert registry[first] is not impostor
  # Only a field of several names gets the tuple syntax for "a,b".
  with pytest.raises(ValueError, match=r"as a tuple: --config.eval.evaluators=\"\('a', 'b'\)\""):
    evaluators.EVALUATORS.lookup("a,b")
  with pytest.raises(ValueError) as info:
    losses.LOSSES.lookup("a,b")
  assert "tuple" not in str(info.value)


#: An option that the run's chosen components do not read, set away from its default: each is
#: refused by name before any work (it would do nothing without a word), with the members that
#: read it and the value to leave it at.
UNREAD = [
  (
    {"loss.gamma": 3.0},
    r"loss.gamma=3.0 is an option of loss.name='focal' / 'class_balanced', "
    r"not of 'softmax': leave it 2.0",
  ),
  (
    {"sampler.q": 0.5},
    r"sampler.q=0.5 is an option of sampler.name='qpower', not of "
    r"'instance': leave it 1.0",
  ),
  ({"sampler.k": 8}, r"sampler.k=8 is an option of sampler.name='class_aware'"),
  (
    {"data.jitter": 0.2},
    r"data.jitter=0.2 is an option of data.augment='imagenet' / "
    r"'imagenet_device', not of data.augment='crop_flip' or data.eval_transform='none'",
  ),
  (
    {"data.tte_expand": 10},
    r"data.tte_expand=10 is an option of data.eval_transform="
    r"'five_crop'",
  ),
  (
    {"data.crop_size": 16},
    r"crop_size=16 is an option of data.augment='imagenet' / "
    r"'imagenet_device' and data.eval_transform='resize_center_crop' / 'five_crop'",
  ),
  (
    {"oltr.loss_weight": 0.5},
    r"oltr.loss_weight=0.5 is an option of stage='oltr', not of "
    r"'joint': leave it 0.01",
  ),
  (
    {"stage": "crt", "oltr.fc_add": 16},
    r"oltr.fc_add=16 is an option of stage='joint' / "
    r"'oltr', not of 'crt': leave it 0",
  ),
  ({"loss.name": "class_balanced", "loss.gamma": 3.0}, r"gamma=3.0 is read with base='focal'"),
]


@pytest.mark.parametrize("overrides, message", UNREAD, ids=lambda x: str(x)[:40])
def test_an_option_no_chosen_component_reads_is_refused(overrides, message):
  from ltjax.config import components

  with pytest.raises(components.UnreadOption, match=message) as info:
    experiment.checked(tiny_config(**overrides), check_start=False)
  # It names its field and the value that means the same run (``ltjax evaluate`` of a run
  # saved with it evaluates it there: ``restore.restore_trained``).
  assert info.value.key in overrides
  assert info.value.default != overrides[info.value.key]


@pytest.mark.parametrize(
  "overrides",
  [
    {"loss.name": "focal", "loss.gamma": 3.0},
    {"loss.name": "class_balanced", "loss.base": "focal", "loss.gamma": 3.0},
    {"sampler.name": "qpower", "sampler.q": 0.5},
    {"sampler.name": "class_aware", "sampler.k": 8},
    {"data.augment": "imagenet", "data.jitter": 0.2},
    # crop_size is read by the evaluation transform, whatever the augmentation.
    {"data.eval_transform": "resize_center_crop", "data.crop_size": 16},
    {"oltr.fc_add": 16},  # OLTR stage 1: joint training with the use_fc layer.
  ],
  ids=lambda x: ",".join(f"{k}={v}" for k, v in x.items()),
)
def test_the_same_options_are_read_where_their_component_is_chosen(overrides):
  parts, _ = experiment.checked(tiny_config(**overrides), check_start=False)
  for key, value in overrides.items():
    block, _, field = key.partition(".")
    if field in ("name", "augment", "eval_transform"):  # The choices, not options.
      continue
    owners = {
      "loss": [parts.loss],
      "sampler": [parts.sampler],
      "oltr": [parts.stage],
      "data": [parts.augmentation, parts.eval_transform],
    }[block]
    read = [getattr(o, field) for o in owners if hasattr(o, field)]
    assert read and read == [value] * len(read), key
