"""Training stages: one object per recipe, which the loop runs without asking which it is.

A stage owns what differs between the recipes of the two papers:

* the model between backbone and head: its neck (``neck``), checked against the config
  before any work (``check``, and ``check_start`` for what a fresh run loads);
* what trains: the parameters it freezes (``freeze``), how a frozen backbone runs
  (``apply_kwargs``: no backward pass, BatchNorm in inference mode);
* the arrays it keeps of its own in the train state (``TrainState.extra``): their initial
  values (``init_extra``), their optimizer groups (``extra_groups``) and what its head takes
  of them (``model_inputs``). OLTR's class centroids are the one case in the papers; the
  generic step, init, optimizer and model only pass them on;
* the loss its train step minimises (``make_loss``): the run's classification loss
  (``config.loss``, ``ltjax.losses.LOSSES``, built once and handed in), given the training
  class counts and the epoch, plus what the stage adds (OLTR's centroids term, on its own
  arrays);
* how a fresh run starts (``start``): what it loads from ``config.init_from``
  (``copies``, ``subtrees_to_load``) and what it computes before the first step (OLTR's
  centroids).

What every stage shares is elsewhere and called, not copied: the SGD groups (backbone, head,
and the stage's arrays; ``ltjax.train.optim.Optimization``), the one train step
(``ltjax.train.steps.make_train_step``), the experiment's assembly
(``ltjax.train.experiment``), checkpoints and the loop (``ltjax.train.loop``). Adding a stage
is one subclass of ``Stage`` (``base``), registered in ``STAGES``, and a config (``config.stage``);
a stage with options of its own declares them as its dataclass fields and reads them in
``of`` (OLTR: its ``oltr`` block), so that what it builds reads its fields, not the config.

The package: ``base`` (the ``Stage`` every recipe shares), ``decoupling`` (joint, cRT, LWS:
Kang et al.), ``oltr`` (OLTR stage 2: Liu et al.) and ``starts`` (what a fresh run loads
before its first step: ``model.pretrained``, ``init_from``, the head's start).
"""

from __future__ import annotations

from ltjax.config import components
from ltjax.train.stages.base import Stage
from ltjax.train.stages.decoupling import ClassifierRetraining, Joint, LearnableWeightScaling
from ltjax.train.stages.oltr import OLTR
from ltjax.train.stages.starts import load_earlier_stage, load_pretrained

__all__ = [
  "OLTR",
  "STAGES",
  "ClassifierRetraining",
  "Joint",
  "LearnableWeightScaling",
  "Stage",
  "from_config",
  "get_stage",
  "load_earlier_stage",
  "load_pretrained",
]

STAGES: components.Registry = components.Registry("stage", "stage")
for _stage in (Joint, ClassifierRetraining, LearnableWeightScaling, OLTR):
  STAGES.register(_stage)
#: The stage class registered as ``name``; a ValueError listing the valid names otherwise.
get_stage = STAGES.lookup


def from_config(config) -> Stage:
  """The run's stage (``config.stage``), built with the options it reads (``Stage.of``).

  Raises:
    ValueError: an unknown stage, or an option of another stage's block set away from its
      default (``refuse_unread_block_options``).
  """
  cls = get_stage(config.stage)
  refuse_unread_block_options(cls, config)
  return cls.of(config)


def refuse_unread_block_options(cls: type[Stage], config) -> None:
  """Refuses an option of a stage's own block (``Stage.block``: OLTR's ``oltr``) that
  ``config`` sets away from its default while stage ``cls`` reads neither the block nor that
  option (``reads_when_set``): ``--config.oltr.loss_weight=0.1`` on a joint run would do
  nothing without a word. The block's options and defaults are the fields of the stage's
  field of that name (``OLTR.oltr``: ``OLTROptions``)."""
  for owner in STAGES.values():
    block = config.get(owner.block) if owner.block else None
    if not block:
      continue
    defaults = components.options(type(getattr(owner, owner.block)))
    for field in sorted(defaults):
      key = f"{owner.block}.{field}"
      readers = [s for s in STAGES.values() if s.block == owner.block or key in s.reads_when_set]
      if cls in readers or field not in block or block[field] == defaults[field]:
        continue
      names = " / ".join(repr(s.name) for s in readers)
      raise components.UnreadOption(
        f"--config.{key}={block[field]!r} is an option of stage={names}, not of "
        f"{cls.name!r}: leave it {defaults[field]!r}.",
        key,
        defaults[field],
      )
