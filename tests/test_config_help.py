"""``--help`` of a config: the fields its components read, each with its meaning.

The config layer cannot import the components (JAX): it reads the registered dataclasses'
options and meanings, OLTR's block and what each stage reads from their source
(``ltjax.config.declared``); these tests hold that reading to the imported components, and
every base-config field to one meaning.
"""

import dataclasses
import inspect
import os
import subprocess
import sys

import pytest

import ltjax
from ltjax import config as config_lib
from ltjax.config import declared

CONFIGS = os.path.join(os.path.dirname(ltjax.__file__), "configs")


def _flat_fields(tree, prefix=""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flat_fields(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}"


def _config(name):
  return config_lib.load_file(os.path.join(CONFIGS, name))


def _listed(text):
  """The fields ``help_text`` lists, in order."""
  return [
    line.split("=", 1)[0].removeprefix("  --config.")
    for line in text.splitlines()
    if line.startswith("  --config.")
  ]


def test_every_base_config_field_has_one_meaning():
  fields = list(_flat_fields(config_lib.base_config().to_dict()))
  options = {f for selector in declared.SOURCES for f in declared.option_fields(selector)}
  options |= {f"{b}.{o}" for b in declared.OWNED_BLOCKS for o in declared.owned(b).meanings}
  options |= {f for f in declared.OWNED_FIELDS if declared.owned_meaning(f)}
  missing = sorted(set(fields) - set(config_lib.FIELD_DOCS) - options)
  assert not missing, f"add their meaning to ltjax/config/docs.py FIELD_DOCS: {missing}"
  twice = sorted(set(config_lib.FIELD_DOCS) & options)
  assert not twice, f"meant in FIELD_DOCS and in their component's docstring: {twice}"
  stale = sorted(set(config_lib.FIELD_DOCS) - set(fields))
  assert not stale, f"FIELD_DOCS names fields base_config lacks: {stale}"
  assert all(doc.strip() for doc in config_lib.FIELD_DOCS.values())


def test_joint_help_lists_the_learning_rate_with_its_meaning_and_no_oltr_field():
  text = config_lib.help_text(_config("digits/joint.py"))
  listed = _listed(text)
  assert not [f for f in listed if f.startswith("oltr.")]
  assert "init_from" not in listed and "update_frozen_bn" not in listed
  (line,) = [line for line in text.splitlines() if line.startswith("  --config.optim.lr=")]
  assert line.startswith("  --config.optim.lr=0.05  Learning rate of the backbone")
  assert "(default 0.2)" in text.split("--config.optim.lr=", 1)[1].split("--config.", 1)[0]
  # Blocks in order, each once; the default only where the value differs.
  headers = [line for line in text.splitlines() if line and not line.startswith(" ")]
  assert headers == ["run:", "dataset:", "data:", "sampler:", "loss:", "model:", "optim:", "eval:"]
  keep = next(line for line in text.splitlines() if "--config.keep_checkpoints=" in line)
  assert "(default" not in keep


def test_oltr_stage2_help_lists_the_oltr_block():
  listed = _listed(config_lib.help_text(_config("imagenet_lt/oltr_stage2.py")))
  assert {f"oltr.{k}" for k in config_lib.base_config().oltr} <= set(listed)
  assert "oltr.centroids_lr" in listed and "init_from" in listed
  assert "data.mixup_alpha" not in listed  # OLTR stage 2 never mixes batches.
  assert "sampler.k" in listed and "sampler.q" not in listed  # class_aware's options only.


def test_loss_options_only_for_the_chosen_loss():
  ldam = _listed(config_lib.help_text(_config("cifar10_lt/ldam_drw.py")))
  assert {"loss.max_margin", "loss.scale", "loss.drw_epoch", "loss.beta"} <= set(ldam)
  assert "loss.tau" not in ldam and "loss.gamma" not in ldam
  assert {"optim.milestones", "optim.step_gamma"} <= set(ldam)  # multistep
  assert "optim.step_every_epochs" not in ldam
  assert {"model.width", "model.cifar_shortcut"} <= set(ldam)  # a cifar_resnet backbone
  softmax = _listed(config_lib.help_text(_config("imagenet_lt/crt.py")))
  assert not [f for f in softmax if f.startswith("loss.") and f != "loss.name"]
  assert {"init_from", "update_frozen_bn"} <= set(softmax)
  assert "model.width" not in softmax and "data.pad" not in softmax
  assert {"data.crop_size", "data.jitter"} <= set(softmax)


def test_unread_dataset_fields_and_fields_the_base_config_lacks():
  config = config_lib.base_config()
  listed = _listed(config_lib.help_text(config, unread=("dataset.root", "dataset.tfds_name")))
  assert "dataset.root" not in listed and "dataset.tfds_name" not in listed
  assert "dataset.lists_dir" in listed
  config.dataset.my_own = 3
  text = config_lib.help_text(config)
  assert "  --config.dataset.my_own=3  not a field of ltjax's base config" in text
  # A plain dict (a run's config.json) works as well.
  assert config_lib.help_text(config.to_dict()) == text


def test_a_oltr_stage1_neck_is_listed_when_set():
  config = config_lib.base_config()
  assert "oltr.fc_add" not in config_lib.read_fields(config)
  config.oltr.fc_add = 512
  assert "oltr.fc_add" in config_lib.read_fields(config)
  assert "oltr.centroids_lr" not in config_lib.read_fields(config)


def test_help_of_every_packaged_config():
  for root, _, names in os.walk(CONFIGS):
    for name in names:
      if name.endswith(".py") and name != "run.py":
        text = config_lib.help_text(config_lib.load_file(os.path.join(root, name)))
        assert "  --config.stage=" in text and "  --config.optim.lr=" in text, name


def test_help_text_does_not_import_jax():
  code = (
    "import sys\n"
    "from ltjax import config\n"
    "c = config.load_file(sys.argv[1])\n"
    "assert 'oltr.centroids_lr' in config.help_text(c)\n"
    "bad = sorted(m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'flax')))\n"
    "assert not bad, bad\n"
  )
  path = os.path.join(CONFIGS, "imagenet_lt", "oltr_stage2.py")
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
  result = subprocess.run(
    [sys.executable, "-c", code, path], capture_output=True, text=True, env=env
  )
  assert result.returncode == 0, result.stderr


# ---------------------------------------------------- the tables against their components


def _ours(registry):
  """The entries ltjax registers (not toys another test added)."""
  return {
    n: c
    for n, c in registry.items()
    if type(c).__module__.startswith("ltjax.") or getattr(c, "__module__", "").startswith("ltjax.")
  }


#: The field that chooses -> the registry whose classes ``ltjax.config.declared`` reads.
REGISTRIES = {
  "loss.name": "ltjax.losses.classification:LOSSES",
  "sampler.name": "ltjax.data.samplers:SAMPLERS",
  "optim.name": "ltjax.train.optim:OPTIMIZERS",
  "optim.schedule": "ltjax.train.optim:SCHEDULES",
  "eval.evaluators": "ltjax.evaluate.evaluators:EVALUATORS",
  "model.head": "ltjax.models.head_registry:HEADS",
  "model.peft": "ltjax.models.peft:PEFT_METHODS",
  "model.backbone": "ltjax.models.backbones:BACKBONES",
  "data.augment": "ltjax.data.pp.augment:AUGMENTATIONS",
  "data.eval_transform": "ltjax.data.pp.augment:EVAL_TRANSFORMS",
}


def _registry(selector):
  import importlib

  module, attr = REGISTRIES[selector].split(":")
  return getattr(importlib.import_module(module), attr)


def test_every_registry_the_help_reads_is_tested():
  assert set(REGISTRIES) == set(declared.SOURCES)


@pytest.mark.parametrize("selector", sorted(REGISTRIES))
def test_declared_options_are_the_fields_of_each_registered_class(selector):
  """What the help reads from the source is what the imported classes are: the same names,
  fields in the same order, each option with its meaning in the class's own docstring and
  the base config's default its dataclass default."""
  ours = _ours(_registry(selector))
  table = declared.declared(selector)
  # Each registered name is an entry, or matches its family's (a backbone's depth or size).
  keys = {name: declared.resolve(selector, name) for name in ours}
  assert set(keys.values()) == set(table)
  for name, cls in ours.items():
    assert keys[name] in (name, getattr(cls, "names", None)), name
  base = config_lib.base_config()[selector.partition(".")[0]]
  for name, cls in ours.items():
    fields = dataclasses.fields(cls)
    assert table[keys[name]].fields == tuple(f.name for f in fields), name
    options = declared.options(selector)[keys[name]]
    assert options == tuple(f.name for f in fields if f.name in base), name
    meanings = {}
    for klass in reversed(cls.__mro__):
      meanings |= declared.attributes(inspect.getdoc(klass) if "__doc__" in vars(klass) else "")
    for f in fields:
      if f.name in options:
        assert meanings.get(f.name), f"{cls.__name__}'s docstring: no Attributes entry {f.name}"
        assert table[keys[name]].meanings[f.name] == meanings[f.name], (name, f.name)
        if f.default is not dataclasses.MISSING:
          assert base[f.name] == f.default, (name, f.name)


def test_the_help_gives_the_chosen_components_meaning():
  ldam = config_lib.help_text(_config("cifar10_lt/ldam_drw.py"))
  assert "  --config.loss.beta=0.9999  ldam: the DRW effective-number weights' beta." in ldam
  losses = [f for f in _listed(ldam) if f.startswith("loss.")]  # In the schema's order.
  assert losses == ["loss.name", "loss.beta", "loss.max_margin", "loss.scale", "loss.drw_epoch"]
  config = config_lib.base_config()
  config.loss.name = "class_balanced"
  balanced = config_lib.help_text(config)
  assert "--config.loss.beta=0.9999  class_balanced: of the effective-number weights" in balanced
  assert "``" not in balanced  # reST markup is dropped: the help is plain text.
  # An option two chosen components read has both meanings, each named.
  lift = config_lib.help_text(_config("imagenet_lt/lift.py"))
  crop = next(x for x in lift.split("\n  --config.") if x.startswith("data.crop_size="))
  assert "imagenet: the side of the random resized crops" in crop
  assert "; five_crop: the side of the five crops" in " ".join(crop.split())
  config.eval.evaluators = ("closed_set", "calibration")
  line = next(x for x in config_lib.help_text(config).splitlines() if "eval.ece_bins" in x)
  assert line.startswith("  --config.eval.ece_bins=15  calibration: equal-width confidence bins")


def test_an_attributes_section_is_read_as_napoleon_reads_it():
  doc = """Summary.

  Attributes:
    tau (float): the strength,
      over two lines.
    gamma: one line.

  Raises:
    ValueError: not an attribute.
  """
  assert declared.attributes(inspect.cleandoc(doc)) == {
    "tau": "the strength, over two lines.",
    "gamma": "one line.",
  }
  assert declared.attributes("No section.") == {}


def test_stage_fields_follow_each_stage():
  """What the help reads of the stages' source is what the imported stages are: the same
  names, and each reads the fields its class attributes say (``declared.STAGE_FLAGS``, its
  own block, its opt-ins)."""
  from ltjax.train import stages

  ours = _ours(stages.STAGES)
  table = declared.stages()
  assert set(ours) == set(table)
  base = config_lib.base_config()
  for name, stage in ours.items():
    reads = [f for flag, fs in declared.STAGE_FLAGS.items() if getattr(stage, flag) for f in fs]
    reads += [f"{stage.block}.{k}" for k in base[stage.block]] if stage.block else []
    assert table[name].reads == tuple(reads), name
    assert table[name].when_set == tuple(stage.reads_when_set), name
  assert table["oltr"].reads[0] == "init_from" and "oltr.centroids_lr" in table["oltr"].reads
  assert table["joint"].when_set == ("oltr.fc_add",)
  assert "oltr.fc_add" not in table["crt"].reads + table["crt"].when_set


def test_a_block_one_class_owns_is_its_fields_with_their_meanings():
  """OLTR's block is ``OLTROptions``: its fields are the block's, with the schema's defaults
  and a meaning each in its docstring, which the help shows."""
  import importlib

  assert set(declared.OWNED_BLOCKS) == {"oltr"}
  for block, (module, name) in declared.OWNED_BLOCKS.items():
    path = "ltjax." + module.removesuffix(".py").replace("/", ".")
    cls = getattr(importlib.import_module(path), name)
    fields = dataclasses.fields(cls)
    base = config_lib.base_config()[block]
    assert declared.owned(block).fields == tuple(f.name for f in fields)
    assert set(base) == {f.name for f in fields}
    for f in fields:
      assert base[f.name] == f.default, f.name
      assert declared.owned(block).meanings[f.name], f.name
  text = config_lib.help_text(_config("imagenet_lt/oltr_stage2.py"))
  assert "  --config.oltr.margin=10.0  OLTR stage 2: repel margin of the centroids loss." in text


def test_a_field_one_class_owns_is_its_field_with_its_meaning():
  """``update_frozen_bn`` is a field of ``Stage`` (what a frozen backbone's stage builds its
  forward with), ``optim.lr`` one of ``Optimization``: same default as the schema's, its
  meaning in the class's docstring, which the help shows."""
  import importlib

  for field, (module, name) in declared.OWNED_FIELDS.items():
    path = "ltjax." + module.removesuffix(".py").replace("/", ".")
    cls = getattr(importlib.import_module(path), name)
    option = field.rpartition(".")[2]
    default = {f.name: f.default for f in dataclasses.fields(cls)}[option]
    assert config_lib.base_config()[field] == default, field
    assert declared.owned(field).meanings[option], field
  text = config_lib.help_text(_config("cifar10_lt/crt.py"))
  flat = " ".join(text.split())
  assert "--config.update_frozen_bn=True cRT/LWS (a stage with a frozen backbone): update" in flat
  assert "--config.optim.lr=0.2 Learning rate of the backbone (and neck" in flat
